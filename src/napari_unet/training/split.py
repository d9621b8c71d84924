"""Which annotated cells are held out for validation: a fixed rule, stable as annotations grow.

A cell is held out when a hash of its entry, plane and id falls below the
validation fraction. The rule looks at nothing else, so a cell stays in
validation from one round to the next however its outline is touched up, and
cells painted later split the same way: scores of successive rounds are
measured on a growing, never reshuffled validation set. (The id, not the
position, is hashed: touching up an outline moves a cell's centre, never its id.)

The held-out area of a plane is every annotated pixel whose nearest annotated
cell is a validation cell (a nearest-cell partition of the region). Background
near a validation cell therefore counts for validation too, so a false
positive there lowers the score instead of going unseen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "CellSplit",
    "cell_hashes",
    "split_cells",
    "validation_area",
]


@dataclass
class CellSplit:
    """The held-out cells of every plane (see :func:`split_cells`)."""

    validation: list[np.ndarray]  # per plane: ids of validation cells
    n_cells: int
    n_validation: int


def cell_hashes(labels: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The cells of one plane and their hash values in [0, 1).

    Parameters
    ----------
    labels : ndarray
        ``(H, W)`` instance labels, 0 background (outside the annotated region too).
    key : str
        Names the entry and plane, e.g. ``"cells.tif:3"``.

    Returns
    -------
    ids, values : ndarray, ndarray
        Cell ids (sorted) and the hash of each (key and id).
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    return ids, np.array([_unit_hash(f"{key}|{int(i)}") for i in ids])


def split_cells(
    planes: list[np.ndarray],
    keys: list[str],
    fraction: float,
    exclude: list[np.ndarray | None] | None = None,
) -> CellSplit:
    """Choose the validation cells of a training set by the fixed rule.

    The one place that decides which cells are validation cells: training holds
    them out, and anything scored "on the held-out cells" (the guard between
    rounds, a calibration after training) should ask this function.

    Parameters
    ----------
    planes : list of ndarray
        ``(H, W)`` labels of every annotated plane of the set (0 outside the region).
    keys : list of str
        One name per plane (entry and plane index), part of each cell's hash.
    fraction : float
        Share of cells held out (about; 0 holds out none).
    exclude : list of (ndarray or None) or None
        Per plane, ids that are never held out: cells copied from a prediction
        and not edited since (:func:`napari_unet.training.provenance.unedited_copies`)
        are the model's opinion, not human truth. They are still trained on.

    Returns
    -------
    CellSplit
        No cell is held out when every cell would be (then nothing would be left
        to train on). A small set may have no held-out cell at all: about one cell
        in ``1 / fraction`` is held out, none is forced.
    """
    per_plane = [cell_hashes(p, k) for p, k in zip(planes, keys)]
    n_cells = sum(len(ids) for ids, _ in per_plane)
    exclude = exclude or [None] * len(planes)
    chosen = [
        ids[(values < fraction) & ~np.isin(ids, np.asarray(ex if ex is not None else []))]
        for (ids, values), ex in zip(per_plane, exclude)
    ]
    n_val = sum(len(c) for c in chosen)
    if n_val == n_cells:  # nothing would be left to train on: no validation this time
        return CellSplit([np.zeros(0, ids.dtype) for ids, _ in per_plane], n_cells, 0)
    return CellSplit(chosen, n_cells, n_val)


def validation_area(labels: np.ndarray, region: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """Annotated pixels whose nearest annotated cell is held out (a boolean mask)."""
    if not len(held_out):
        return np.zeros(labels.shape, bool)
    cells = labels > 0
    if cells.all():
        nearest = labels
    else:
        _, (iy, ix) = ndi.distance_transform_edt(~cells, return_indices=True)
        nearest = labels[iy, ix]
    return region & np.isin(nearest, held_out)


def _unit_hash(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
