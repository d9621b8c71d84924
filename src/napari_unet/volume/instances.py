"""3D objects from a foreground probability volume: a distance-transform watershed.

The foreground (probability above a threshold) is cut into connected regions;
each region is split by a watershed of its 3D distance transform, measured in
physical units (``sampling``) so a Z step 4x the pixel size counts 4x, and seeded
by its h-maxima: one dome of the distance map that stands ``h`` above the saddle
to a higher one is one object. Seeds come only from confident voxels (probability
above ``seed_threshold``), so the dips of probability the network leaves between
touching nuclei cut their seeds apart even where the mask still joins them.

Work is done region by region in each region's bounding box, so memory beyond the
volume itself stays bounded by the largest region, whatever the stack's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..errors import NapariUnetError
from ..postprocess.rules import h_maxima_seeds
from .linking import drop_small_3d

__all__ = ["labels_3d"]


def labels_3d(
    foreground: np.ndarray,
    *,
    threshold: float = 0.5,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
    min_volume: int = 0,
    h: float = 0.5,
    smoothing: float = 0.0,
    seed_threshold: float | None = None,
) -> np.ndarray:
    """Instance labels of a ``(Z, H, W)`` foreground probability volume.

    Parameters
    ----------
    foreground : numpy.ndarray
        Foreground probability, ``(Z, H, W)``.
    threshold : float
        Voxels above it are foreground.
    sampling : sequence of float
        Voxel size ``(z, y, x)`` in in-plane pixels (``(4, 1, 1)`` for a Z step
        of 4 pixels); distances and smoothing are physical.
    min_volume : int
        Smallest object kept, in voxels of the volume.
    h : float
        Height, in pixels of distance, that a centre must rise above the neck to
        a larger one to be an object of its own.
    smoothing : float
        Gaussian sigma, in pixels, applied to the distance map; 0 (default) turns
        it off: the average of three views is smooth already.
    seed_threshold : float or None
        Seeds (h-maxima) are taken only where the probability exceeds this;
        ``None`` uses ``threshold``.

    Returns
    -------
    numpy.ndarray
        int32 labels, consecutive ids, 0 for background.
    """
    fg = np.asarray(foreground)
    if fg.ndim != 3:
        raise NapariUnetError(f"3D labelling needs a volume (Z, H, W), got shape {fg.shape}.")
    sampling = tuple(float(s) for s in sampling)
    seed_t = threshold if seed_threshold is None else seed_threshold
    out, n = ndi.label(fg > threshold)
    if n == 0:
        return out.astype(np.int32, copy=False)
    next_id = 0
    for i, box in enumerate(ndi.find_objects(out), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        crop = out[box]
        mask = crop == i
        if mask.sum() < max(min_volume, 1):
            crop[mask] = 0
            continue
        pieces = _split(mask, fg[box], sampling, h, smoothing, seed_t)
        k = int(pieces.max())
        # negative while other regions still carry their positive component ids
        crop[mask] = -(pieces[mask] + next_id)
        next_id += k
    np.negative(out, out=out)
    return drop_small_3d(out, min_volume)


def _split(
    mask: np.ndarray,
    prob: np.ndarray,
    sampling: tuple[float, float, float],
    h: float,
    smoothing: float,
    seed_threshold: float,
) -> np.ndarray:
    """Split one connected region by the seeded distance watershed; ids 1..k."""
    dist = ndi.distance_transform_edt(mask, sampling=sampling).astype(np.float32)
    if smoothing > 0:
        dist = ndi.gaussian_filter(dist, [smoothing / s for s in sampling])
    seeds = h_maxima_seeds(dist, h, mask & (prob > seed_threshold))
    if not seeds.any():
        return mask.astype(np.int32)
    labels = watershed(-dist, seeds, mask=mask)
    rest, m = ndi.label(mask & (labels == 0))
    if m:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    ids = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]
