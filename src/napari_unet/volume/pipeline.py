"""One 3D volume from image to labels, in the linked or the three-views mode."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError
from ..planes import iter_segment_planes
from ..postprocess import METHODS, resolve_postprocess
from ..postprocess.resolver import H_3D, SMOOTHING_3D
from ..postprocess.rules import keep_confident
from .instances import labels_3d
from .linking import LINK_IOU, drop_small_3d, link_planes
from .views import iter_predict_views
from .voxels import isotropic_factors

if TYPE_CHECKING:
    from ..events import TileProgress

__all__ = ["iter_segment_volume", "default_min_volume", "OPTIONS_3D", "H_3D", "SMOOTHING_3D"]

#: Keywords only the 3D modes take (besides the 2D post-processing ones).
OPTIONS_3D = ("link_iou", "min_volume")


def default_min_volume(min_size: int, voxel_size: Sequence[float]) -> int:
    """Voxels of a ball whose cross-section is ``min_size`` pixels, in the stack's voxels.

    ``min_size`` says how small an object may look in a plane; the ball with that
    cross-section is the smallest 3D object kept, so a speck in one plane goes
    while a small nucleus spanning a few planes stays.
    """
    if min_size <= 0:
        return 0
    d = 2.0 * math.sqrt(min_size / math.pi)
    ball = math.pi / 6.0 * d**3
    s = min(voxel_size[1], voxel_size[2])
    voxel = voxel_size[0] * voxel_size[1] * voxel_size[2] / s**3
    return max(1, round(ball / voxel))


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
    **postprocess: Any,
) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Labels ``(Z, H, W)`` and probabilities ``(K, Z, H, W)`` of one volume.

    ``volume`` is ``(Z, H, W)`` or ``(C, Z, H, W)`` (``has_channels``). Options as
    for :func:`napari_unet.segment.segment`; the 3D ones are ``link_iou``
    (linked), ``seed_threshold`` (views) and ``min_volume`` (both; default
    :func:`default_min_volume`); ``tta`` augments every plane's tiles; ``precision``
    as for :func:`napari_unet.predict_tiled`. Options left out come from the
    model's recommendation (one resolver for every mode).
    """
    given = dict(postprocess, threshold=threshold, min_size=min_size)
    postprocess = resolve_postprocess(model, given, stack=stack)
    link_iou = float(postprocess.pop("link_iou", LINK_IOU))
    min_volume = postprocess.pop("min_volume", None)
    if min_volume is None:
        min_volume = default_min_volume(postprocess["min_size"], voxel_size)
    if int(min_volume) < 0:
        raise NapariUnetError(f"min_volume must be 0 or more, got {min_volume}.")
    if stack == "linked":
        # the caller's options, not the resolved ones: the planes path resolves them
        # itself, with min_size at the right scale
        labels, prob = yield from iter_segment_planes(
            model, volume, rescale=rescale, tile_shape=tile_shape, batch_size=batch_size,
            device=device, tta=tta, precision=precision,
            **{k: v for k, v in given.items() if k not in OPTIONS_3D},
        )  # fmt: skip
        return link_planes(labels, iou=link_iou, min_volume=int(min_volume)), prob
    seed_threshold = postprocess.pop("seed_threshold")
    threshold = postprocess.pop("threshold")
    min_confidence = float(postprocess.pop("min_confidence"))
    postprocess.pop("min_size")
    method = postprocess.pop("method")
    h = float(postprocess.pop("h"))
    smoothing = float(postprocess.pop("smoothing"))
    if postprocess:
        raise NapariUnetError(
            f"Unknown option(s) for 3D objects: {', '.join(sorted(postprocess))}."
        )
    if method not in METHODS:
        raise NapariUnetError(f"Unknown method {method!r}; use {' or '.join(METHODS)}.")
    if not 0.0 < threshold < 1.0:
        raise NapariUnetError(f"The threshold must be between 0 and 1, got {threshold}.")
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
    fg = np.subtract(np.float32(1.0), prob[0])
    if method == "components":
        labels = drop_small_3d(ndi.label(fg > threshold)[0], int(min_volume))
    else:
        s = min(voxel_size[1], voxel_size[2])
        labels = labels_3d(
            fg,
            threshold=threshold,
            sampling=[v / s for v in voxel_size],
            min_volume=int(min_volume),
            h=h / rescale,  # given at the network's scale, like the 2D options
            smoothing=smoothing / rescale,
            seed_threshold=seed_threshold,
        )
    # as in 2D: objects the network is unsure of go (ids stay consecutive)
    labels = keep_confident(labels, fg, min_confidence)
    return labels, prob
