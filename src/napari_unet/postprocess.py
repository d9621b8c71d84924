"""From class probabilities to instance labels (one function for CLI and GUI)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .errors import NapariUnetError

__all__ = ["labels_from_probabilities", "foreground_probability"]


def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """Probability of *not* background (class 0), shape ``probabilities.shape[1:]``."""
    p = np.asarray(probabilities)
    if p.ndim < 3 or p.shape[0] < 2:
        raise NapariUnetError(
            f"Probabilities must have the classes first, (K, H, W) with K >= 2; got {p.shape}."
        )
    return (1.0 - p[0]).astype(np.float32)


def labels_from_probabilities(
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    min_size: int = 16,
) -> np.ndarray:
    """Instance labels from softmax probabilities.

    Pixels whose foreground probability (``1 - p_background``) exceeds
    ``threshold`` form the foreground; its 4-connected components become
    instances (the weight map teaches the network to leave background gaps
    between touching cells, and 4-connectivity keeps diagonal contacts apart);
    components under ``min_size`` pixels are dropped; ids are consecutive.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(K, H, W)``, or ``(K, Z, H, W)`` for a stack, as from
        :func:`napari_unet.predict_tiled`; class 0 is background.
    threshold : float
        Foreground probability threshold, in (0, 1). 0.5 equals the argmax for
        two classes.
    min_size : int
        Smallest object kept, in pixels.

    Returns
    -------
    numpy.ndarray
        int32 labels of shape ``probabilities.shape[1:]``; 0 is background. In a
        stack every plane is labelled on its own and ids are unique over the stack.
    """
    if not 0.0 < threshold < 1.0:
        raise NapariUnetError(f"The threshold must be between 0 and 1, got {threshold}.")
    if min_size < 0:
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    fg = foreground_probability(probabilities) > threshold
    if fg.ndim == 2:
        return _label_plane(fg, min_size)
    out = np.zeros(fg.shape, dtype=np.int32)
    offset = 0
    for z in range(fg.shape[0]):
        plane = _label_plane(fg[z], min_size)
        n = int(plane.max())
        out[z] = np.where(plane > 0, plane + offset, 0)
        offset += n
    return out


def _label_plane(fg: np.ndarray, min_size: int) -> np.ndarray:
    labels, n = ndi.label(fg)
    if n == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]
