"""Failure modes seen on real nuclei (issue 25), each a :class:`SyntheticConfig` option.

All three are off by default; switched off they draw no random numbers, so every
existing configuration and seed gives the same arrays as before.

- ``mitotic``: condensed mitotic/apoptotic nuclei: 2.5 to 6 times the typical brightness
  (the camera often saturates on them), a grainy texture of bright chromatin granules with
  dark gaps, and a sharp edge. Labelled as ONE object: on real HeLa frames the bundled model
  cut such nuclei into 2 to 4 pieces where its probability followed the gaps.
- ``specks``: small, dim, out-of-focus blobs next to in-focus nuclei (a fifth to a half of
  the typical diameter across, a tenth to half the typical brightness, blurred more than the
  focal plane). Not labelled: the real references leave such specks out.
- ``high_offset``: a 16-bit image recorded the way many real cameras write it: a large
  offset (30% to 60% of 65,535, as the HeLa frames at 33,000 to 37,000), the nuclei a few
  hundred to a few thousand counts above it, sometimes a saturation level just above the
  brightest nuclei; or a 12-bit camera (values up to 4,095) in a 16-bit file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from .scene_settings import SceneSettings as SyntheticConfig
    from .shapes import Cell

__all__ = ["add_real_modes", "restage_camera"]


def add_real_modes(
    rng: np.random.Generator,
    config: SyntheticConfig,
    labels: np.ndarray,
    cells: list[Cell],
    expected: np.ndarray,
) -> np.ndarray:
    """``expected`` (typical nucleus about 1) with condensed nuclei and specks drawn in.

    Returns ``expected`` itself, untouched and without a random draw, when both
    ``config.mitotic`` and ``config.specks`` are 0. The modes draw from a stream jumped
    far ahead of ``rng`` and leave ``rng`` where it was: the camera that follows draws
    the same settings, so an image with a mode differs from the one without only by
    the mode's light (and the shot noise on it).
    """
    if config.mitotic <= 0 and config.specks <= 0:
        return expected
    own = np.random.Generator(rng.bit_generator.jumped())
    if config.mitotic > 0:
        expected = _condense(own, config, labels, cells, expected)
    if config.specks > 0:
        expected = _specks(own, config, labels, cells, expected)
    return expected


def _condense(rng, config, labels, cells, expected):
    """Redraw a ``config.mitotic`` share of the nuclei as bright, grainy, condensed ones."""
    out = expected.copy()
    psf = rng.uniform(*config.blur)
    for ident, cell in enumerate(cells, start=1):
        if rng.random() >= config.mitotic:
            continue
        pad = int(np.ceil(3 * psf)) + 2
        sl = tuple(
            slice(max(s.start - pad, 0), min(s.stop + pad, n))
            for s, n in zip(cell.sl, labels.shape, strict=True)
        )
        own = labels[sl] == ident
        if not own.any():
            continue
        # chromatin granules: smooth noise cut at a level, dark gaps between them
        grain = ndi.gaussian_filter(
            rng.standard_normal(own.shape).astype(np.float32), rng.uniform(1.0, 1.8)
        )
        cut = np.quantile(grain[own], rng.uniform(0.25, 0.6))
        granules = np.clip((grain - cut) / max(float(grain[own].std()), 1e-6), 0.0, 1.0)
        floor = rng.uniform(0.1, 0.35)  # the gaps: dimmer, never background
        light = np.where(own, rng.uniform(2.5, 6.0) * (floor + (1 - floor) * granules), 0.0)
        light = ndi.gaussian_filter(light.astype(np.float32), psf) if psf > 0 else light
        # the nucleus drawn before is replaced: its light is taken out where it shone
        weight = ndi.gaussian_filter(own.astype(np.float32), max(psf, 0.5) + 1.0)
        background = (
            float(np.median(expected[sl][labels[sl] == 0])) if (labels[sl] == 0).any() else 0.0
        )
        out[sl] = out[sl] * (1 - weight) + weight * background + light
    return out


def _specks(rng, config, labels, cells, expected):
    """Small, dim, blurred blobs beside nuclei; unlabelled."""
    h, w = labels.shape
    n = int(rng.poisson(config.specks * h * w / 1e4))
    if n == 0 or not cells:
        return expected
    typical = 2.0 * float(np.median([c.radius for c in cells]))
    out = expected.copy()
    for _ in range(n):
        cell = cells[int(rng.integers(len(cells)))]
        angle = rng.uniform(0, 2 * np.pi)
        dist = cell.radius * rng.uniform(1.1, 2.0)
        cy, cx = cell.cy + dist * np.sin(angle), cell.cx + dist * np.cos(angle)
        # a fifth to half the typical diameter across, out of focus: wider than the PSF
        sigma = typical * rng.uniform(0.2, 0.5) / 2.355 + rng.uniform(0.5, 2.0)
        peak = rng.uniform(0.1, 0.5)
        r = int(np.ceil(3 * sigma))
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue  # beside a nucleus at the edge, outside the image
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return out


def restage_camera(
    rng: np.random.Generator, config: SyntheticConfig, image: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """A 16-bit image re-recorded with a large offset or as 12-bit (``config.high_offset``).

    Returns ``image`` itself, without a random draw, when ``config.high_offset`` is 0 or
    the image is 8-bit.
    """
    if config.high_offset <= 0 or image.dtype != np.uint16:
        return image
    if rng.random() >= config.high_offset:
        return image
    values = image.astype(np.float32)
    base = float(np.median(values[labels == 0])) if (labels == 0).any() else 0.0
    signal = float(np.median(values[labels > 0])) - base if (labels > 0).any() else 1.0
    if rng.random() < 0.7:  # a large offset, as the HeLa frames
        top, offset = 65535.0, rng.uniform(0.3, 0.6) * 65535.0
        typical = rng.uniform(300.0, 3000.0)
    else:  # a 12-bit camera in a 16-bit file
        top, offset = 4095.0, rng.uniform(50.0, 1500.0)
        typical = rng.uniform(150.0, 1500.0)
    scaled = offset + (values - base) * (typical / max(signal, 1.0))
    if rng.random() < 0.5:  # the camera saturates a little above the brightest nuclei
        top = min(top, offset + typical * rng.uniform(3.0, 8.0))
    return np.clip(np.rint(scaled), 0, top).astype(np.uint16)
