"""Is there anything to segment? A test of an image against pure noise.

A network fed percentile-normalised noise stretches the noise to the full
intensity range and finds "objects" in it (the bundled model finds about 80 in
a 256x256 image of white noise). :func:`nothing_to_segment` says when an image
is constant or shows nothing but noise, so that :func:`napari_unet.segment`
returns no objects and a note instead.

The test: the image is smoothed at the scales 1, 2, 4 and 8 px (a pyramid of
2x2 binnings, each smoothed by 1 px), and at each scale its largest deviation
from the median is compared with what white noise of the image's own noise
level would give there. The noise level comes from the median absolute
difference of neighbouring pixels, which objects barely move. Pure noise stays
within about 5 of its standard deviations over a million pixels; a single dim
nucleus 20 px across, twice as bright as the noise's standard deviation, stands
about 25 above it at the 4 px scale. So the test only gives up on images where
nothing reaches :data:`NOISE_LIMIT` standard deviations at any scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["nothing_to_segment", "noise_sigma", "bin_down", "NOISE_LIMIT"]

#: Deviation, in standard deviations of smoothed noise, that counts as structure.
NOISE_LIMIT = 8.0
# Planes are binned to about this side before the test (a 4096 px plane: 4x4 bins).
_TEST_SIDE = 1024
# A Gaussian of 1 px divides the standard deviation of white noise by this.
_SMOOTH_GAIN = 2.0 * math.sqrt(math.pi)


def bin_down(plane: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``k`` x ``k`` blocks of a 2D plane (the ragged edge is dropped)."""
    if k <= 1:
        return plane
    h, w = (plane.shape[0] // k) * k, (plane.shape[1] // k) * k
    return plane[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)


def noise_sigma(plane: np.ndarray) -> float:
    """Standard deviation of a 2D plane's pixel noise, from neighbouring pixels' differences.

    The median absolute difference is robust to edges and objects; a plane whose
    neighbours are mostly equal (quantised, clipped) falls back to the standard
    deviation of the differences.
    """
    x = np.asarray(plane, dtype=np.float32)
    d = np.concatenate([np.diff(x, axis=0).ravel(), np.diff(x, axis=1).ravel()])
    if d.size == 0:
        return 0.0
    # a difference of two pixels has sqrt(2) times the noise; MAD/0.6745 is a sigma
    sigma = float(np.median(np.abs(d))) / 0.6745 / math.sqrt(2.0)
    if sigma == 0.0:
        sigma = float(d.std()) / math.sqrt(2.0)
    return sigma


def _plane_verdict(plane: np.ndarray) -> str | None:
    """'constant', 'noise' or None (something to segment) for one 2D plane."""
    from scipy import ndimage as ndi

    x = np.asarray(plane, dtype=np.float32)
    if x.size == 0 or not np.isfinite(x).all():
        return None  # the prediction refuses NaN and infinity in its own words
    if float(x.max()) == float(x.min()):
        return "constant"
    if min(x.shape) < 16:  # too few pixels to tell noise from objects: segment it
        return None
    x = bin_down(x, max(1, math.ceil(max(x.shape) / _TEST_SIDE)))
    sigma = noise_sigma(x)
    if sigma == 0.0:
        return None  # variation without noise: a drawing, a mask
    level = x - np.float32(np.median(x))
    for step in range(4):  # smoothing scales of 1, 2, 4 and 8 px
        if min(level.shape) < 8:
            break
        smooth = ndi.gaussian_filter(level, 1.0)
        expected = sigma / _SMOOTH_GAIN / 2**step  # binning by 2 halves white noise
        deviation = np.abs(smooth - np.float32(np.median(smooth)))
        if float(deviation.max()) > NOISE_LIMIT * expected:
            return None
        level = bin_down(level, 2)
    return "noise"


def nothing_to_segment(image: Any, *, has_channels: bool = False) -> str | None:
    """Whether an image holds nothing to segment, as one sentence (None: it may).

    Parameters
    ----------
    image : array-like
        ``(..., H, W)``; with ``has_channels`` the first axis holds channels.
    has_channels : bool
        Whether the first axis is channels (each is tested; one with structure
        is enough).

    Returns
    -------
    str or None
        A note when every plane is constant or pure noise, else None. Planes are
        tested from the middle of a stack outwards and the test stops at the
        first plane with structure, so a real stack costs one plane.
    """
    a = np.asarray(image)
    if a.ndim < 2:
        return None
    planes = a.reshape(-1, *a.shape[-2:])
    if not has_channels:
        order = _middle_out(planes.shape[0])
    else:  # every channel of the middle plane first
        c = a.shape[0]
        per_channel = planes.shape[0] // max(c, 1)
        order = [ch * per_channel + z for z in _middle_out(per_channel) for ch in range(c)]
    verdicts = set()
    for i in order:
        verdict = _plane_verdict(planes[i])
        if verdict is None:
            return None
        verdicts.add(verdict)
    if verdicts == {"constant"}:
        return "The image is constant (no contrast): no objects."
    return "The image shows nothing above its noise: no objects."


def _middle_out(n: int) -> list[int]:
    """0..n-1 ordered from the middle outwards."""
    mid = (n - 1) // 2
    return sorted(range(n), key=lambda i: (abs(i - mid), i))
