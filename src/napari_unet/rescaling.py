"""Resizing an image for the network: the rules, the checks, the model's size range.

A network recognises objects of the sizes it was trained on; a model may record
them (``metadata["object_diameter"]``). Objects outside that range are segmented
in an image resized into it (:func:`rescale_for_diameter`), and the results are
brought back to the image's own shape (:func:`resize_spatial`). Both
:mod:`napari_unet.segment` and :mod:`napari_unet.sizing` look down at this module.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.transform import resize

from .errors import NapariUnetError

if TYPE_CHECKING:
    from .model import UNet

__all__ = [
    "MIN_OBJECT_DIAMETER", "MAX_ENLARGEMENT", "ENLARGE_MARGIN", "check_rescale",
    "resize_spatial", "rescale_for_diameter", "check_diameter", "describe_resize",
    "model_diameter_range", "renumber", "implied_diameter",
]  # fmt: skip

# Resizing below this factor would leave too little of an object to see.
_MIN_RESCALE, _MAX_RESCALE = 1 / 16, 16.0
# For a diameter: objects smaller than this have no shape to segment, and enlarging
# more than this only interpolates pixels (and costs the square in time).
MIN_OBJECT_DIAMETER = 4.0
MAX_ENLARGEMENT = 4.0
# Objects below a model's range are enlarged to this many times its smallest diameter.
ENLARGE_MARGIN = 1.5


def check_rescale(rescale: Any) -> float:
    """A rescale factor as a float, or one sentence on why it is not one (1/16 to 16)."""
    try:
        f = float(rescale)
    except (TypeError, ValueError):
        raise NapariUnetError(f"The rescale factor must be a number, got {rescale!r}.") from None
    if not (math.isfinite(f) and _MIN_RESCALE <= f <= _MAX_RESCALE):
        raise NapariUnetError(
            f"The rescale factor must be between {_MIN_RESCALE:g} and {_MAX_RESCALE:g}, got {f:g}."
        )
    return f


def resize_spatial(
    array: np.ndarray, shape: tuple[int, int], *, labels: bool = False
) -> np.ndarray:
    """Resize the last two axes of ``array`` to ``shape``; other axes are kept.

    Parameters
    ----------
    array : numpy.ndarray
        Image ``(..., H, W)`` or labels.
    shape : tuple of int
        New ``(H', W')``.
    labels : bool
        Nearest-neighbour (ids stay ids) instead of linear interpolation with
        anti-aliasing when shrinking.

    Returns
    -------
    numpy.ndarray
        float32 for images, the input's dtype for labels.
    """
    a = np.asarray(array)
    out_shape = (*a.shape[:-2], *map(int, shape))
    if out_shape == a.shape:
        return a if labels else a.astype(np.float32, copy=False)
    if labels:
        out = resize(a, out_shape, order=0, anti_aliasing=False, preserve_range=True)
        return out.astype(a.dtype)
    shrinking = any(n < o for n, o in zip(out_shape[-2:], a.shape[-2:]))
    src = a.astype(np.float32, copy=False)
    sigma = None
    if shrinking:  # smooth only the spatial axes (resize would guess all of them)
        sigma = [0.0] * (a.ndim - 2) + [
            max(0.0, (o / n - 1) / 2) for n, o in zip(out_shape[-2:], a.shape[-2:])
        ]
    out = resize(
        src,
        out_shape,
        order=1,
        anti_aliasing=shrinking,
        anti_aliasing_sigma=sigma,
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)


def rescale_for_diameter(model: UNet, diameter: float | None) -> float:
    """The rescale factor that brings objects of ``diameter`` pixels into the model's range.

    A model may record the object diameters it was trained for in its metadata
    (``metadata["object_diameter"] = {"min": ..., "max": ...}``, as the bundled
    model does). Objects inside the range need no resizing (1.0). Outside it,
    the image is resized into the range with a margin, because the ends of a
    range are where a model is least sure, measured with the bundled model
    (8-40 px) on synthetic nuclei resized to 0.3x and 3x (``benchmarks/bench_size.py``):

    - larger objects are shrunk to the range's geometric middle,
      ``sqrt(min * max)`` (18 px): nuclei about 50 px across reached a mean
      AP@0.5 of 0.99 shrunk to 18 px, 0.95 to 27 px and 0.62 to 40 px (the
      largest of them, still above the range, came out in pieces), and
      shrinking further also costs less;
    - smaller objects are enlarged to :data:`ENLARGE_MARGIN` (1.5) times the
      smallest (12 px): an enlarged object is blurrier than one imaged at that
      size; nuclei about 5.5 px across reached AP@0.5 0.52-0.56 enlarged to 8 px,
      0.67-0.79 to 12 px and no more at 18 px, which costs 2.25x the work of 12.

    Parameters
    ----------
    model : UNet
    diameter : float or None
        Typical object diameter in the image, in pixels; None gives 1.0.

    Returns
    -------
    float

    Raises
    ------
    NapariUnetError
        When the diameter is not a positive finite number, the model records no
        diameter range, the objects are smaller than ``MIN_OBJECT_DIAMETER``
        (4 px) or would need enlarging more than ``MAX_ENLARGEMENT`` (4x), or
        are larger than 16x the model's largest.
    """
    if diameter is None:
        return 1.0
    d = check_diameter(diameter)
    known = model_diameter_range(model)
    if known is None:
        raise NapariUnetError(
            "This model does not record the object sizes it was trained for, so a diameter "
            "cannot be turned into a resize; give a rescale factor instead."
        )
    lo, hi = known
    smallest = max(lo / MAX_ENLARGEMENT, MIN_OBJECT_DIAMETER)
    largest = hi / _MIN_RESCALE
    if not smallest <= d <= largest:
        raise NapariUnetError(
            f"Objects {d:g} px across are too far from the {lo:g}-{hi:g} px this model knows; "
            f"it can resize for diameters from {smallest:g} to {largest:g} px."
        )
    if d > hi:
        return max(math.sqrt(lo * hi) / d, _MIN_RESCALE)
    if d < lo:
        return min(lo * ENLARGE_MARGIN / d, MAX_ENLARGEMENT)
    return 1.0


def check_diameter(diameter: Any, shape: tuple[int, ...] | None = None) -> float:
    """An object diameter as a float, or one sentence on why it is not one.

    Parameters
    ----------
    diameter : float
        In pixels. 0, negative, NaN, infinite, not a number, or (with
        ``shape``) larger than the image is refused.
    shape : tuple of int or None
        The image's shape ``(..., H, W)``.

    Returns
    -------
    float

    Raises
    ------
    NapariUnetError
    """
    if isinstance(diameter, bool):
        raise NapariUnetError(f"The object diameter must be a number of pixels, got {diameter!r}.")
    try:
        d = float(diameter)
    except (TypeError, ValueError):
        raise NapariUnetError(
            f"The object diameter must be a number of pixels, got {diameter!r}."
        ) from None
    if not (math.isfinite(d) and d > 0):
        raise NapariUnetError(
            f"The object diameter must be a positive number of pixels, got {diameter!r}."
        )
    if shape is not None and d > max(shape[-2:]):
        h, w = shape[-2:]
        raise NapariUnetError(
            f"An object diameter of {d:g} px is larger than the image ({h}x{w} px)."
        )
    return d


def describe_resize(shape: tuple[int, ...], rescale: float) -> str:
    """What a resize costs, in one sentence (for before a long run).

    Parameters
    ----------
    shape : tuple of int
        The image's spatial shape ``(..., H, W)``.
    rescale : float
        The factor (see :func:`rescale_for_diameter`).
    """
    h, w = shape[-2:]
    new = (max(1, round(h * rescale)), max(1, round(w * rescale)))
    work = rescale * rescale
    cost = f"{work:.2g}x the work of the image as it is"
    return f"Resizing x{rescale:.3g} for the network: {new[0]}x{new[1]} px, {cost}."


def model_diameter_range(model: Any) -> tuple[float, float] | None:
    """The ``(min, max)`` object diameters a model records (``metadata["object_diameter"]``)."""
    known = (getattr(model, "metadata", None) or {}).get("object_diameter") or {}
    lo, hi = known.get("min"), known.get("max")
    if lo is None or hi is None:
        return None
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        return None
    return lo, hi


def implied_diameter(model: Any, rescale: float) -> float | None:
    """The object diameter in the image that a rescale factor given alone implies, if any.

    A factor says the objects, resized by it, are of a size the model knows: the
    middle of its range, ``sqrt(min * max)``, where
    :func:`rescale_for_diameter` brings large objects. So
    ``segment(rescale=rescale_for_diameter(model, d))`` scales the instance rule
    as ``segment(diameter=d)`` does for every ``d`` above the range (below it the
    two differ by the enlargement margin), and ``rescale=1`` says the objects are
    in the range as they are. None for a model that records no range: a factor
    then says nothing about the size, and the fixed rule applies.
    """
    known = model_diameter_range(model)
    if known is None:
        return None
    return math.sqrt(known[0] * known[1]) / float(rescale)


def renumber(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids again (a tiny object can vanish when labels shrink)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels.astype(np.int32, copy=False)
    lut = np.zeros(int(ids[-1]) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]
