"""One 3D volume from image to labels, in the linked or the three-views mode."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..planes import iter_segment_planes
from ..postprocess import resolve_postprocess
from ..postprocess.resolver import H_3D, SMOOTHING_3D
from .linking import link_planes
from .options import OPTIONS_3D, ViewsLabelling, default_min_volume, take_3d_options
from .views import iter_predict_views
from .voxels import isotropic_factors

if TYPE_CHECKING:
    from ..events import TileProgress

__all__ = ["iter_segment_volume", "default_min_volume", "OPTIONS_3D", "H_3D", "SMOOTHING_3D"]


def iter_segment_volume(
    model: Any,
    volume: Any,
    *,
    has_channels: bool,
    stack: str,
    voxel_size: tuple[float, float, float],
    rescale: float = 1.0,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: Any = None,
    threshold: float | None = None,
    min_size: int | None = None,
    tta: bool = False,
    precision: Any = "fp32",
    diameter: float | None = None,
    **postprocess: Any,
) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Labels ``(Z, H, W)`` and probabilities ``(K, Z, H, W)`` of one volume.

    ``volume`` is ``(Z, H, W)`` or ``(C, Z, H, W)`` (``has_channels``). Options as
    for :func:`napari_unet.segment.segment`; the 3D ones are ``link_iou``
    (linked), ``seed_threshold`` (views) and ``min_volume`` (both; default
    :func:`default_min_volume`); ``tta`` augments every plane's tiles; ``precision``
    as for :func:`napari_unet.predict_tiled`. Options left out come from the
    model's recommendation (one resolver for every mode). ``diameter``: the objects'
    size in the stack's pixels, where known; the default watershed follows it in
    both modes, as in 2D.
    """
    given = dict(postprocess, threshold=threshold, min_size=min_size)
    # the options act at the network's scale, where objects are diameter * rescale px
    known = None if diameter is None else diameter * rescale
    postprocess = resolve_postprocess(model, given, stack=stack, diameter=known)
    link_iou, min_volume = take_3d_options(postprocess, postprocess["min_size"], voxel_size)
    if stack == "linked":
        # the caller's options, not the resolved ones: the planes path resolves them
        # itself, with min_size at the right scale
        labels, prob = yield from iter_segment_planes(
            model, volume, rescale=rescale, tile_shape=tile_shape, batch_size=batch_size,
            device=device, tta=tta, precision=precision, diameter=diameter,
            **{k: v for k, v in given.items() if k not in OPTIONS_3D},
        )  # fmt: skip
        return link_planes(labels, iou=link_iou, min_volume=min_volume), prob
    labelling = ViewsLabelling.take(postprocess)
    factors = isotropic_factors(voxel_size, rescale)
    prob = yield from iter_predict_views(
        model,
        volume,
        has_channels=has_channels,
        factors=factors,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        tta=tta,
        precision=precision,
    )
    labels = labelling.label(prob, voxel_size, min_volume, rescale)
    return labels, prob
