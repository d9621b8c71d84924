"""Checking what the augmentation functions are given: arrays, interpolation order, amounts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import NapariUnetError

__all__ = ["check_grid", "check_image", "check_inputs", "check_order", "check_range"]


def check_image(image: Any) -> np.ndarray:
    """An image ``(H, W)`` or ``(C, H, W)`` of real numbers, as an array."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise NapariUnetError(
            f"The image must be a non-empty (H, W) or (C, H, W) array, got shape {arr.shape}."
        )
    if arr.dtype.kind not in "biuf":
        raise NapariUnetError(f"The image must hold real numbers, got dtype {arr.dtype}.")
    return arr


def _check_companion(arr: Any, shape: tuple[int, int], name: str, kinds: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise NapariUnetError(
            f"The {name} must have the image's spatial shape {shape}, got {arr.shape}."
        )
    if arr.dtype.kind not in kinds:
        what = "an integer or bool" if name == "labels" else "a real"
        raise NapariUnetError(f"The {name} must be {what} array, got dtype {arr.dtype}.")
    return arr


def check_inputs(image, labels, weights):
    """Image, labels and weights as arrays, each checked (labels and weights may be None)."""
    img = check_image(image)
    shape = img.shape[-2:]
    lab = None if labels is None else _check_companion(labels, shape, "labels", "biu")
    wts = None if weights is None else _check_companion(weights, shape, "weights", "biuf")
    return img, lab, wts


def check_order(order: int) -> None:
    """Refuse an interpolation order other than 1 or 3."""
    if order not in (1, 3):
        raise NapariUnetError(f"The interpolation order must be 1 or 3, got {order!r}.")


def check_range(name: str, value: Any) -> None:
    """Refuse an amount that is not a finite number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise NapariUnetError(f"{name} must be a number, got {value!r}.")
    if not (math.isfinite(value) and value >= 0):
        raise NapariUnetError(f"{name} must be a finite number >= 0, got {value!r}.")


def check_grid(grid_points: int, sigma: float) -> None:
    """Refuse an elastic grid of fewer than 2 nodes or a bad ``sigma``."""
    if (
        isinstance(grid_points, bool)
        or not isinstance(grid_points, (int, np.integer))
        or (grid_points < 2)
    ):
        raise NapariUnetError(f"grid_points must be an integer of at least 2, got {grid_points!r}.")
    check_range("sigma", sigma)
