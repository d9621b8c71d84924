"""The object size estimate: the API, the two stages put together, the factor it calls for."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._generators import progress_callback, run_to_end
from ..content import nothing_to_segment
from ..errors import NapariUnetError
from ..events import DiameterEstimate, SizeProgress
from ..rescaling import model_diameter_range, rescale_for_diameter
from .by_model import is_whole, measuring_factor, model_pass, without_fragments
from .from_image import image_sizes, sample_planes

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from ..model import UNet

__all__ = [
    "MIN_OBJECTS", "choose_rescale", "estimate_diameter", "iter_estimate_diameter",
    "iter_size_estimate", "iter_size_at_own_scale",
]  # fmt: skip

#: Fewest objects a size estimate rests on.
MIN_OBJECTS = 5
_MODEL_PASSES = 3
# The estimate's own pass is reused as the prediction within this of the rule's factor.
_PREFER_TOLERANCE = 0.1


def choose_rescale(
    model: Any,
    estimate: DiameterEstimate,
    *,
    can_resize: bool = True,
    prefer: float | None = None,
) -> tuple[float, str]:
    """The factor an estimate calls for, and one sentence saying so.

    The same rule as :func:`napari_unet.rescaling.rescale_for_diameter`; where
    that would refuse (objects under 4 px, or beyond the largest resize), or the
    model records no range, or there is no estimate, the image is not resized.

    Parameters
    ----------
    model : UNet
    estimate : DiameterEstimate
    can_resize : bool
        False for images segmented chunk by chunk, which keep their scale: the
        factor is then 1 and the sentence says what resizing would have been.
    prefer : float or None
        A factor the whole image was already predicted at (the estimate's own
        pass). When it is within 10% of the rule's factor it is chosen instead,
        so that prediction is not made twice. (Anywhere in the middle of the
        range was too loose: with the retrained model, 3x nuclei brought to 15 px
        instead of 18 px lost 0.2 AP@0.5 on one test image.)

    Returns
    -------
    (rescale, message) : tuple of float and str
    """
    if estimate.diameter is None:
        return 1.0, estimate.note
    d = estimate.diameter
    said = f"Estimated object diameter {d:.0f} px"
    known = model_diameter_range(model)
    if known is None:
        return 1.0, f"{said}; this model records no object sizes, so the image was not resized."
    lo, hi = known
    try:
        rescale = rescale_for_diameter(model, d)
    except NapariUnetError:
        return 1.0, f"{said}: too far from the model's {lo:g}-{hi:g} px to resize; not resized."
    if rescale == 1.0:
        return 1.0, f"{said}: within the model's {lo:g}-{hi:g} px, no resizing."
    if prefer is not None and abs(prefer / rescale - 1.0) <= _PREFER_TOLERANCE:
        rescale = prefer
    if not can_resize:
        return 1.0, (
            f"{said}: outside the model's {lo:g}-{hi:g} px, but an image segmented chunk by "
            f"chunk is not resized; resize it x{rescale:.2g} first for better results."
        )
    return rescale, f"{said}: outside the model's {lo:g}-{hi:g} px, resized x{rescale:.2g}."


def iter_estimate_diameter(
    image: Any,
    model: UNet | None = None,
    *,
    has_channels: bool | None = None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
) -> Generator[SizeProgress, None, DiameterEstimate]:
    """Generator form of :func:`estimate_diameter`: yields the model passes' tile progress."""
    estimate, _ = yield from iter_size_estimate(
        image,
        model,
        has_channels=has_channels,
        min_objects=min_objects,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
    )
    return estimate


def estimate_diameter(
    image: Any,
    model: UNet | None = None,
    *,
    has_channels: bool | None = None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> DiameterEstimate:
    """Estimate the typical object diameter of an image, in pixels.

    A model-free, scale-free estimate from the image, then (with a ``model``
    that records its range) a measurement on the model's own objects at the
    scale that estimate implies; see the module documentation for why both.

    Parameters
    ----------
    image : array-like
        ``(H, W)``, a stack ``(..., H, W)`` (at most three planes from the middle
        are measured), or channels first for a multi-channel model. A dask or
        zarr array is read only where it is measured (no noise test then).
    model : UNet or None
        The network that will segment the image. None: the model-free estimate.
    has_channels : bool or None
        Whether the first axis holds channels; None: as the model says (a model
        with more than one input channel), else no.
    min_objects : int
        Fewest objects an estimate may rest on (default 5).
    tile_shape, batch_size, device
        For the model's passes, as for :func:`napari_unet.predict_tiled`.
    progress : callable or None
        Called as ``progress(done, total)`` after every batch of tiles.

    Returns
    -------
    DiameterEstimate
        ``diameter`` is None, with a note, when fewer than ``min_objects``
        objects were found or the image holds nothing but noise
        (:func:`napari_unet.content.nothing_to_segment`).

    Examples
    --------
    >>> from napari_unet.synthetic import make_cells
    >>> image, _ = make_cells((256, 256), diameter=(40, 60), seed=0)
    >>> 35 < estimate_diameter(image).diameter < 70
    True
    """
    gen = iter_estimate_diameter(
        image,
        model,
        has_channels=has_channels,
        min_objects=min_objects,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
    )
    return run_to_end(gen, progress_callback(progress))


def iter_size_estimate(
    image: Any,
    model: UNet | None,
    *,
    has_channels: bool | None,
    min_objects: int = MIN_OBJECTS,
    tile_shape: Any,
    batch_size: int,
    device: Any,
    check_empty: bool = True,
    reuse: bool = False,
    precision: Any = "fp32",
) -> Generator[SizeProgress, None, tuple[DiameterEstimate, tuple[float, np.ndarray] | None]]:
    """The estimate, and (``reuse``) a whole-image prediction with its factor, if one was made.

    What :func:`iter_estimate_diameter` runs, with what
    :func:`napari_unet.segment.iter_segment` needs besides: ``check_empty=False``,
    the caller has found the image worth segmenting; ``reuse``, keep the model
    pass's prediction when it covered the whole image as the segmentation would
    (then the segmentation need not predict it again); ``precision``, of the model
    passes (the caller's, so that a reused prediction is the one it asked for).
    """
    a = image if hasattr(image, "ndim") else np.asarray(image)
    if a.ndim < 2:
        raise NapariUnetError(f"An image needs at least two dimensions; got shape {a.shape}.")
    if has_channels is None:
        has_channels = model is not None and int(model.in_channels) > 1
    if isinstance(min_objects, bool) or not isinstance(min_objects, (int, np.integer)):
        raise NapariUnetError(f"min_objects must be a whole number, got {min_objects!r}.")
    min_objects = max(1, int(min_objects))
    # an image not in memory (dask, zarr) is not read whole for the noise test
    check_empty = check_empty and isinstance(a, np.ndarray)
    empty_note = nothing_to_segment(a, has_channels=has_channels) if check_empty else None
    if empty_note is not None:
        return DiameterEstimate(None, 0, None, "none", empty=True, note=empty_note), None
    planes = sample_planes(a, has_channels)
    sizes = np.concatenate([image_sizes(p.data) for p in planes])
    hint = float(np.median(sizes)) if len(sizes) >= min_objects else None
    result = _summary(sizes, "image", min_objects)
    known = model_diameter_range(model) if model is not None else None
    if hint is None or known is None:
        return result, None
    kept = None
    factor = measuring_factor(hint, known)
    if factor == 1.0 and not is_whole(a, has_channels, factor):
        # in the middle of the range: no model pass could change "no resizing" here
        # (at the image's own scale it would find what stage 1 found), and on an image
        # bigger than one window it would cost a fifth of a 1024x1024 prediction
        return result, None
    for _ in range(_MODEL_PASSES):
        found, whole = yield from model_pass(
            model, a, planes, factor, has_channels, tile_shape, batch_size, device, precision
        )
        if whole is not None and reuse:
            kept = (factor, whole)
        if len(found) < min_objects:
            break  # keep the last measurement that had enough objects
        result = _summary(found, "model", min_objects)
        if measuring_factor(result.diameter * factor, known) == 1.0:
            break  # the objects were in the middle of its range: a scale it is sure of
        factor = measuring_factor(result.diameter, known)
    return result, kept


def iter_size_at_own_scale(
    model: UNet,
    image: Any,
    *,
    tile_shape: Any = None,
    batch_size: int = 1,
    device: Any = None,
    precision: Any = "fp32",
) -> Generator[SizeProgress, None, tuple[float | None, str]]:
    """The object size of an image segmented at its own scale (chunk by chunk), and a sentence.

    The zarr paths of the CLI and the Predict dock ask this before they predict:
    the diameter (None when it could not be estimated) scales the instance rule
    as :func:`napari_unet.segment.segment`'s estimate does, and the sentence says
    whether resizing would have suited the model (such an image is not resized).
    The estimate runs as ``segment``'s does (same planes, same ``precision``), so
    an image small enough to go both ways gets one diameter. A dask or zarr image
    is read only in a crop of at most 1024x1024 px of three planes.

    Raises
    ------
    NapariUnetError
        When the image cannot be measured (its prediction says why, too).
    """
    has_channels = int(model.in_channels) > 1
    estimate, _ = yield from iter_size_estimate(
        image, model, has_channels=has_channels, tile_shape=tile_shape,
        batch_size=batch_size, device=device, check_empty=False, precision=precision,
    )  # fmt: skip
    return estimate.diameter, choose_rescale(model, estimate, can_resize=False)[1]


def _summary(sizes: np.ndarray, source: str, min_objects: int) -> DiameterEstimate:
    n = len(sizes)
    if n < min_objects:
        note = (
            f"Too few objects to estimate their size ({n} found, {min_objects} needed); "
            "the image was not resized."
        )
        return DiameterEstimate(None, n, None, "none", note=note)
    if source == "model":
        sizes = without_fragments(sizes)
    q1, med, q3 = (float(v) for v in np.percentile(sizes, [25, 50, 75]))
    note = f"Estimated object diameter {med:.0f} px ({n} objects)."
    return DiameterEstimate(med, n, (q1, q3), source, note=note)
