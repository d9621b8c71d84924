"""Stage 1 of the size estimate: from the image alone, scale-free (:mod:`napari_unet.sizing`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..content import bin_down

__all__ = ["Plane", "sample_planes", "image_sizes"]

# Stage 1 looks at most at this many pixels per side of this many planes.
_CROP_SIDE, _PLANES = 1024, 3
# Stage 1 works where objects are about this many pixels across.
_WORK_DIAMETER = 16.0
_WORK_SIDE = 512


@dataclass(frozen=True)
class Plane:
    """A sampled plane: its index among the leading axes, its crop's offset, its pixels."""

    index: tuple[int, ...]
    offset: tuple[int, int]
    data: np.ndarray  # normalised float32 (channels averaged)


def sample_planes(a: Any, has_channels: bool) -> list[Plane]:
    """Up to three middle planes, each a central crop of at most 1024x1024 px, normalised."""
    from ..normalization import Normalization

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
        planes.append(Plane(index, (y0, x0), data))
    return planes


def image_sizes(x: np.ndarray) -> np.ndarray:
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
