"""How large are the objects? The typical object diameter, estimated for the user.

A network knows the object sizes it was trained on (the bundled model: nuclei 8
to 40 px across). When no diameter is given, :func:`napari_unet.segment`
estimates it here and resizes the image when it lies outside the model's range.

The estimate has two stages, because each alone fails where the other does not:

1. **From the image alone (scale-free).** A smoothed Otsu mask gives a first
   size (the area-weighted median of its components, which ignores noise
   specks); then, at a working scale where that size is about 16 px (2x2...
   binning), the mask is split into objects by a watershed of the smoothed
   intensity seeded by Laplacian-of-Gaussian maxima at the size's own scale,
   and the median equivalent diameter of the objects becomes the new size,
   until it settles (at most four rounds). Nothing in it depends on the
   absolute size, so nuclei 5 px or 60 px across are measured alike; crowded
   clumps that touch without a gap make it too large (up to about 1.6x on
   synthetic images with 90% of nuclei touching).
2. **By the model, at the scale that stage 1 implies.** The model segments a
   window of the image resized by the factor that brings the stage-1 size to
   the geometric middle of its range (18 px for 8-40 px; no resize when the
   size is already in the middle band ``[1.5 min, max / 1.5]``, 12-27 px),
   and the median equivalent diameter of its objects, divided by the factor,
   is the estimate (no pass when the size is in the middle band and the image
   is bigger than one window: no measurement at the image's own scale could
   change "no resizing", and it would cost a fifth of a 1024x1024 prediction).
   Objects cut by the window's edge are left out, and so are
   those under half the area-weighted median diameter: in a noisy image the
   model also finds many small pieces, which are many but cover little. When
   the objects it found were not in the middle band at that scale, the window
   is measured once more at the factor they imply (at most three passes). A
   model pass at the image's own scale would be misleading: nuclei 3x too large
   come out fragmented (AP@0.5 about 0.65), and nuclei at 0.3x mostly vanish.

Why not one of them alone: stage 1 is cheap and never fooled by the scale, but
its mask and seeds are heuristics (touching clumps: up to 2.3x too large at
0.3x); the model's own objects are what the prediction will make, but only at
a scale near its range. On synthetic nuclei at 0.3x, 1x and 3x (8 images, also
dim, crowded and 8-bit ones) stage 1 was within 2.3x of the true median
diameter and the two stages within 8%, except very dim nuclei (8-20 photons)
at 0.3x (-11% and -15%). Why not :func:`skimage.feature.blob_log`: on textured nuclei
its scale-space maxima are dominated by chromatin spots inside the nuclei
(median blob 3-12 px for nuclei 17-62 px across) and it takes about 10 s on
1024x1024.

Stage 1 looks at a central crop of at most 1024x1024 px of at most three planes;
stage 2 at a window of at most 256x256 px at the network's scale in each of those
planes (a stack's planes differ: the middle one alone missed the median of three
synthetic planes by 18%, all three by 1.5%), placed where
stage 1 saw the most foreground, or at the whole image when it is at most
512x512 px at the network's scale and 2D: :func:`napari_unet.segment` then
reuses that prediction when it needs no other factor (the common case of an
image in range), so a small image costs no second prediction.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._generators import progress_callback, run_to_end
from .content import bin_down, nothing_to_segment
from .errors import NapariUnetError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import UNet

__all__ = [
    "DiameterEstimate", "SizeChoice", "SizeProgress", "estimate_diameter",
    "iter_estimate_diameter", "choose_rescale", "model_diameter_range",
]  # fmt: skip

#: Fewest objects a size estimate rests on.
MIN_OBJECTS = 5
# Stage 1 looks at most at this many pixels per side of this many planes.
_CROP_SIDE, _PLANES = 1024, 3
# Stage 2: the model's window at the network's scale; a whole image up to one CPU tile.
_WINDOW, _WHOLE = 256, 512
_MODEL_PASSES = 3
# Objects under this many pixels at the network's scale are fragments, not measured.
_MIN_AREA = 16
# The middle of a model's range: where it measures objects best.
_COMFORT = 1.5
# The estimate's own pass is reused as the prediction within this of the rule's factor.
_PREFER_TOLERANCE = 0.1
# Stage 1 works where objects are about this many pixels across.
_WORK_DIAMETER = 16.0
_WORK_SIDE = 512


@dataclass(frozen=True)
class DiameterEstimate:
    """The typical object diameter of an image, as :func:`estimate_diameter` found it.

    Attributes
    ----------
    diameter : float or None
        Median equivalent diameter (that of the disc of the same area) in the
        image's pixels; None when there were too few objects to tell.
    count : int
        How many objects the estimate rests on.
    quartiles : tuple of float or None
        25th and 75th percentiles of the objects' diameters.
    source : {"model", "image", "none"}
        ``"model"``: measured on the model's objects at a scale it knows;
        ``"image"``: the model-free estimate (no model given, a model that
        records no range, a model that found too few objects, or a size in the
        middle of the range on an image bigger than one window); ``"none"``: no
        estimate.
    empty : bool
        The image is constant or shows nothing above its noise.
    note : str
        One sentence on what was found (for the user).
    """

    diameter: float | None
    count: int
    quartiles: tuple[float, float] | None
    source: str
    empty: bool = False
    note: str = ""


@dataclass(frozen=True)
class SizeProgress:
    """Progress of one of the size estimate's model passes: ``done`` of ``total`` tiles."""

    done: int
    total: int


@dataclass(frozen=True)
class SizeChoice:
    """Event of :func:`napari_unet.segment.iter_segment`: the size was estimated, the factor chosen.

    Yielded once, before the prediction starts (the GUI and the CLI show
    ``message``). It has no ``done``/``total``: progress consumers skip it.
    """

    estimate: DiameterEstimate
    rescale: float
    message: str


def model_diameter_range(model: Any) -> tuple[float, float] | None:
    """The ``(min, max)`` object diameters a model records (``metadata["object_diameter"]``)."""
    known = (getattr(model, "metadata", None) or {}).get("object_diameter") or {}
    lo, hi = known.get("min"), known.get("max")
    if lo is None or hi is None:
        return None
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        return None
    return lo, hi


def choose_rescale(
    model: Any,
    estimate: DiameterEstimate,
    *,
    can_resize: bool = True,
    prefer: float | None = None,
) -> tuple[float, str]:
    """The factor an estimate calls for, and one sentence saying so.

    The same rule as :func:`napari_unet.segment.rescale_for_diameter`; where
    that would refuse (objects under 4 px, or beyond the largest resize), or the
    model records no range, or there is no estimate, the image is not resized.

    Parameters
    ----------
    model : UNet
    estimate : DiameterEstimate
    can_resize : bool
        False for images segmented chunk by chunk, which keep their scale: the
        factor is then 1 and the sentence says what resizing would have been.
    prefer : float or None
        A factor the whole image was already predicted at (the estimate's own
        pass). When it is within 10% of the rule's factor it is chosen instead,
        so that prediction is not made twice. (Anywhere in the middle of the
        range was too loose: with the retrained model, 3x nuclei brought to 15 px
        instead of 18 px lost 0.2 AP@0.5 on one test image.)

    Returns
    -------
    (rescale, message) : tuple of float and str
    """
    from .segment import rescale_for_diameter

    if estimate.diameter is None:
        return 1.0, estimate.note
    d = estimate.diameter
    said = f"Estimated object diameter {d:.0f} px"
    known = model_diameter_range(model)
    if known is None:
        return 1.0, f"{said}; this model records no object sizes, so the image was not resized."
    lo, hi = known
    try:
        rescale = rescale_for_diameter(model, d)
    except NapariUnetError:
        return 1.0, f"{said}: too far from the model's {lo:g}-{hi:g} px to resize; not resized."
    if rescale == 1.0:
        return 1.0, f"{said}: within the model's {lo:g}-{hi:g} px, no resizing."
    if prefer is not None and abs(prefer / rescale - 1.0) <= _PREFER_TOLERANCE:
        rescale = prefer
    if not can_resize:
        return 1.0, (
            f"{said}: outside the model's {lo:g}-{hi:g} px, but an image segmented chunk by "
            f"chunk is not resized; resize it x{rescale:.2g} first for better results."
        )
    return rescale, f"{said}: outside the model's {lo:g}-{hi:g} px, resized x{rescale:.2g}."


def iter_estimate_diameter(
    image: Any,
    model: UNet | None = None,
    *,
    has_channels: bool | None = None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
) -> Generator[SizeProgress, None, DiameterEstimate]:
    """Generator form of :func:`estimate_diameter`: yields the model passes' tile progress."""
    estimate, _ = yield from _iter_estimate(
        image,
        model,
        has_channels=has_channels,
        min_objects=min_objects,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
    )
    return estimate


def estimate_diameter(
    image: Any,
    model: UNet | None = None,
    *,
    has_channels: bool | None = None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> DiameterEstimate:
    """Estimate the typical object diameter of an image, in pixels.

    A model-free, scale-free estimate from the image, then (with a ``model``
    that records its range) a measurement on the model's own objects at the
    scale that estimate implies; see the module documentation for why both.

    Parameters
    ----------
    image : array-like
        ``(H, W)``, a stack ``(..., H, W)`` (at most three planes from the middle
        are measured), or channels first for a multi-channel model. A dask or
        zarr array is read only where it is measured (no noise test then).
    model : UNet or None
        The network that will segment the image. None: the model-free estimate.
    has_channels : bool or None
        Whether the first axis holds channels; None: as the model says (a model
        with more than one input channel), else no.
    min_objects : int
        Fewest objects an estimate may rest on (default 5).
    tile_shape, batch_size, device
        For the model's passes, as for :func:`napari_unet.predict_tiled`.
    progress : callable or None
        Called as ``progress(done, total)`` after every batch of tiles.

    Returns
    -------
    DiameterEstimate
        ``diameter`` is None, with a note, when fewer than ``min_objects``
        objects were found or the image holds nothing but noise
        (:func:`napari_unet.content.nothing_to_segment`).

    Examples
    --------
    >>> from napari_unet.synthetic import make_cells
    >>> image, _ = make_cells((256, 256), diameter=(40, 60), seed=0)
    >>> 35 < estimate_diameter(image).diameter < 70
    True
    """
    gen = iter_estimate_diameter(
        image,
        model,
        has_channels=has_channels,
        min_objects=min_objects,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
    )
    return run_to_end(gen, progress_callback(progress))


def _iter_estimate(
    image: Any,
    model: UNet | None,
    *,
    has_channels: bool | None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: Any,
    batch_size: int,
    device: Any,
    check_empty: bool = True,
    reuse: bool = False,
    precision: Any = "fp32",
) -> Generator[SizeProgress, None, tuple[DiameterEstimate, tuple[float, np.ndarray] | None]]:
    """The estimate, and (``reuse``) a whole-image prediction with its factor, if one was made.

    ``check_empty=False``: the caller has found the image worth segmenting. ``precision``:
    of the model passes (the caller's, so that a reused prediction is the one it asked for).
    """
    a = image if hasattr(image, "ndim") else np.asarray(image)
    if a.ndim < 2:
        raise NapariUnetError(f"An image needs at least two dimensions; got shape {a.shape}.")
    if has_channels is None:
        has_channels = model is not None and int(model.in_channels) > 1
    if isinstance(min_objects, bool) or not isinstance(min_objects, (int, np.integer)):
        raise NapariUnetError(f"min_objects must be a whole number, got {min_objects!r}.")
    min_objects = max(1, int(min_objects))
    # an image not in memory (dask, zarr) is not read whole for the noise test
    check_empty = check_empty and isinstance(a, np.ndarray)
    empty_note = nothing_to_segment(a, has_channels=has_channels) if check_empty else None
    if empty_note is not None:
        return DiameterEstimate(None, 0, None, "none", empty=True, note=empty_note), None
    planes = _sample_planes(a, has_channels)
    sizes = np.concatenate([_image_sizes(p.data) for p in planes])
    hint = float(np.median(sizes)) if len(sizes) >= min_objects else None
    result = _summary(sizes, "image", min_objects)
    known = model_diameter_range(model) if model is not None else None
    if hint is None or known is None:
        return result, None
    kept = None
    factor = _measuring_factor(hint, known)
    if factor == 1.0 and not _is_whole(a, has_channels, factor):
        # in the middle of the range: no model pass could change "no resizing" here
        # (at the image's own scale it would find what stage 1 found), and on an image
        # bigger than one window it would cost a fifth of a 1024x1024 prediction
        return result, None
    for _ in range(_MODEL_PASSES):
        found, whole = yield from _model_pass(
            model, a, planes, factor, has_channels, tile_shape, batch_size, device, precision
        )
        if whole is not None and reuse:
            kept = (factor, whole)
        if len(found) < min_objects:
            break  # keep the last measurement that had enough objects
        result = _summary(found, "model", min_objects)
        if _measuring_factor(result.diameter * factor, known) == 1.0:
            break  # the objects were in the middle of its range: a scale it is sure of
        factor = _measuring_factor(result.diameter, known)
    return result, kept


def _measuring_factor(diameter: float, known: tuple[float, float]) -> float:
    """The factor the model measures objects of ``diameter`` px at.

    1 when they are well inside its range (the middle, ``[1.5 min, max / 1.5]``),
    else the factor that brings them to the range's geometric middle (never
    below 1/16 or above 4).
    """
    lo, hi = known
    if lo * _COMFORT <= diameter <= hi / _COMFORT:
        return 1.0
    return min(max(math.sqrt(lo * hi) / diameter, 1 / 16), 4.0)


def _without_fragments(sizes: np.ndarray) -> np.ndarray:
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


def _summary(sizes: np.ndarray, source: str, min_objects: int) -> DiameterEstimate:
    n = len(sizes)
    if n < min_objects:
        note = (
            f"Too few objects to estimate their size ({n} found, {min_objects} needed); "
            "the image was not resized."
        )
        return DiameterEstimate(None, n, None, "none", note=note)
    if source == "model":
        sizes = _without_fragments(sizes)
    q1, med, q3 = (float(v) for v in np.percentile(sizes, [25, 50, 75]))
    note = f"Estimated object diameter {med:.0f} px ({n} objects)."
    return DiameterEstimate(med, n, (q1, q3), source, note=note)


@dataclass(frozen=True)
class _Plane:
    """A sampled plane: its index among the leading axes, its crop's offset, its pixels."""

    index: tuple[int, ...]
    offset: tuple[int, int]
    data: np.ndarray  # normalised float32 (channels averaged)


def _sample_planes(a: Any, has_channels: bool) -> list[_Plane]:
    """Up to three middle planes, each a central crop of at most 1024x1024 px, normalised."""
    from .normalization import Normalization

    h, w = (int(s) for s in a.shape[-2:])
    ch, cw = min(h, _CROP_SIDE), min(w, _CROP_SIDE)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    window = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    lead = tuple(a.shape[1:-2] if has_channels else a.shape[:-2])
    n = int(np.prod(lead)) if lead else 1
    picks = np.linspace(0, n - 1, _PLANES + 2)[1:-1] if n > 1 else [0]
    norm = Normalization()
    planes = []
    for k in sorted({int(round(v)) for v in picks}):
        index = tuple(int(i) for i in np.unravel_index(k, lead)) if lead else ()
        if has_channels:
            chans = [np.asarray(a[(c, *index, *window)]) for c in range(a.shape[0])]
        else:
            chans = [np.asarray(a[(*index, *window)])]
        parts = [norm.apply(c, norm.statistics(c)) for c in chans]
        data = np.mean(parts, axis=0, dtype=np.float32) if len(parts) > 1 else parts[0]
        planes.append(_Plane(index, (y0, x0), data))
    return planes


def _image_sizes(x: np.ndarray) -> np.ndarray:
    """Stage 1: equivalent diameters of the objects of a normalised plane (may be empty)."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    none = np.zeros(0, dtype=np.float64)
    if min(x.shape) < 8 or float(x.max()) - float(x.min()) < 1e-6:
        return none
    smooth = ndi.gaussian_filter(x, 1.0)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    areas = np.bincount(ndi.label(mask)[0].ravel())[1:]
    areas = areas[areas >= 4]
    if len(areas) == 0:
        return none
    # area-weighted: noise specks are many but cover little
    order = np.argsort(areas)
    cum = np.cumsum(areas[order])
    size = 2.0 * math.sqrt(areas[order][np.searchsorted(cum, cum[-1] / 2)] / math.pi)
    sizes = none
    for _ in range(4):
        k = max(1, int(size // _WORK_DIAMETER))
        work = bin_down(x, k)
        h, w = work.shape  # at most 512x512 working pixels: a few hundred objects
        y0, x0 = max(0, (h - _WORK_SIDE) // 2), max(0, (w - _WORK_SIDE) // 2)
        found = _split_sizes(work[y0 : y0 + _WORK_SIDE, x0 : x0 + _WORK_SIDE], size / k)
        if len(found) == 0:
            break
        sizes = found * k
        new = float(np.median(sizes))
        settled = abs(new / size - 1.0) < 0.05
        size = new
        if settled:
            break
    return sizes


def _split_sizes(x: np.ndarray, size: float) -> np.ndarray:
    """Objects of about ``size`` px: Otsu mask split by a LoG-seeded intensity watershed."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    if min(x.shape) < 4 or float(x.max()) - float(x.min()) < 1e-6:
        return np.zeros(0)
    smooth = ndi.gaussian_filter(x, max(1.0, size / 10))
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    sigma = size / (2.0 * math.sqrt(2.0))  # a disc of radius r answers most at r / sqrt(2)
    blob = -(sigma * sigma) * ndi.gaussian_laplace(x, sigma)
    peaks = peak_local_max(
        blob,
        min_distance=max(1, int(size / 4)),
        threshold_abs=0.05,
        labels=mask.astype(np.int32),
        exclude_border=False,
    )
    if len(peaks) == 0:
        return np.zeros(0)
    markers = np.zeros(x.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-ndi.gaussian_filter(x, sigma / 2), markers, mask=mask)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas >= (size / 4) ** 2]
    return 2.0 * np.sqrt(areas / math.pi)


def _model_pass(
    model: UNet,
    image: Any,
    planes: list[_Plane],
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
    from .postprocess import labels_from_probabilities
    from .segment import resize_spatial
    from .tiling import iter_predict_tiled, resolve_normalization

    h, w = (int(s) for s in image.shape[-2:])
    net = (max(1, round(h * factor)), max(1, round(w * factor)))
    options = dict(tile_shape=tile_shape, batch_size=batch_size, device=device, precision=precision)
    if _is_whole(image, has_channels, factor):  # the whole image, as the prediction sees it
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
    image: Any, plane: _Plane, norm: Any, has_channels: bool, side: int
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


def _is_whole(image: Any, has_channels: bool, factor: float) -> bool:
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
