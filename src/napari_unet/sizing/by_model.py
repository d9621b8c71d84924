"""Stage 2 of the size estimate: the model's own objects, at a scale it knows.

See :mod:`napari_unet.sizing` for why; stage 1 (:mod:`.from_image`) says which scale.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..content import bin_down
from ..events import SizeProgress
from ..postprocess import labels_from_probabilities
from ..rescaling import resize_spatial

if TYPE_CHECKING:
    from ..model import UNet
    from .from_image import Plane

__all__ = ["measuring_factor", "without_fragments", "model_pass", "is_whole"]

# Stage 2: the model's window at the network's scale; a whole image up to one CPU tile.
_WINDOW, _WHOLE = 256, 512
# Objects under this many pixels at the network's scale are fragments, not measured.
_MIN_AREA = 16
# The middle of a model's range: where it measures objects best.
_COMFORT = 1.5


def measuring_factor(diameter: float, known: tuple[float, float]) -> float:
    """The factor the model measures objects of ``diameter`` px at.

    1 when they are well inside its range (the middle, ``[1.5 min, max / 1.5]``),
    else the factor that brings them to the range's geometric middle (never
    below 1/16 or above 4).
    """
    lo, hi = known
    if lo * _COMFORT <= diameter <= hi / _COMFORT:
        return 1.0
    return min(max(math.sqrt(lo * hi) / diameter, 1 / 16), 4.0)


def without_fragments(sizes: np.ndarray) -> np.ndarray:
    """Diameters less those under half the area-weighted median: fragments and specks.

    In a noisy image a model (or a threshold) finds many small pieces of noise
    or of cut objects; they are many but cover little, so the area-weighted
    median stays with the real objects. Objects of one kind rarely differ by 2x.
    """
    if len(sizes) < 2:
        return sizes
    order = np.sort(sizes)
    area = order**2
    cum = np.cumsum(area)
    weighted = order[np.searchsorted(cum, cum[-1] / 2)]
    return order[order >= weighted / 2]


def model_pass(
    model: UNet,
    image: Any,
    planes: list[Plane],
    factor: float,
    has_channels: bool,
    tile_shape: Any,
    batch_size: int,
    device: Any,
    precision: Any = "fp32",
) -> Generator[SizeProgress, None, tuple[np.ndarray, np.ndarray | None]]:
    """Stage 2: the model's objects at ``factor``; diameters in the image's pixels.

    Returns the diameters and, when the pass covered a whole 2D image exactly
    as :func:`napari_unet.segment.iter_segment` predicts it, its probabilities
    (else None).
    """
    from ..tiling import iter_predict_tiled, resolve_normalization

    h, w = (int(s) for s in image.shape[-2:])
    net = (max(1, round(h * factor)), max(1, round(w * factor)))
    options = dict(tile_shape=tile_shape, batch_size=batch_size, device=device, precision=precision)
    if is_whole(image, has_channels, factor):  # the whole image, as the prediction sees it
        work = image if factor == 1.0 else resize_spatial(np.asarray(image), net)
        prob = yield from _as_size_progress(iter_predict_tiled(model, work, **options))
        labels = labels_from_probabilities(prob, min_size=_MIN_AREA)
        return _diameters(labels, cut=False) / factor, prob
    # a window of every sampled plane (a stack's planes differ: one plane's few dozen
    # objects missed its median by 18% on synthetic planes), where stage 1 sees the most
    # foreground, normalised with the whole image's statistics as the prediction will be
    norm = resolve_normalization(model, None)
    found = []
    for k, plane in enumerate(planes):
        crop, inner = _window_of(
            image, plane, norm, has_channels, max(8, math.ceil(_WINDOW / factor))
        )
        sh, sw = crop.shape[-2:]
        work = resize_spatial(crop, (max(1, round(sh * factor)), max(1, round(sw * factor))))
        prob = yield from _as_size_progress(
            iter_predict_tiled(model, work, normalization=False, **options), k, len(planes)
        )
        labels = labels_from_probabilities(prob, min_size=_MIN_AREA)
        found.append(_diameters(labels, cut=inner) / factor)
    return np.concatenate(found), None


def _window_of(
    image: Any, plane: Plane, norm: Any, has_channels: bool, side: int
) -> tuple[np.ndarray, tuple[bool, bool, bool, bool]]:
    """The normalised window of ``plane`` for the model pass, and which of its edges are inner.

    Only a window's inner edges (top, left, bottom, right) cut objects short: at the
    image's own edge the truth is cut alike.
    """
    h, w = (int(s) for s in image.shape[-2:])
    wy, wx, sh, sw = _densest_window(plane.data, side)
    y0, x0 = plane.offset[0] + wy, plane.offset[1] + wx
    window = (slice(y0, y0 + sh), slice(x0, x0 + sw))
    inner = (y0 > 0, x0 > 0, y0 + sh < h, x0 + sw < w)
    # statistics of the whole image, as the prediction's; for an image not in memory
    # (dask, zarr) those of the plane's crop, so that the estimate reads only the crop
    if isinstance(image, np.ndarray):
        basis = image
    else:
        (cy, cx), (ch, cw) = plane.offset, plane.data.shape
        where = (*plane.index, slice(cy, cy + ch), slice(cx, cx + cw))
        basis = np.asarray(image[(slice(None), *where)] if has_channels else image[where])
    if has_channels:
        stats = norm.statistics(basis, channel_axis=0)
        chans = [np.asarray(image[(c, *plane.index, *window)]) for c in range(image.shape[0])]
        return norm.apply(np.stack(chans), stats, channel_axis=0), inner
    stats = norm.statistics(basis)
    return norm.apply(np.asarray(image[(*plane.index, *window)]), stats), inner


def _as_size_progress(
    gen: Generator, part: int = 0, parts: int = 1
) -> Generator[SizeProgress, None, Any]:
    """A prediction's tile progress as the size estimate's (``part`` of ``parts`` equal ones)."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        try:
            yield SizeProgress(part * event.total + event.done, parts * event.total)
        except GeneratorExit:
            gen.close()
            raise


def is_whole(image: Any, has_channels: bool, factor: float) -> bool:
    """Whether the model pass covers the whole image: 2D, at most 512x512 px at ``factor``."""
    is_2d = image.ndim == (3 if has_channels else 2)
    return is_2d and max(round(int(s) * factor) for s in image.shape[-2:]) <= _WHOLE


def _densest_window(plane: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """``(y0, x0, height, width)`` of the ``side``-square window with the most bright area."""
    from skimage.filters import threshold_otsu

    h, w = plane.shape
    sh, sw = min(side, h), min(side, w)
    if (sh, sw) == (h, w):
        return 0, 0, h, w
    k = max(1, min(sh, sw) // 32)  # a coarse grid is enough to place a window
    small = bin_down(plane, k)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    if float(small.max()) - float(small.min()) < 1e-6:
        return y0, x0, sh, sw
    fg = (small > threshold_otsu(small)).astype(np.float32)
    wy, wx = max(1, sh // k), max(1, sw // k)
    # the sum over each window, by its top-left corner (an integral image)
    cum = np.pad(fg, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = cum[wy:, wx:] - cum[:-wy, wx:] - cum[wy:, :-wx] + cum[:-wy, :-wx]
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return min(iy * k, h - sh), min(ix * k, w - sw), sh, sw


def _diameters(labels: np.ndarray, *, cut: bool | tuple[bool, ...]) -> np.ndarray:
    """Equivalent diameters of 2D labels; ``cut``: leave out objects touching the edge.

    ``cut`` as four booleans (top, left, bottom, right) names the edges that cut.
    """
    labels = np.asarray(labels)
    if labels.ndim > 2:
        labels = labels.reshape(-1, *labels.shape[-2:])
        return np.concatenate([_diameters(p, cut=cut) for p in labels])
    n = int(labels.max())
    if n == 0:
        return np.zeros(0)
    areas = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    keep = areas > 0
    keep[0] = False
    rims = (labels[0], labels[:, 0], labels[-1], labels[:, -1])
    cuts = (cut,) * 4 if isinstance(cut, bool) else cut
    if any(cuts):
        keep[np.unique(np.concatenate([r for r, on in zip(rims, cuts) if on]))] = False
    return 2.0 * np.sqrt(areas[keep] / math.pi)
