"""Data augmentation as in the paper: elastic deformation, rotations, flips, shifts, gray values.

Shape rules, shared by every function here:

* ``image`` is ``(H, W)`` or channels-first ``(C, H, W)``; it is returned as float32 (cubic
  interpolation overshoots, so integer types cannot hold the result).
* ``labels`` (any integer or bool dtype) and ``weights`` (real) are ``(H, W)``. Labels are
  resampled by nearest neighbour as an integer gather, so they keep their dtype and never gain an
  id (``2**40`` in int64 or uint64 survives exactly); weights are resampled linearly as float32.
* Every output has its input's shape. Geometric steps move image, labels and weights with the
  same transform; gray-value steps change the image only.
* Content needed from outside the image is mirrored (numpy's ``reflect``, like the overlap-tile
  prediction), never filled with zeros.

Training applies :func:`augment_sample` to the whole input tile (image with its context, and
labels/weights of the same extent) and crops the target region afterwards, so the context the
network sees is deformed with the target; what the transform pulls in from past the tile's border
is mirrored tile content (a caller that wants real image there augments a larger crop). The
"Preview augmentation" GUI calls the same function with the same :class:`AugmentConfig`.

Speed: every geometric change is folded into one sampling grid and the image is resampled
once (:mod:`.warping`). See ``benchmarks/bench_augment.py``.

The package, one idea per module:

- :mod:`.pipeline`: :func:`augment_sample` (the draws, in a fixed order, and the steps) and
  :func:`elastic_deform`;
- :mod:`.config`: :class:`AugmentConfig`;
- :mod:`.fields`: elastic displacement fields (:func:`upsample_displacement`);
- :mod:`.warping`: the sampling grid, resampling, exact flips and quarter turns;
- :mod:`.intensity`: gray-value changes;
- :mod:`.checks`: what the functions accept.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# imported on first use: AugmentConfig is read by the napari docks without torch
_LAZY = {
    "AugmentConfig": "config",
    "upsample_displacement": "fields",
    "augment_sample": "pipeline",
    "elastic_deform": "pipeline",
}
__all__ = ["AugmentConfig", "augment_sample", "elastic_deform", "upsample_displacement"]
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .config import AugmentConfig
    from .fields import upsample_displacement
    from .pipeline import augment_sample, elastic_deform
