"""The instance rules: class probabilities to labels by components or a watershed.

:func:`label_instances` takes every option explicitly; the public
:func:`napari_unet.labels_from_probabilities` resolves them first
(:mod:`napari_unet.postprocess.resolver`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import reconstruction
from skimage.segmentation import watershed

from ..errors import NapariUnetError

__all__ = [
    "label_instances",
    "PlaneLabeller",
    "foreground_probability",
    "keep_confident",
    "h_maxima_seeds",
    "METHODS",
]

#: Ways :func:`label_instances` turns the foreground into objects.
METHODS = ("watershed", "components")


def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """Probability of *not* background (class 0), shape ``probabilities.shape[1:]``."""
    p = np.asarray(probabilities)
    if p.ndim < 3 or p.shape[0] < 2:
        raise NapariUnetError(
            f"Probabilities must have the classes first, (K, H, W) with K >= 2; got {p.shape}."
        )
    return (1.0 - p[0]).astype(np.float32)


def label_instances(
    probabilities: np.ndarray,
    *,
    threshold: float,
    min_size: int,
    method: str,
    h: float,
    smoothing: float,
    seed_threshold: float | None,
    min_confidence: float,
) -> np.ndarray:
    """Instance labels by one rule with every option given.

    See :func:`napari_unet.labels_from_probabilities` for what the options mean.
    """
    _check(threshold, min_size, method, h, smoothing, seed_threshold, min_confidence)
    options = dict(
        threshold=threshold, min_size=min_size, method=method, h=h, smoothing=smoothing,
        seed_threshold=seed_threshold, min_confidence=min_confidence,
    )  # fmt: skip
    p = foreground_probability(probabilities)
    if p.ndim == 2:
        return PlaneLabeller(p).label(**options)
    out = np.zeros(p.shape, dtype=np.int32)
    offset = 0
    for z in range(p.shape[0]):  # ids unique across planes
        plane = PlaneLabeller(p[z]).label(**options)
        n = int(plane.max())
        out[z] = np.where(plane > 0, plane + offset, 0)
        offset += n
    return out


def _check(threshold, min_size, method, h, smoothing, seed_threshold, min_confidence) -> None:
    """One sentence for the first option out of range."""
    if not 0.0 < threshold < 1.0:
        raise NapariUnetError(f"The threshold must be between 0 and 1, got {threshold}.")
    if min_size < 0:
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    if method not in METHODS:
        raise NapariUnetError(f"Unknown method {method!r}; use {' or '.join(METHODS)}.")
    if not h > 0:
        raise NapariUnetError(f"The watershed height h must be positive, got {h}.")
    if not smoothing >= 0:
        raise NapariUnetError(f"The smoothing must be 0 or more, got {smoothing}.")
    if seed_threshold is not None and not threshold <= seed_threshold < 1.0:
        raise NapariUnetError(
            f"The seed threshold must be from the threshold ({threshold}) to below 1, "
            f"got {seed_threshold}."
        )
    if not 0.0 <= min_confidence < 1.0:
        raise NapariUnetError(f"min_confidence must be from 0 to below 1, got {min_confidence}.")


class PlaneLabeller:
    """Labellings of one plane's foreground probability by many rules, sharing their steps.

    A search over rules labels the same plane again and again; the distance map
    of a threshold is the same for every watershed height and seed threshold,
    and the seeds of a seeded watershed (its cores' h-maxima, the costly part)
    do not depend on the threshold at all. So they are kept: the distance maps
    of the few thresholds last used, and every seeded watershed's seeds (as the
    pixels they cover). :meth:`label` gives exactly what :func:`label_instances`
    gives, which labels through a fresh one.

    Parameters
    ----------
    p : numpy.ndarray
        ``(H, W)`` foreground probability (:func:`foreground_probability`).
    """

    #: Distance maps kept (the most recently used ones).
    KEEP_DISTANCES = 4

    def __init__(self, p: np.ndarray):
        self.p = np.asarray(p, dtype=np.float32)
        self._distances: dict[tuple, np.ndarray] = {}
        self._seeds: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def label(
        self,
        *,
        threshold: float,
        min_size: int,
        method: str,
        h: float,
        smoothing: float,
        seed_threshold: float | None,
        min_confidence: float,
    ) -> np.ndarray:
        """Instance labels of the plane by one rule (options as :func:`label_instances`)."""
        _check(threshold, min_size, method, h, smoothing, seed_threshold, min_confidence)
        fg = self.p > threshold
        if method == "watershed" and fg.any():
            dist = self._distance(threshold, smoothing, fg)
            if seed_threshold in (None, threshold):
                seeds = h_maxima_seeds(dist, h, fg)
            else:  # seeds from the confident cores; the flooding keeps ``dist``
                seeds = self._core_seeds(seed_threshold, smoothing, h)
            labels = _flood(dist, seeds, fg)
        else:
            labels = ndi.label(fg)[0]
        return keep_confident(_drop_small(labels, min_size), self.p, min_confidence)

    def _distance(self, threshold: float, smoothing: float, mask: np.ndarray) -> np.ndarray:
        """The smoothed distance map of ``mask`` (``p > threshold``), kept for the next rules."""
        key = (threshold, smoothing)
        dist = self._distances.pop(key, None)
        if dist is None:
            dist = _smoothed_distance(mask, smoothing)
        self._distances[key] = dist  # now the most recent
        while len(self._distances) > self.KEEP_DISTANCES:
            del self._distances[next(iter(self._distances))]
        return dist

    def _core_seeds(self, seed_threshold: float, smoothing: float, h: float) -> np.ndarray:
        key = (seed_threshold, smoothing, h)
        if key not in self._seeds:
            core = self.p > seed_threshold
            seeds = h_maxima_seeds(self._distance(seed_threshold, smoothing, core), h, core)
            where = np.flatnonzero(seeds).astype(np.int32)
            self._seeds[key] = (where, seeds.ravel()[where])
        where, ids = self._seeds[key]
        seeds = np.zeros(self.p.size, dtype=np.int32)
        seeds[where] = ids
        return seeds.reshape(self.p.shape)


def _smoothed_distance(mask: np.ndarray, smoothing: float) -> np.ndarray:
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    return ndi.gaussian_filter(dist, smoothing) if smoothing > 0 else dist


def h_maxima_seeds(dist: np.ndarray, h: float, fg: np.ndarray) -> np.ndarray:
    """Seeds: the h-maxima of ``dist`` inside ``fg``, one id per dome (2D or 3D)."""
    # h-maxima by grey reconstruction: the h-dome transform is dist minus the
    # reconstruction of dist - h; each connected dome that reaches h is one seed,
    # so two summits joined above (summit - h) share a seed
    marker = np.maximum(dist - np.float32(h), 0)
    dome = dist - reconstruction(marker, dist).astype(np.float32)
    domes, n = ndi.label((dome > h * 1e-3) & fg)
    if n:
        tall = np.asarray(ndi.maximum(dome, domes, np.arange(1, n + 1))) >= h * 0.999
        keep = np.concatenate([[0], np.where(tall, np.arange(1, n + 1), 0)])
        seeds = keep[domes]
    else:
        seeds = domes
    return seeds


def _flood(dist: np.ndarray, seeds: np.ndarray, fg: np.ndarray) -> np.ndarray:
    labels = watershed(-dist, seeds, mask=fg)
    # a region without a seed (too thin for any h-maximum) still is an object
    rest, n = ndi.label(fg & (labels == 0))
    if n:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    return labels


def keep_confident(labels: np.ndarray, p: np.ndarray, min_confidence: float) -> np.ndarray:
    """Drop objects whose mean foreground probability is under ``min_confidence``."""
    n = int(labels.max())
    if min_confidence <= 0 or n == 0:
        return labels
    mean = np.asarray(ndi.mean(p, labels, np.arange(1, n + 1)))
    keep = np.concatenate([[False], mean >= min_confidence])
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    n = int(labels.max())
    if n == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]
