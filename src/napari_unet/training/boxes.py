"""Boxes ``(y0, y1, x0, x1)`` in a plane: grown, around a mask, joined."""

from __future__ import annotations

import numpy as np

__all__ = ["Box", "bbox", "grow", "union"]

Box = tuple[int, int, int, int]


def grow(box: Box, by: int, shape: tuple[int, int]) -> Box:
    """``box`` grown by ``by`` pixels on every side, within a plane of ``shape``."""
    y0, y1, x0, x1 = box
    return max(0, y0 - by), min(shape[0], y1 + by), max(0, x0 - by), min(shape[1], x1 + by)


def bbox(mask: np.ndarray, origin: tuple[int, int]) -> Box:
    """The box around the True pixels of ``mask`` (not empty), offset by ``origin``."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    return (
        origin[0] + int(ys[0]), origin[0] + int(ys[-1]) + 1,
        origin[1] + int(xs[0]), origin[1] + int(xs[-1]) + 1,
    )  # fmt: skip


def union(a: Box, b: Box) -> Box:
    """The smallest box holding ``a`` and ``b``."""
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
