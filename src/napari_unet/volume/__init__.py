"""Z-stacks as 3D objects: linked planes, or three views of the stack.

A 2D U-Net sees planes. For a stack ``(Z, H, W)`` napari-unet offers three modes
(:data:`STACK_MODES`): ``"planes"`` labels each plane on its own (time-lapse);
``"linked"`` labels each plane, then joins objects of neighbouring planes by
overlap; ``"views"`` predicts every XY, XZ and YZ plane (resampled to square
pixels), averages the three probability volumes, and cuts 3D objects with a 3D
distance-transform watershed. :func:`napari_unet.segment.segment` dispatches
(:mod:`.stacks`); the linked mode labels planes by :mod:`napari_unet.planes`.

The package, one idea per module:

- :mod:`.axes`: the modes, which axis is Z, the checks;
- :mod:`.voxels`: voxel sizes and resampling to square pixels;
- :mod:`.plan`: the views, their planes, and what each mode costs;
- :mod:`.views`: prediction of the three views into one probability volume;
- :mod:`.linking`: joining plane labels into 3D objects;
- :mod:`.instances`: the 3D watershed;
- :mod:`.options`: the 3D options and the views' labelling (also used by zarr slabs);
- :mod:`.pipeline`: one 3D volume from image to labels in either 3D mode;
- :mod:`.stacks`: Z found in a stack, each volume of a 4D+ array on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = {
    "STACK_MODES": "axes",
    "check_voxel_size": "voxels",
    "link_planes": "linking",
    "labels_3d": "instances",
    "iter_predict_views": "views",
    "describe_views": "plan",
    "iter_segment_volume": "pipeline",
}
__all__ = [
    "STACK_MODES",
    "check_voxel_size",
    "describe_views",
    "iter_predict_views",
    "iter_segment_volume",
    "labels_3d",
    "link_planes",
]
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .axes import STACK_MODES
    from .instances import labels_3d
    from .linking import link_planes
    from .pipeline import iter_segment_volume
    from .plan import describe_views
    from .views import iter_predict_views
    from .voxels import check_voxel_size
