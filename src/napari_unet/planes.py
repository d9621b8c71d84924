"""Plane by plane: (resize,) predict tile by tile, label each plane, (resize back).

The path of :func:`napari_unet.segment.iter_segment` for 2D images and the
``"planes"`` mode, and of the ``"linked"`` mode's planes
(:mod:`napari_unet.volume.pipeline`), which join its labels across planes. It
checks nothing: its callers have.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from .postprocess import labels_from_probabilities, resolve_postprocess
from .rescaling import renumber, resize_spatial
from .tiling import iter_predict_tiled

if TYPE_CHECKING:
    from .events import TileProgress
    from .model import UNet

__all__ = ["iter_segment_planes"]


def iter_segment_planes(
    model: UNet,
    image: Any,
    *,
    rescale: float = 1.0,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: Any = None,
    threshold: float | None = None,
    min_size: int | None = None,
    tta: bool = False,
    precision: Any = "fp32",
    reuse: tuple[float, np.ndarray] | None = None,
    diameter: float | None = None,
    **postprocess: Any,
) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Labels and probabilities ``(K, ...)`` of every plane, at the image's own shape.

    ``image`` is ``(..., H, W)`` (channels first for a multi-channel model),
    resized by ``rescale`` for the network. ``reuse``: a factor and the
    probabilities of the image already predicted at it (the size estimate's
    pass); used instead of a prediction when the factor is ``rescale``. The
    other options as for :func:`napari_unet.segment.segment`; ``min_size`` is
    in the image's pixels, the others act at the network's scale. ``diameter``:
    the objects' size in the image's pixels, where known; the default watershed
    follows it (:func:`napari_unet.postprocess.resolve_postprocess`).
    """
    spatial = tuple(int(s) for s in image.shape[-2:])
    f = rescale
    if reuse is not None and reuse[0] == f:  # the estimate predicted this image already
        prob = reuse[1]
    else:
        work = image
        if f != 1.0:
            small = tuple(max(1, round(s * f)) for s in spatial)
            work = resize_spatial(np.asarray(image), small)
        prob = yield from iter_predict_tiled(
            model, work, tile_shape=tile_shape, batch_size=batch_size, device=device, tta=tta,
            precision=precision,
        )  # fmt: skip
    # the caller's min_size is in the image's pixels, the model's (calibrated on its
    # training images) at the network's scale, where the labels are made
    size = None if min_size is None else round(min_size * f * f)
    # objects of ``diameter`` px in the image are ``diameter * f`` px where labels are made
    known = None if diameter is None else diameter * f
    options = resolve_postprocess(
        model, dict(postprocess, threshold=threshold, min_size=size), diameter=known
    )
    labels = labels_from_probabilities(prob, **options)
    if f != 1.0:
        labels = resize_spatial(labels, spatial, labels=True)
        prob = resize_spatial(prob, spatial)
        labels = renumber(labels)
    return labels, prob
