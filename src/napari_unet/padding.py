"""Mirroring an image at its borders, the one padding rule of the U-Net paper.

Both forms follow :func:`numpy.pad` ``"reflect"`` (repeated for pads wider than
the image; ``"edge"`` on a 1-pixel axis, which can only repeat itself):
:func:`mirror_pad` pads an array in memory, :func:`mirror_indices` gives the
source indices of a mirrored range, for windows read from an image that is not
in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mirror_indices", "mirror_pad"]


def mirror_pad(a: np.ndarray, widths: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mirror ``a`` at its borders by ``widths`` (one ``(before, after)`` pair per axis)."""
    # numpy's reflect needs at least 2 pixels; a 1-pixel axis can only repeat itself.
    modes = {a.shape[i] > 1 for i, w in enumerate(widths) if any(w)}
    if modes == {True} or not modes:
        return np.pad(a, widths, mode="reflect")
    out = a
    for axis, w in enumerate(widths):
        if any(w):
            wi = [(0, 0)] * a.ndim
            wi[axis] = w
            out = np.pad(out, wi, mode="reflect" if a.shape[axis] > 1 else "edge")
    return out


def mirror_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Source indices of positions ``start..stop-1`` of an axis of ``n`` mirrored pixels.

    ``a[mirror_indices(-before, n + after, n)]`` equals ``mirror_pad`` of ``a``
    along that axis.
    """
    i = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    j = np.mod(i, period)
    return np.where(j >= n, period - j, j)
