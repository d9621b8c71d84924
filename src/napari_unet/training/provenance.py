"""Which cells of an annotation a person made, and which were copied from a prediction.

"Correct the mistakes" and "Copy segmentation to annotation" put the model's own
cells into the annotation. Until the user edits one, it is the model's opinion,
not human truth: it may be trained on, but scoring a model on it would measure
the model against itself. The copy is recorded as a signature per cell (its
area and a checksum of its pixel positions); a cell whose pixels no longer
match its signature has been edited, and counts as human from then on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["COPIED_KEY", "cell_signatures", "unedited_copies"]

# The key of a Labels layer's metadata (and of a project entry) that holds the record.
COPIED_KEY = "napari_unet_copied"


def cell_signatures(labels: np.ndarray, ids: Iterable[int]) -> dict[str, str]:
    """Signatures of the cells ``ids`` of ``labels`` as they are now.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels, 2D or a stack.
    ids : iterable of int
        The cells to sign (e.g. those just copied from a prediction).

    Returns
    -------
    dict of str to str
        ``{str(id): "AREA:CHECKSUM"}`` (JSON-ready); an id absent from ``labels``
        is left out.
    """
    wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
    wanted = wanted[wanted > 0]
    if not wanted.size:
        return {}
    flat = np.ravel(labels)
    where = np.flatnonzero(np.isin(flat, wanted))
    values = flat[where]
    order = np.argsort(values, kind="stable")  # each cell's positions stay in raster order
    where, values = where[order].astype(np.int64), values[order]
    cuts = np.flatnonzero(np.diff(values)) + 1
    out = {}
    for pixels, cell in zip(np.split(where, cuts), values[np.r_[0, cuts]] if len(values) else []):
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=8).hexdigest()
        out[str(int(cell))] = f"{len(pixels)}:{digest}"
    return out


def unedited_copies(labels: np.ndarray, record: Mapping[str, str] | None) -> np.ndarray:
    """The ids of ``labels`` that are still exactly as they were copied from a prediction.

    Parameters
    ----------
    labels : numpy.ndarray
        The annotation now.
    record : mapping or None
        :func:`cell_signatures` taken when the cells were copied.

    Returns
    -------
    numpy.ndarray
        Sorted int64 ids; a cell painted over, erased or touched up is not among them.
    """
    if not record:
        return np.zeros(0, np.int64)
    now = cell_signatures(labels, (int(k) for k in record))
    same = [int(k) for k, sig in record.items() if now.get(str(k)) == sig]
    return np.array(sorted(same), dtype=np.int64)
