"""Instance segmentation scores: average precision at IoU thresholds, mean IoU, size bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import NapariUnetError

__all__ = [
    "InstanceScores",
    "Matching",
    "error_breakdown",
    "instance_scores",
    "iou_matrix",
    "match_instances",
    "pooled_ap",
]


@dataclass(frozen=True)
class InstanceScores:
    """Scores of a predicted instance segmentation against ground truth.

    Attributes
    ----------
    ap50 : float
        Average precision at IoU 0.5 as in the Data Science Bowl 2018 and StarDist:
        ``TP / (TP + FP + FN)``, where a prediction matches a true object when their
        IoU exceeds 0.5 (such a match is unique). 1.0 when both are empty.
    mean_iou : float
        Mean over true objects of the IoU with their matched prediction (0 for a
        missed object): the cell tracking challenge's SEG measure.
    n_true, n_pred, tp : int
        Object counts and true positives at IoU 0.5.
    """

    ap50: float
    mean_iou: float
    n_true: int
    n_pred: int
    tp: int

    def to_dict(self) -> dict[str, float]:
        """Plain-JSON form."""
        return {
            "ap50": self.ap50,
            "mean_iou": self.mean_iou,
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "tp": self.tp,
        }


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if ids[0] != 0:
        return inverse + 1, len(ids)
    return inverse, len(ids) - 1


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns).

    Ids need not be consecutive; 0 is background. Rows and columns follow the
    sorted non-zero ids.
    """
    return _iou_and_areas(true, pred)[0]


def _iou_and_areas(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`iou_matrix` and the objects' areas (true, predicted), from one count."""
    t, nt = _relabel(np.asarray(true))
    p, np_ = _relabel(np.asarray(pred))
    inter = np.bincount(t.ravel() * (np_ + 1) + p.ravel(), minlength=(nt + 1) * (np_ + 1))
    inter = inter.reshape(nt + 1, np_ + 1)
    area_t = inter.sum(1, keepdims=True)
    area_p = inter.sum(0, keepdims=True)
    union = area_t + area_p - inter
    iou = inter / np.maximum(union, 1)
    return iou[1:, 1:], area_t[1:, 0], area_p[0, 1:]


def instance_scores(true: np.ndarray, pred: np.ndarray) -> InstanceScores:
    """AP@0.5 and mean IoU of ``pred`` against ``true`` (both instance label images).

    Parameters
    ----------
    true, pred : numpy.ndarray
        Integer label images of the same shape; 0 is background.

    Returns
    -------
    InstanceScores
    """
    m = match_instances(true, pred)
    if m.n_true == 0 and m.n_pred == 0:
        return InstanceScores(1.0, 1.0, 0, 0, 0)
    if m.n_true == 0 or m.n_pred == 0:
        return InstanceScores(0.0, 0.0 if m.n_true else 1.0, m.n_true, m.n_pred, 0)
    # mean over true objects of their matched IoU (0 for a missed one)
    return InstanceScores(m.ap(0.5), float(m.iou.sum()) / m.n_true, m.n_true, m.n_pred, m.tp(0.5))


@dataclass(frozen=True)
class Matching:
    """One-to-one matching of predicted to true objects, for scores at any IoU threshold.

    Attributes
    ----------
    n_true, n_pred : int
        Object counts.
    iou : numpy.ndarray
        IoU of each matched pair (the assignment that maximises the total IoU;
        above 0.5 a match is unique, so any threshold from 0.5 up reads from it).
    area_ratio : numpy.ndarray
        Predicted over true area of the pairs with IoU above 0.5: a median above
        1 means predictions are too large.
    """

    n_true: int
    n_pred: int
    iou: np.ndarray
    area_ratio: np.ndarray

    def tp(self, threshold: float = 0.5) -> int:
        """True positives: matched pairs with IoU above ``threshold`` (at least 0.5)."""
        return int((self.iou > threshold).sum())

    def ap(self, threshold: float = 0.5) -> float:
        """``TP / (TP + FP + FN)`` at ``threshold``, as in :class:`InstanceScores`."""
        return pooled_ap([self], threshold)


def match_instances(true: np.ndarray, pred: np.ndarray) -> Matching:
    """Match ``pred`` to ``true`` one to one by IoU (see :class:`Matching`).

    Parameters
    ----------
    true, pred : numpy.ndarray
        Integer label images of the same shape; 0 is background.

    Returns
    -------
    Matching
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise NapariUnetError(
            f"Cannot compare labels of shape {pred.shape} with ground truth of shape {true.shape}."
        )
    iou, area_t, area_p = _iou_and_areas(true, pred)
    nt, npred = iou.shape
    if nt == 0 or npred == 0:
        return Matching(nt, npred, np.zeros(0), np.zeros(0))
    rows, cols = linear_sum_assignment(-iou)
    matched = iou[rows, cols]
    good = matched > 0.5
    ratio = area_p[cols[good]] / np.maximum(area_t[rows[good]], 1)
    return Matching(nt, npred, matched, ratio.astype(float))


def pooled_ap(matchings: list[Matching], threshold: float = 0.5) -> float:
    """AP at ``threshold`` over several images: counts summed before the ratio."""
    tp = sum(m.tp(threshold) for m in matchings)
    nt = sum(m.n_true for m in matchings)
    npred = sum(m.n_pred for m in matchings)
    if nt == 0 and npred == 0:
        return 1.0
    return tp / (nt + npred - tp)


def error_breakdown(true: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """False objects split into pieces of a labelled nucleus and the rest; fragmented nuclei.

    Parameters
    ----------
    true, pred : numpy.ndarray
        Integer label images of one shape; 0 is background.

    Returns
    -------
    dict
        ``false_pieces``, ``false_nothing``: predictions unmatched at IoU 0.5 that lie
        at least half inside one labelled nucleus, and the others; ``fragmented``:
        labelled nuclei holding two or more predictions that each lie at least half
        inside them.
    """
    t = np.asarray(true).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    tid, t_inv = np.unique(t, return_inverse=True)
    pid, p_inv = np.unique(p, return_inverse=True)
    inter = np.bincount(t_inv * len(pid) + p_inv, minlength=len(tid) * len(pid))
    inter = inter.reshape(len(tid), len(pid))
    area_p = inter.sum(0)[pid != 0]
    area_t = inter.sum(1)[tid != 0]
    inside = inter[tid != 0][:, pid != 0]  # true nuclei x predictions, background left out
    if inside.size == 0:
        return {"false_pieces": 0, "false_nothing": int(area_p.size), "fragmented": 0}
    best = inside.argmax(0)  # each prediction's main nucleus
    overlap = inside.max(0)
    piece = overlap >= 0.5 * area_p
    # IoU above 0.5 with its main nucleus is the (unique) match at 0.5
    matched = overlap > 0.5 * (area_t[best] + area_p - overlap)
    per_nucleus = np.bincount(best[piece], minlength=len(area_t))
    return {
        "false_pieces": int((~matched & piece).sum()),
        "false_nothing": int((~matched & ~piece).sum()),
        "fragmented": int((per_nucleus >= 2).sum()),
    }
