"""Correcting a prediction: merge it into an annotation, and rank the cells to check first.

The next round of annotation starts from the model's segmentation.
:func:`merge_prediction` copies the predicted cells into the annotation where the
user has not painted; :func:`rank_uncertain` orders the cells by how sure the
model is of them, least sure first, so the user corrects those before the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.segmentation import expand_labels

from .errors import NapariUnetError

__all__ = ["UncertainCell", "merge_prediction", "rank_uncertain"]

# Why a cell ranks where it does (UncertainCell.reason).
AMBIGUOUS = "probability near 0.5"
TOUCHING = "no gap to a neighbour"
FRAGMENT = "small fragment"
CLEAR = "clear"
# A cell whose every factor is at least this is "clear": nothing in particular to check.
_CLEAR = 0.8
# Weight of the share of a cell's outline shared with a neighbour (see rank_uncertain).
_CONTACT_WEIGHT = 3.0


def merge_prediction(
    annotation: np.ndarray, segmentation: np.ndarray, region: np.ndarray | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Copy the predicted cells that touch no painted pixel into the annotation.

    Whole objects are copied or left out, never parts of them: a predicted cell
    that overlaps a painted cell (even by one pixel) is the same cell seen
    twice, or a mistake the user already corrected, and clipping it around the
    paint would leave a sliver with a fresh id beside the painted cell. So the
    painted cells stay exactly as they are and every copied cell is complete.

    Parameters
    ----------
    annotation : numpy.ndarray
        The user's instance labels, ``(H, W)`` or a stack ``(Z, H, W)``; 0 is unpainted.
    segmentation : numpy.ndarray
        Predicted instance labels of the same shape.
    region : numpy.ndarray or None
        Boolean mask of the same shape: only predicted cells lying wholly inside it
        are copied (e.g. the planes or the part of the image being reviewed).

    Returns
    -------
    merged : numpy.ndarray
        A new array: the annotation plus the copied cells. Painted pixels are
        unchanged. Its dtype is the annotation's, widened when the new ids do
        not fit.
    added : dict of int to int
        For every copied cell, its segmentation id and its new annotation id. New
        ids are consecutive, starting above the annotation's largest id.

    Raises
    ------
    NapariUnetError
        If the shapes differ.
    """
    annotation = np.asarray(annotation)
    segmentation = np.asarray(segmentation)
    if annotation.shape != segmentation.shape:
        raise NapariUnetError(
            f"The segmentation has shape {segmentation.shape} but the annotation has shape "
            f"{annotation.shape}; they must match."
        )
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != annotation.shape:
            raise NapariUnetError(
                f"The region has shape {region.shape} but the annotation has shape "
                f"{annotation.shape}; they must match."
            )
    predicted = segmentation > 0
    ids = np.unique(segmentation[predicted])
    blocked = annotation[predicted] != 0
    if region is not None:
        blocked |= ~region[predicted]
    skip = np.unique(segmentation[predicted][blocked])
    keep = np.setdiff1d(ids, skip, assume_unique=True)
    top = int(annotation.max(initial=0))
    new_ids = np.arange(top + 1, top + 1 + keep.size, dtype=np.int64)
    dtype = annotation.dtype
    if keep.size and (not np.issubdtype(dtype, np.integer) or new_ids[-1] > np.iinfo(dtype).max):
        dtype = np.promote_types(np.min_scalar_type(int(new_ids[-1])), np.int32)
    merged = annotation.astype(dtype, copy=True)
    if keep.size:
        copied = np.isin(segmentation, keep)
        # keep is sorted: searchsorted maps each copied pixel's id to its new id
        merged[copied] = new_ids[np.searchsorted(keep, segmentation[copied])]
    return merged, {int(s): int(n) for s, n in zip(keep, new_ids)}


@dataclass(frozen=True)
class UncertainCell:
    """A predicted cell and how sure the model is of it.

    Attributes
    ----------
    label : int
        Its id in the labels that were ranked.
    plane : int or None
        Its plane in a stack; None for a 2D image.
    centroid : tuple of float
        ``(y, x)`` of its centre in pixels (within its plane).
    area : int
        Pixels (in its plane).
    certainty : float
        In [0, 1]: 1 is a cell the model is sure of, 0 one it is not sure of at all.
    reason : str
        What lowers the certainty most: "probability near 0.5", "no gap to a
        neighbour" or "small fragment"; "clear" when nothing lowers it much.
    """

    label: int
    plane: int | None
    centroid: tuple[float, float]
    area: int
    certainty: float
    reason: str


def rank_uncertain(
    probabilities: np.ndarray,
    segmentation: np.ndarray,
    *,
    ids: np.ndarray | list[int] | None = None,
    band: int = 3,
    top: int | None = None,
) -> list[UncertainCell]:
    """The cells of ``segmentation``, the ones the model is least sure of first.

    A cell's certainty is the product of three factors, each in [0, 1]:

    - *margin*: ``|2p - 1|``, ``p`` being the foreground probability, is 1 where
      the model said 0 or 1 and 0 where it said 0.5. Its mean is taken over the
      cell and, separately, over the background ring ``band`` pixels wide around
      it; the factor is the smaller of the two, so a cell whose inside is grey
      and a cell whose outline is blurred (a ring of middling probability where
      the edge should be) both score low, however sure the other part is.
    - *separation*: ``1 - 3 s`` (at least 0), ``s`` being the share of the cell's
      outline that touches another cell with no background between them. The
      network is trained to leave a gap between touching cells; where it left
      none, the split was made by the watershed alone and that stretch of the
      boundary is a guess. The cut between two touching round cells takes about
      a sixth of each outline, which gives 0.5; a third or more gives 0.
    - *size*: the cell's area over half the median area of the ranked cells,
      at most 1. Fragments much smaller than a typical cell are usually a cell
      split in pieces or debris.

    The product stays in [0, 1] and any one doubtful aspect is enough to bring a
    cell forward; the smallest factor is given as the reason ("clear" when all
    three are at least 0.8).

    Parameters
    ----------
    probabilities : numpy.ndarray
        Foreground probability, ``(H, W)`` or ``(Z, H, W)``, values in [0, 1]
        (:func:`napari_unet.postprocess.foreground_probability`).
    segmentation : numpy.ndarray
        Instance labels of the same shape. In a stack each plane is ranked on its
        own: a cell is an id in one plane.
    ids : array-like of int or None
        Rank only these ids (e.g. the cells just copied from a prediction); the
        other labelled cells still count as neighbours. None: all.
    band : int
        Width in pixels of the background ring around a cell that counts towards
        its margin.
    top : int or None
        Return only the ``top`` least sure cells.

    Returns
    -------
    list of UncertainCell
        Least sure first; ties keep id (then plane) order.

    Raises
    ------
    NapariUnetError
        If the shapes differ or the input is not 2D or 3D.
    """
    prob = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(segmentation)
    if prob.shape != labels.shape:
        raise NapariUnetError(
            f"The probabilities have shape {prob.shape} but the segmentation has shape "
            f"{labels.shape}; they must match."
        )
    if labels.ndim not in (2, 3):
        raise NapariUnetError(
            f"Cells can be ranked in 2D images or stacks (Z, H, W), not in shape {labels.shape}."
        )
    if band < 0:
        raise NapariUnetError(f"The band width must be 0 or more, got {band}.")
    wanted = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
    margin = np.abs(2.0 * np.clip(prob, 0.0, 1.0) - 1.0)
    planes = [(None, labels, margin)] if labels.ndim == 2 else [
        (z, labels[z], margin[z]) for z in range(labels.shape[0])
    ]  # fmt: skip
    rows = []
    for z, plane_labels, plane_margin in planes:
        rows.extend(_plane_factors(plane_labels, plane_margin, wanted, band, z))
    if not rows:
        return []
    median = float(np.median([r[3] for r in rows]))
    cells = []
    for label, plane, centroid, area, sure, apart in rows:
        size = min(1.0, area / max(0.5 * median, 1.0))
        factors = {AMBIGUOUS: sure, TOUCHING: apart, FRAGMENT: size}
        reason = min(factors, key=factors.get)
        if factors[reason] >= _CLEAR:
            reason = CLEAR
        certainty = float(np.clip(sure * apart * size, 0.0, 1.0))
        cells.append(UncertainCell(label, plane, centroid, area, certainty, reason))
    cells.sort(key=lambda c: c.certainty)  # stable: ties keep id order
    return cells if top is None else cells[:top]


def _plane_factors(labels, margin, wanted, band, plane):
    """(id, plane, centroid, area, margin factor, separation factor) of each cell in a plane."""
    labels = labels.astype(np.int64, copy=False)
    present = np.unique(labels)
    present = present[present > 0]
    if wanted is not None:
        present = present[np.isin(present, wanted)]
    if present.size == 0:
        return []
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n)
    inside = np.bincount(flat, weights=margin.ravel(), minlength=n)
    # the background ring: each background pixel within `band` goes to its nearest cell
    nearest = expand_labels(labels, distance=band) if band else labels
    ring = (labels == 0) & (nearest > 0)
    ring_n = np.bincount(nearest[ring], minlength=n)
    ring_sum = np.bincount(nearest[ring], weights=margin[ring], minlength=n)
    sure = inside / np.maximum(area, 1)
    # a cell with no background around it (hemmed in by neighbours) has no ring
    ring_mean = np.where(ring_n > 0, ring_sum / np.maximum(ring_n, 1), 1.0)
    sure = np.minimum(sure, ring_mean)
    outline, contact = _outline_contact(labels, n)
    apart = np.clip(1.0 - _CONTACT_WEIGHT * contact / np.maximum(outline, 1), 0.0, 1.0)
    ys, xs = np.indices(labels.shape, dtype=np.float64)
    cy = np.bincount(flat, weights=ys.ravel(), minlength=n) / np.maximum(area, 1)
    cx = np.bincount(flat, weights=xs.ravel(), minlength=n) / np.maximum(area, 1)
    return [
        (int(i), plane, (float(cy[i]), float(cx[i])), int(area[i]), float(sure[i]), float(apart[i]))
        for i in present
    ]


def _outline_contact(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per id: outline pixels (a 4-neighbour is not the cell) and those touching another cell."""
    edge = np.zeros(labels.shape, bool)
    touch = np.zeros(labels.shape, bool)
    padded = np.pad(labels, 1, mode="edge")  # the image border is neither gap nor neighbour
    h, w = labels.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        other = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        differs = other != labels
        edge |= differs
        touch |= differs & (other > 0)
    cells = labels > 0
    outline = np.bincount(labels[edge & cells], minlength=n)
    contact = np.bincount(labels[touch & cells], minlength=n)
    return outline, contact
