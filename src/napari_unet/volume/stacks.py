"""A stack in a 3D mode: Z found and checked, each volume of a 4D+ array on its own."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..events import TileProgress
from .axes import spatial_ndim, z_to_front
from .pipeline import iter_segment_volume
from .voxels import check_voxel_size

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["check_stack_input", "iter_segment_stack"]


def check_stack_input(
    model: UNet, image: Any, stack: str, voxel_size: Any, z_axis: int | None
) -> None:
    """Refuse, in one sentence, what :func:`iter_segment_stack` would refuse."""
    check_voxel_size(voxel_size)
    nd = spatial_ndim(tuple(image.shape), int(model.in_channels))
    z_to_front(tuple(int(s) for s in image.shape[-nd:]), stack, z_axis)


def iter_segment_stack(
    model: UNet, image: Any, *, stack: str, voxel_size: Any, z_axis: int | None, **options: Any
) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Labels and probabilities ``(K, ...)`` of an image of three or more spatial axes.

    ``stack`` is ``"linked"`` or ``"views"``; ``z_axis`` as for
    :func:`napari_unet.segment.segment`; ``options`` as for
    :func:`napari_unet.volume.pipeline.iter_segment_volume` (``rescale``
    included). Every index of the axes other than Z, Y and X is a volume of its
    own, its ids after the previous volume's; one progress count over all.
    """
    vs = check_voxel_size(voxel_size)
    c = int(model.in_channels)
    nd = spatial_ndim(tuple(image.shape), c)
    has_channels = c > 1
    spatial = tuple(int(s) for s in image.shape[-nd:])
    z = z_to_front(spatial, stack, z_axis)
    run = dict(has_channels=has_channels, stack=stack, voxel_size=vs, **options)
    if nd == 3:
        return (yield from iter_segment_volume(model, image, **run))
    # 4D+: Z moved to the third axis from the end; the axes before it are separate volumes
    off = 1 if has_channels else 0
    moved = np.moveaxis(np.asarray(image), off + z, off + nd - 3)
    outer = moved.shape[off : off + nd - 3]
    count = int(np.prod(outer))
    labels_all = np.zeros(moved.shape[off:], dtype=np.int32)
    prob_all = None
    done, per_volume = 0, None
    next_id = 0
    for k, index in enumerate(np.ndindex(*outer)):
        vol = moved[(slice(None), *index)] if has_channels else moved[index]
        gen = iter_segment_volume(model, vol, **dict(run))
        while True:
            try:
                event = next(gen)
            except StopIteration as stop_:
                labels, prob = stop_.value
                break
            per_volume = per_volume or event.total
            rest = (count - k - 1) * per_volume
            yield TileProgress(done + event.done, done + max(event.total, event.done) + rest)
        done += max(event.done, per_volume or 0)
        labels_all[index] = np.where(labels > 0, labels + next_id, 0)
        next_id += int(labels.max())
        if prob_all is None:
            prob_all = np.zeros((prob.shape[0], *labels_all.shape), dtype=np.float32)
        prob_all[(slice(None), *index)] = prob
    labels_all = np.moveaxis(labels_all, nd - 3, z)
    prob_all = np.moveaxis(prob_all, 1 + nd - 3, 1 + z)
    return labels_all, prob_all
