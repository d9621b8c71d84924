"""Elastic displacement fields: smooth per-pixel fields from displacements on a coarse grid."""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage as ndi

from ..errors import NapariUnetError

__all__ = ["draw_coarse", "upsample_displacement", "upsample_matrix"]


@functools.lru_cache(maxsize=64)
def upsample_matrix(n: int, g: int) -> np.ndarray:
    """``(n, g)`` matrix taking ``g`` evenly spread nodes (first and last on the ends) to ``n``.

    Column ``i`` is scipy's interpolating cubic spline (mirror boundary) of the ``i``-th unit
    vector; spline interpolation is linear in the data, so ``U @ v`` interpolates any ``v``.
    """
    pos = np.linspace(0.0, g - 1.0, n) if n > 1 else np.zeros(1)
    eye = np.eye(g)
    mat = np.stack(
        [ndi.map_coordinates(eye[i], [pos], order=3, mode="mirror") for i in range(g)], axis=1
    )
    mat.setflags(write=False)
    return mat


def upsample_displacement(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel displacement field from displacements on a coarse grid (bicubic).

    Parameters
    ----------
    coarse : ndarray, shape (2, gy, gx)
        Displacements ``(dy, dx)`` in pixels at ``gy x gx`` nodes spread evenly over the image,
        with the first and last nodes on the border pixels.
    shape : tuple of int
        ``(H, W)`` of the image.

    Returns
    -------
    ndarray, shape (2, H, W), float64
        The interpolating cubic spline through the nodes (equal to
        ``scipy.ndimage.map_coordinates(..., order=3, mode="mirror")`` on the coarse grid),
        computed as two small matrix products ``U_y @ coarse[k] @ U_x.T``.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2 or min(coarse.shape[1:]) < 2:
        raise NapariUnetError(
            f"The coarse displacement must have shape (2, gy, gx) with at least 2 nodes per "
            f"axis, got {coarse.shape}."
        )
    h, w = (int(s) for s in shape)
    uy = upsample_matrix(h, coarse.shape[1])
    ux = upsample_matrix(w, coarse.shape[2])
    return np.stack([uy @ c @ ux.T for c in coarse])


def draw_coarse(rng: np.random.Generator, grid_points: int, sigma: float) -> np.ndarray:
    """Node displacements ``(2, g, g)``: standard normal times ``sigma`` pixels."""
    return rng.normal(0.0, 1.0, size=(2, grid_points, grid_points)) * sigma
