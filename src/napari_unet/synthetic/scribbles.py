"""Scribbles: cells painted only in part, as a quick brush pass over a nucleus leaves them.

For tests and benchmarks of the training rules (``napari_unet.training.partial``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["scribble_cells"]


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
    for i in ids:
        cell = labels == i
        if not cell.any():
            continue
        depth = ndi.distance_transform_edt(cell)
        keep = cell & (depth >= np.quantile(depth[cell], 1.0 - rng.uniform(*share)))
        out[keep] = i
    return out
