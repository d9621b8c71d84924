"""Linked mode: objects of neighbouring planes joined by overlap into 3D objects.

Every plane is labelled on its own first. Then, plane after plane, each object is
matched one-to-one with the object of the next plane it overlaps best (the
assignment that maximises the summed IoU, pairs above a threshold only), so a
nucleus becomes one chain of plane objects with one id. Objects smaller than a 3D
minimum size (the unmatched caps and specks of single planes) are dropped.
"""

from __future__ import annotations

import numpy as np

from ..errors import NapariUnetError

__all__ = ["LINK_IOU", "link_planes", "drop_small_3d"]

#: Default IoU above which objects of neighbouring planes are the same object.
#: Measured in ``benchmarks/bench_volume.py`` (docs/benchmarks.md, "3D objects").
LINK_IOU = 0.4


def link_planes(labels: np.ndarray, *, iou: float = LINK_IOU, min_volume: int = 0) -> np.ndarray:
    """Join per-plane labels into 3D objects.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Z, H, W)`` integer labels, ids unique over the stack (as
        :func:`napari_unet.labels_from_probabilities` gives for a stack).
    iou : float
        Objects in planes ``z`` and ``z + 1`` are joined when their IoU exceeds
        this (one-to-one, maximum total IoU).
    min_volume : int
        Smallest 3D object kept, in voxels.

    Returns
    -------
    numpy.ndarray
        int32 ``(Z, H, W)``, one consecutive id per 3D object, 0 for background.
    """
    if not 0.0 <= iou < 1.0:
        raise NapariUnetError(f"The linking IoU must be from 0 to 1, got {iou}.")
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise NapariUnetError(f"Linking needs a stack (Z, H, W), got shape {labels.shape}.")
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(labels.shape, np.int32)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    root = np.arange(n + 1, dtype=np.int64)
    for z in range(labels.shape[0] - 1):
        for a, b in _matches(labels[z], labels[z + 1], area, n, iou):
            root[b] = root[a]  # a is earlier, already resolved to its chain's id
    return drop_small_3d(root[labels], min_volume)


def _matches(
    a: np.ndarray, b: np.ndarray, area: np.ndarray, n: int, iou: float
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(id in a, id in b)`` with IoU above ``iou``."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    keys, inter = np.unique(a[both].astype(np.int64) * (n + 1) + b[both], return_counts=True)
    ia, ib = keys // (n + 1), keys % (n + 1)
    score = inter / (area[ia] + area[ib] - inter)
    keep = score > iou
    ia, ib, score = ia[keep], ib[keep], score[keep]
    if len(ia) == 0:
        return []
    ra, rows = np.unique(ia, return_inverse=True)
    rb, cols = np.unique(ib, return_inverse=True)
    matrix = np.zeros((len(ra), len(rb)))
    matrix[rows, cols] = score
    # imported here: scipy.optimize would weigh on every 2D segmentation's first import
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(-matrix)
    ok = matrix[r, c] > iou
    return list(zip(ra[r[ok]].tolist(), rb[c[ok]].tolist()))


def drop_small_3d(labels: np.ndarray, min_volume: int) -> np.ndarray:
    """Drop objects under ``min_volume`` voxels; consecutive int32 ids in the order of old ids."""
    flat = labels.ravel()
    n = int(flat.max()) if flat.size else 0
    if n == 0:
        return np.zeros(labels.shape, np.int32)
    sizes = np.bincount(flat, minlength=n + 1)
    keep = sizes >= max(int(min_volume), 1)
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]
