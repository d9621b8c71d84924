"""Voxel sizes and the stack's axes: checks, and resampling planes to isotropic pixels.

A 2D network knows objects at the in-plane pixel size it was trained on. A stack
whose Z step is 4x the pixel size shows a nucleus squashed 4x along Z in an XZ
plane, so the views across Z are resampled to square pixels before prediction and
their probabilities brought back to the stack's own grid afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.transform import resize

from ..errors import NapariUnetError

__all__ = ["check_voxel_size", "isotropic_factors", "resample_planes"]


def check_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    """``voxel_size`` as three positive finite floats ``(z, y, x)``; ``None`` gives ``(1, 1, 1)``.

    Raises
    ------
    NapariUnetError
        For a wrong count, zero, a negative number, NaN or infinity, in one sentence.
    """
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    if isinstance(voxel_size, str):
        voxel_size = voxel_size.replace(";", ",").split(",")
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        raise NapariUnetError(
            f"The voxel size must be three numbers (Z, Y, X), got {voxel_size!r}."
        ) from None
    if len(values) != 3:
        raise NapariUnetError(f"The voxel size must be three numbers (Z, Y, X), got {len(values)}.")
    if not all(math.isfinite(v) and v > 0 for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        raise NapariUnetError(f"Voxel sizes must be positive numbers, got ({shown}).")
    return values


def isotropic_factors(voxel_size: Sequence[float], rescale: float = 1.0) -> tuple[float, ...]:
    """Resize factor per axis ``(z, y, x)`` that gives square pixels of the in-plane size.

    The target spacing is the finer in-plane pixel size divided by ``rescale``
    (the network's scale), so ``(4, 1, 1)`` gives ``(4, 1, 1)``: Z is stretched 4x.
    """
    target = min(voxel_size[1], voxel_size[2]) / rescale
    return tuple(float(v) / target for v in voxel_size)


def scaled_shape(shape: Sequence[int], factors: Sequence[float]) -> tuple[int, ...]:
    """``shape`` times ``factors``, rounded, at least 1 per axis."""
    return tuple(max(1, round(n * f)) for n, f in zip(shape, factors))


def resample_planes(planes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize the last two axes of ``planes`` ``(..., A, B)`` to ``shape`` (linear, float32).

    Shrinking smooths first (anti-aliasing), so the way back from the isotropic
    grid averages the planes a stack voxel spans instead of picking one.
    """
    a = np.asarray(planes)
    out_shape = (*a.shape[:-2], *map(int, shape))
    if out_shape == a.shape:
        return a.astype(np.float32, copy=False)
    src = a.astype(np.float32, copy=False)
    ratios = [o / n for n, o in zip(out_shape[-2:], a.shape[-2:])]
    sigma = [0.0] * (a.ndim - 2) + [max(0.0, (r - 1) / 2) for r in ratios]
    shrinking = any(r > 1 for r in ratios)
    out = resize(
        src,
        out_shape,
        order=1,
        mode="edge",
        anti_aliasing=shrinking,
        anti_aliasing_sigma=sigma if shrinking else None,
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)
