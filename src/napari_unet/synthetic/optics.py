"""What the microscope sees before the camera: specimen texture, blur, halos, illumination.

Each style renders the expected intensity of the drawn cells, in units where a
typical cell (fluorescence) or the background (brightfield) is about 1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from .shapes import Cell

if TYPE_CHECKING:
    from .scene_settings import SceneSettings

__all__ = ["render_brightfield", "render_fluorescence"]


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-correlated noise with zero mean and unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], terms: int = 3) -> np.ndarray:
    """A slowly varying field (about unit amplitude), built from a few separable waves."""
    h, w = shape
    y = np.arange(h, dtype=np.float32) / max(h, w)
    x = np.arange(w, dtype=np.float32) / max(h, w)
    field = np.zeros(shape, np.float32)
    for _ in range(terms):
        fy, fx = rng.uniform(0.3, 2.5, 2)
        py, px = rng.uniform(0, 2 * np.pi, 2)
        field += np.outer(np.cos(2 * np.pi * fy * y + py), np.cos(2 * np.pi * fx * x + px))
    return field / math.sqrt(terms)


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Vignetting around an off-centre optical axis, a tilt, and gentle unevenness."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32)[:, None] - h * rng.uniform(0.3, 0.7)) / max(h, w)
    x = (np.arange(w, dtype=np.float32)[None, :] - w * rng.uniform(0.3, 0.7)) / max(h, w)
    tilt = rng.uniform(0, 2 * np.pi)
    field = (1.0 - rng.uniform(0.0, 0.9) * (y * y + x * x)) * (
        1.0 + rng.uniform(0.0, 0.4) * (y * math.sin(tilt) + x * math.cos(tilt))
    )
    field *= 1.0 + rng.uniform(0.0, 0.08) * _smooth_field(rng, shape)
    return np.clip(field, 0.3, None)


def _spots(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    cell: Cell,
    count: int,
    sigma: tuple[float, float],
    amplitude: tuple[float, float],
    within: float,
) -> np.ndarray:
    """Sum of ``count`` Gaussian spots placed inside the cell, at pixels ``(yy, xx)``."""
    r = within * np.sqrt(rng.random(count))
    t = rng.uniform(0, 2 * np.pi, count)
    u, v = cell.a * r * np.cos(t), cell.b * r * np.sin(t)
    c, s = math.cos(cell.angle), math.sin(cell.angle)
    sy, sx = (u * s + v * c)[:, None], (u * c - v * s)[:, None]
    width = (2 * rng.uniform(*sigma, count) ** 2)[:, None]
    height = rng.uniform(*amplitude, count).astype(np.float32)
    dist2 = (yy[None, :] - sy) ** 2 + (xx[None, :] - sx) ** 2
    return height @ np.exp(-dist2 / width).astype(np.float32)


def _cell_pixels(
    labels: np.ndarray, cell: Cell, ident: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cell's own pixels in its box, their ``rho`` and offsets from its centre."""
    own = labels[cell.sl] == ident
    ys, xs = np.nonzero(own)
    yy = (ys + cell.sl[0].start - cell.cy).astype(np.float32)
    xx = (xs + cell.sl[1].start - cell.cx).astype(np.float32)
    return own, cell.rho[own], yy, xx


def _footprint(
    labels: np.ndarray, cell: Cell
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cell in its box, hidden parts included, its ``rho`` and offsets from its centre.

    Pieces cut off by a cell in front and dropped from the labels are left out:
    they would be bright and unlabelled.
    """
    inside = (cell.rho < 1.0) & (labels[cell.sl] > 0)
    ys, xs = np.nonzero(inside)
    yy = (ys + cell.sl[0].start - cell.cy).astype(np.float32)
    xx = (xs + cell.sl[1].start - cell.cx).astype(np.float32)
    return inside, cell.rho[inside], yy, xx


def _nucleus_profile(rng: np.random.Generator, rho: np.ndarray) -> np.ndarray:
    """Brightness across a nucleus: flat, falling off only in the last few percent of its radius.

    A nucleus is a flattened ellipsoid 5-10 um thick; the microscope collects light
    from a slab about 1-2 um deep (widefield depth of field, a confocal section), so
    the signal follows ``min(thickness, slab)``: flat over most of the nucleus and
    falling steeply where the envelope curves down. ``k`` is thickness over slab
    (4-10). Its half-maximum lies within 1% of the radius of the envelope, which is
    the label's edge: after the optical blur, the label's edge is where the
    intensity is halfway between the nucleus and its surroundings, where a
    biologist draws it (generator version 1 drew ``(1 - rho^2)^p`` profiles whose
    half-maximum area was 0.90 of the label's: labels 11% too large). A mild dome
    (``c``) makes the centre a little brighter.
    """
    k = rng.uniform(4.0, 10.0)
    c = rng.uniform(0.0, 0.15)
    return np.minimum(k * np.sqrt(1.0 - rho * rho), 1.0) * (1.0 - c * rho * rho)


def _debris(
    rng: np.random.Generator, shape: tuple[int, int], per_10k: float
) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled things that are not nuclei: bright specks and thin fibres of lint.

    Returns the in-focus part and the out-of-focus part (blurred more by the caller).
    """
    h, w = shape
    sharp = np.zeros(shape, np.float32)
    soft = np.zeros(shape, np.float32)
    expected = per_10k * h * w / 1e4
    # specks: fluorescent dust and precipitated dye, 1-3 px, often brighter than nuclei
    n = int(rng.poisson(0.6 * expected))
    if n:
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        target = rng.random(n) < 0.7
        # the flux of a sub-resolution particle: after the blur its peak is 0.2-2x a nucleus
        values = np.exp(rng.uniform(math.log(2.0), math.log(20.0), n)).astype(np.float32)
        np.add.at(sharp, (ys[target], xs[target]), values[target])
        np.add.at(soft, (ys[~target], xs[~target]), values[~target] * 4.0)
    # fibres: lint and scratches, 1 px wide, 10-60 px long, gently curved, dim
    for _ in range(int(rng.poisson(0.4 * expected))):
        length = rng.uniform(10.0, 60.0)
        t = np.arange(0.0, length, 0.5)
        angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0.0, 0.04, t.size))
        y = rng.uniform(0, h) + np.cumsum(0.5 * np.sin(angle))
        x = rng.uniform(0, w) + np.cumsum(0.5 * np.cos(angle))
        keep = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        value = np.float32(rng.uniform(0.3, 1.5) * 0.5)  # two samples per pixel
        np.add.at(sharp, (y[keep].astype(np.intp), x[keep].astype(np.intp)), value)
    return sharp, soft


def render_fluorescence(
    rng: np.random.Generator, config: SceneSettings, labels: np.ndarray, cells: list[Cell]
) -> np.ndarray:
    """Expected intensity, in units where a typical nucleus is about 1.

    Overlapping nuclei both shine through (the overlap is brighter); debris and
    specks are drawn but not labelled.
    """
    shape = labels.shape
    psf = rng.uniform(*config.blur)
    fine = _noise(rng, shape, 0.8)  # chromatin grain
    coarse = _noise(rng, shape, 2.2)  # heterochromatin clumps
    sharp = np.zeros(shape, np.float32)
    soft = np.zeros(shape, np.float32)
    spread = rng.uniform(0.15, 0.4)  # how much brightness varies between cells
    for cell in cells:
        own, rho, yy, xx = _footprint(labels, cell)
        dividing = cell.kind == "dividing"
        blurred = not dividing and rng.random() < config.out_of_focus
        bright = math.exp(rng.normal(0.0, spread))
        if rng.random() < 0.25:
            bright *= 1.8  # G2: twice the DNA of G1
        dimming = rng.uniform(0.15, 0.4)  # drawn always: ``dim`` changes brightness only
        if rng.random() < config.dim:
            bright *= dimming  # weakly stained: dim next to bright ones
        if dividing:
            # condensed chromosomes: small, very bright, grainy, no nucleoli
            bright *= rng.uniform(2.0, 3.5)
            profile = (1.0 - rho * rho) ** rng.uniform(0.05, 0.2)
            texture = 1.0 + rng.uniform(0.25, 0.45) * fine[cell.sl][own]
        else:
            profile = _nucleus_profile(rng, rho)
            texture = (
                1.0
                + rng.uniform(0.04, 0.2) * fine[cell.sl][own]
                + rng.uniform(0.03, 0.3) * coarse[cell.sl][own]
            )
            if rng.random() < 0.3:  # bright rim of peripheral heterochromatin
                rim = rng.uniform(0.1, 0.3)
                texture += rim * np.exp(-(((1.0 - rho) / 0.12) ** 2))
            n_nucleoli = int(rng.poisson(1.5))
            if n_nucleoli:  # nucleoli hold little DNA: dark holes in a DNA stain
                size = cell.radius * 0.18
                texture *= 1.0 - np.minimum(
                    _spots(
                        rng, yy, xx, cell, n_nucleoli, (0.6 * size, 1.2 * size), (0.3, 0.6), 0.55
                    ),
                    0.8,
                )
            if rng.random() < 0.25:  # chromocentres: bright DNA foci
                texture += _spots(
                    rng, yy, xx, cell, int(rng.integers(3, 12)), (0.6, 1.3), (0.3, 0.9), 0.75
                )
            if blurred:
                bright *= rng.uniform(0.6, 1.0)
        target = soft if blurred else sharp
        target[cell.sl][own] += bright * profile * np.maximum(texture, 0.05)
    if config.debris > 0:
        specks, soft_specks = _debris(rng, shape, config.debris)
        sharp += specks
        soft += soft_specks
    image = ndi.gaussian_filter(sharp, psf) if psf > 0 else sharp
    if soft.any():
        image += ndi.gaussian_filter(soft, psf + rng.uniform(1.0, 3.0))
    # out-of-focus light from all cells: a haze around crowded regions
    image += rng.uniform(0.0, 0.25) * ndi.gaussian_filter(
        image, rng.uniform(6.0, 14.0), truncate=2.5
    )
    # autofluorescence and stray light: a smooth, uneven background
    background = rng.uniform(0.01, 0.3) * (1.0 + 0.3 * _smooth_field(rng, shape))
    return (image + np.clip(background, 0.0, None)) * _illumination(rng, shape)


def render_brightfield(
    rng: np.random.Generator, config: SceneSettings, labels: np.ndarray, cells: list[Cell]
) -> np.ndarray:
    """Expected intensity, in units where the background is about 1."""
    shape = labels.shape
    psf = rng.uniform(*config.blur)
    fine = _noise(rng, shape, 0.8)
    coarse = _noise(rng, shape, 2.5)
    thickness = np.zeros(shape, np.float32)
    for ident, cell in enumerate(cells, start=1):
        own, rho, yy, xx = _cell_pixels(labels, cell, ident)
        rho = np.minimum(rho, 1.0)
        height = rng.uniform(0.3, 0.6) * (1.5 if cell.kind == "dividing" else 1.0)
        dome = np.sqrt(1.0 - rho * rho) * rng.uniform(0.4, 0.8) + rng.uniform(0.2, 0.6)
        texture = (
            1.0
            + rng.uniform(0.1, 0.3) * fine[cell.sl][own]
            + rng.uniform(0.05, 0.2) * coarse[cell.sl][own]
        )
        # the nucleus as a denser, smooth region, and granules in the cytoplasm
        texture += _spots(
            rng, yy, xx, cell, 1, (0.3 * cell.radius, 0.45 * cell.radius), (0.2, 0.5), 0.3
        )
        texture += _spots(rng, yy, xx, cell, int(rng.integers(0, 8)), (0.6, 1.2), (0.2, 0.6), 0.85)
        thickness[cell.sl][own] = height * dome * texture
    sharp = ndi.gaussian_filter(thickness, psf) if psf > 0 else thickness
    # phase contrast and defocused brightfield: a dark rim inside the edge and a
    # bright halo outside (or the reverse), plus absorption darkening the cells
    halo = ndi.gaussian_filter(thickness, psf + rng.uniform(1.0, 3.0)) - sharp
    sign = 1.0 if rng.random() < 0.75 else -1.0
    image = 1.0 + sign * rng.uniform(1.0, 2.0) * halo - rng.uniform(0.1, 0.4) * sharp
    # textured background: dust, scratches of the dish, uneven coverslip
    image += rng.uniform(0.005, 0.025) * _noise(rng, shape, rng.uniform(0.7, 1.5))
    image += rng.uniform(0.0, 0.06) * _smooth_field(rng, shape, terms=5)
    n_specks = int(rng.poisson(shape[0] * shape[1] / 20000))
    if n_specks:
        specks = np.zeros(shape, np.float32)
        specks[rng.integers(0, shape[0], n_specks), rng.integers(0, shape[1], n_specks)] = (
            rng.uniform(-3.0, 1.0, n_specks)
        )
        image += ndi.gaussian_filter(specks, 1.0)
    return np.clip(image, 0.05, None) * _illumination(rng, shape)
