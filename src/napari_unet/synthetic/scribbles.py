"""Scribbles: cells painted only in part, as a quick brush pass over a nucleus leaves them.

For tests and benchmarks of the training rules (``napari_unet.training.partial``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["box_cells", "dab_cells", "scribble_cells"]


def scribble_cells(
    labels: np.ndarray, ids: Iterable[int], seed: int = 0, share: tuple[float, float] = (0.2, 0.5)
) -> np.ndarray:
    """An annotation where each cell of ``ids`` is painted only on its innermost pixels.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` true instance labels.
    ids : iterable of int
        The cells to paint (each keeps its id).
    seed : int
        Seed of the share drawn per cell.
    share : (float, float)
        The painted share of each cell's area is drawn uniformly from this range;
        the pixels deepest inside the cell (furthest from its edge) are painted.

    Returns
    -------
    numpy.ndarray
        Labels of the same shape and dtype, 0 where unpainted.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for i, cell, depth in _cells(labels, ids):
        keep = cell & (depth >= np.quantile(depth[cell], 1.0 - rng.uniform(*share)))
        out[keep] = i
    return out


def _cells(labels: np.ndarray, ids: Iterable[int]):
    """(id, mask, distance to its edge) of each cell of ``ids`` found in ``labels``."""
    for i in ids:
        cell = labels == i
        if cell.any():
            yield i, cell, ndi.distance_transform_edt(cell)


def dab_cells(
    labels: np.ndarray,
    ids: Iterable[int],
    seed: int = 0,
    radius: float = 2.5,
    length: tuple[float, float] = (0.0, 4.0),
) -> np.ndarray:
    """An annotation where each cell of ``ids`` has one tiny brush stroke somewhere inside it.

    A quick click or drag of a small brush (napari's brush size 5: ``radius`` 2.5)
    anywhere in the cell, its middle at least ``radius`` from the cell's edge, as
    long as ``length`` (drawn uniformly, in a random direction). The stroke keeps
    to the cell (a user aims inside it).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` true instance labels.
    ids : iterable of int
        The cells to dab (each keeps its id).
    seed : int
        Seed of the positions, directions and lengths.
    radius : float
        The brush's radius in pixels.
    length : (float, float)
        The stroke's length in pixels is drawn uniformly from this range.

    Returns
    -------
    numpy.ndarray
        Labels of the same shape and dtype, 0 where unpainted.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for i, cell, depth in _cells(labels, ids):
        inner = np.argwhere(depth >= min(radius, depth.max()))
        y, x = inner[rng.integers(len(inner))]
        angle, span = rng.uniform(0.0, np.pi), rng.uniform(*length)
        stroke = np.zeros(labels.shape, bool)
        for t in np.linspace(0.0, span, 5):
            cy, cx = int(round(y + t * np.sin(angle))), int(round(x + t * np.cos(angle)))
            if 0 <= cy < labels.shape[0] and 0 <= cx < labels.shape[1]:
                stroke[cy, cx] = True
        out[(ndi.distance_transform_edt(~stroke) <= radius) & cell] = i
    return out


def box_cells(labels: np.ndarray, ids: Iterable[int], margin: int = 2) -> np.ndarray:
    """An annotation where each cell of ``ids`` is painted as a box ``margin`` px past it.

    A generous brush, or a box drawn round a nucleus: the paint runs past the cell,
    over background and parts of touching neighbours. A later cell's box does not
    overwrite an earlier one's paint.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` true instance labels.
    ids : iterable of int
        The cells to paint, in order.
    margin : int
        Pixels the box reaches past the cell on every side.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32 annotation; each box carries its cell's id.
    """
    out = np.zeros(labels.shape, np.int32)
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        box = out[max(0, ys.min() - margin) : ys.max() + 1 + margin,
                  max(0, xs.min() - margin) : xs.max() + 1 + margin]  # fmt: skip
        box[box == 0] = i
    return out
