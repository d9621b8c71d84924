"""Synthetic 3D stacks of fluorescent nuclei with exact 3D labels.

Nuclei are ellipsoids (slightly deformed, tilted, some flattened) placed in a
volume, some of them pressed against a neighbour. The specimen is rendered on a
grid with square-ish voxels, blurred by an anisotropic point spread function (the
axial blur 2 to 3x the lateral one, as in a widefield or confocal microscope),
sampled at the stack's Z step, and photographed by the same camera model as the
2D images (:mod:`.camera`). Labels are the nuclei's exact masks at the centres of
the stack's voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError
from ..seeding import random_generator
from ..volume.voxels import check_voxel_size
from .camera import DTYPES, photograph

__all__ = ["make_nuclei_3d"]


def make_nuclei_3d(
    shape: Sequence[int],
    *,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    seed: Any = 0,
    n_nuclei: int | None = None,
    diameter: tuple[float, float] = (12.0, 22.0),
    flatten: tuple[float, float] = (0.7, 1.0),
    touching: float = 0.4,
    blur: tuple[float, float] = (0.8, 1.4),
    axial_blur: float = 2.5,
    photons: tuple[float, float] = (150.0, 1500.0),
    dtype: Any = np.uint16,
    defocus: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescent 3D nuclei stack and its exact 3D labels.

    Parameters
    ----------
    shape : sequence of int
        ``(Z, H, W)`` of the stack, in voxels.
    voxel_size : sequence of float
        ``(z, y, x)`` voxel size; only ratios matter. ``(4, 1, 1)`` samples Z
        every 4 pixel sizes, as a fast confocal or light-sheet stack does.
    seed : int, sequence of int, numpy Generator or None
        Same seed, same arrays.
    n_nuclei : int or None
        How many nuclei; ``None`` fills about a fifth of the volume.
    diameter : tuple of float
        ``(min, max)`` lateral diameter in pixels.
    flatten : tuple of float
        Range of the axial over lateral diameter (nuclei often lie flat).
    touching : float
        Probability that a nucleus is pressed against one already placed.
    blur : tuple of float
        Range of the lateral PSF sigma in pixels.
    axial_blur : float
        Axial PSF sigma over the lateral one.
    photons : tuple of float
        Range of the mean photon count of a typical nucleus voxel.
    dtype : numpy.uint16 or numpy.uint8
        The camera's integer type.
    defocus : float
        Share of each nucleus's light that reaches the other planes out of focus,
        as a widefield microscope's PSF spreads it (0: none, the default). A
        plane at a distance ``dz`` from the light gets the same total flux, spread
        over a disc growing with ``dz`` (the cone of the objective's aperture), so
        every plane holds the blurred light of the nuclei above and below it.

    Returns
    -------
    image : numpy.ndarray
        ``(Z, H, W)`` camera image of ``dtype``.
    labels : numpy.ndarray
        ``(Z, H, W)`` int32 labels, consecutive ids, 0 for background.
    """
    try:
        zyx = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        zyx = ()
    if len(zyx) != 3 or min(zyx) < 1 or min(zyx[1:]) < 16:
        raise NapariUnetError(
            f"The stack shape must be (Z, H, W) with H and W at least 16, got {shape!r}."
        )
    vz, vy, vx = check_voxel_size(voxel_size)
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise NapariUnetError(f"The image type must be uint16 or uint8, got {dtype!r}.")
    rng = random_generator(seed)
    px = min(vy, vx)
    dz = vz / px  # Z step in pixels
    k = max(1, round(dz))  # fine planes per stack plane, about square voxels
    fine_dz = dz / k
    zf = zyx[0] * k
    scale = (fine_dz, vy / px, vx / px)  # fine voxel size in pixels
    extent = (zf * fine_dz, zyx[1] * scale[1], zyx[2] * scale[2])
    labels = np.zeros((zf, zyx[1], zyx[2]), np.int32)
    nuclei = _place(rng, labels, scale, extent, n_nuclei, diameter, flatten, touching)
    if not 0.0 <= float(defocus) < 1.0:
        raise NapariUnetError(f"defocus must be from 0 to below 1, got {defocus!r}.")
    expected = _render(rng, labels, nuclei, scale, blur, axial_blur, float(defocus))
    pick = slice(k // 2, None, k)  # a stack plane samples the blurred specimen at its centre
    expected = np.ascontiguousarray(expected[pick])
    labels = _consecutive(np.ascontiguousarray(labels[pick]))
    lo, hi = photons
    level = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return photograph(rng, expected, level, name, (60.0, 170.0)), labels


def _place(rng, labels, scale, extent, n_nuclei, diameter, flatten, touching):
    """Paint nuclei into ``labels`` (fine grid); returns their (id, brightness) list."""
    lo, hi = (float(d) for d in diameter)
    if n_nuclei is None:
        mean_vol = math.pi / 6 * ((lo + hi) / 2) ** 3 * np.mean(flatten)
        n_nuclei = max(1, int(0.2 * np.prod(extent) / mean_vol))
    centres: list[np.ndarray] = []
    radii: list[np.ndarray] = []
    out = []
    for _ in range(int(n_nuclei)):
        d = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        r = np.array([d / 2 * rng.uniform(*flatten), d / 2 * rng.uniform(0.8, 1.0), d / 2])
        for _attempt in range(30):
            if centres and rng.random() < touching:
                j = int(rng.integers(len(centres)))
                v = rng.standard_normal(3)
                v[0] *= 0.5  # neighbours mostly side by side
                v /= np.linalg.norm(v) + 1e-9
                c = centres[j] + v * (radii[j].mean() + r.mean()) * 0.85
            else:
                c = rng.uniform(0, 1, 3) * np.array(extent)
            ident = len(out) + 1
            if _paint(rng, labels, ident, c, r, scale):
                centres.append(c)
                radii.append(r)
                out.append((ident, rng.lognormal(0.0, 0.3)))
                break
    return out


def _paint(rng, labels, ident, centre, radii, scale) -> bool:
    """Paint one deformed, rotated ellipsoid where nothing is; False if it would hide too much."""
    reach = radii.max() * 1.2
    lo = [max(0, int((centre[a] - reach) / scale[a])) for a in range(3)]
    hi = [min(labels.shape[a], int((centre[a] + reach) / scale[a]) + 2) for a in range(3)]
    if any(h - b < 1 for b, h in zip(lo, hi)):
        return False
    z, y, x = np.meshgrid(
        *[(np.arange(b, h) + 0.5) * s - c for b, h, s, c in zip(lo, hi, scale, centre)],
        indexing="ij",
        sparse=True,
    )
    t, tilt = rng.uniform(0, np.pi), rng.normal(0, 0.2)
    u = x * math.cos(t) + y * math.sin(t)
    w = -x * math.sin(t) + y * math.cos(t)
    u, zz = u * math.cos(tilt) + z * math.sin(tilt), -u * math.sin(tilt) + z * math.cos(tilt)
    q = (zz / radii[0]) ** 2 + (w / radii[1]) ** 2 + (u / radii[2]) ** 2
    norm = np.sqrt(q) + 1e-6
    a = rng.normal(0, 0.08, 3)  # a gentle, smooth dent or bulge
    deform = 1 + a[0] * (u * w) / (norm**2 * radii[1] * radii[2]) + a[1] * zz / (norm * radii[0])
    inside = q < deform**2
    if not inside.any():
        return False
    box = tuple(slice(b, h) for b, h in zip(lo, hi))
    region = labels[box]
    taken = (region > 0) & inside
    if taken.sum() > 0.12 * inside.sum():
        return False
    region[inside & (region == 0)] = ident
    return True


def _render(rng, labels, nuclei, scale, blur, axial_blur, defocus=0.0) -> np.ndarray:
    """Expected intensity (a typical nucleus about 1) of the fine grid, blurred."""
    bright = np.zeros(len(nuclei) + 1, np.float32)
    for ident, b in nuclei:
        bright[ident] = b
    texture = ndi.gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), 1.2)
    texture /= max(float(texture.std()), 1e-6)
    signal = bright[labels] * (1.0 + 0.2 * texture)
    np.clip(signal, 0, None, out=signal)
    sigma = float(rng.uniform(*blur))
    psf = [axial_blur * sigma / scale[0], sigma / scale[1], sigma / scale[2]]
    out = ndi.gaussian_filter(signal, psf)
    if defocus > 0:  # no random draw: the arrays without defocus stay as they were
        out = (1.0 - defocus) * out + defocus * _widefield_defocus(signal, scale, sigma)
    haze = ndi.gaussian_filter(signal, [4 * p for p in psf], mode="constant")
    depth = np.linspace(1.0, rng.uniform(0.6, 1.0), labels.shape[0], dtype=np.float32)
    out += 0.15 * haze + np.float32(rng.uniform(0.03, 0.1))
    out *= depth[:, None, None]
    return out


# The defocus cone's radius per unit of defocus (about the objective's NA 0.5-0.7 in
# water: a disc of radius ~0.6 dz), and how far from a plane its light is followed.
_CONE_SLOPE, _CONE_REACH = 0.6, 40.0


def _widefield_defocus(signal: np.ndarray, scale, sigma: float) -> np.ndarray:
    """Every fine plane's light in every other plane: same flux, a wider disc further away.

    The out-of-focus part of a widefield PSF: at a defocus ``dz`` the light of a
    point spreads over a disc of radius ``_CONE_SLOPE * dz`` (a Gaussian of that
    width here) carrying the same total flux, so a plane sees the sum of the
    blurred light of all planes, weighted equally, out to ``_CONE_REACH`` px.
    """
    n = signal.shape[0]
    reach = min(n - 1, int(_CONE_REACH / scale[0]))
    out = np.zeros_like(signal)
    weights = 0.0
    for shift in range(-reach, reach + 1):
        dz = abs(shift) * scale[0]
        width = math.hypot(sigma, _CONE_SLOPE * dz)
        src = np.roll(signal, shift, axis=0)
        lo, hi = max(0, shift), min(n, n + shift)  # planes a shift beyond the stack get none
        blurred = ndi.gaussian_filter(src[lo:hi], [0, width / scale[1], width / scale[2]])
        out[lo:hi] += blurred
        weights += 1.0
    return out / np.float32(weights)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]
