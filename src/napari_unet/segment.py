"""Image in, instance labels out: prediction, optional rescaling and post-processing.

A network recognises objects of the sizes it was trained on. When the objects
in an image are much larger or smaller, :func:`segment` resizes the image by
``rescale`` before prediction and brings the probabilities and labels back to
the image's own shape afterwards, so the caller never sees the resized arrays.
Without a diameter or a factor it estimates the object size first
(:mod:`napari_unet.sizing`). An image with nothing but noise, or constant, gives
no objects and a note (:mod:`napari_unet.content`). The CLI and the GUI both go
through :func:`iter_segment`.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.transform import resize

from ._generators import progress_callback, run_to_end
from .content import nothing_to_segment
from .device import select_device
from .errors import NapariUnetError
from .postprocess import labels_from_probabilities, recommended_postprocess, resolve_postprocess
from .precision import Precision, resolve_precision
from .sizing import (
    DiameterEstimate,
    SizeChoice,
    SizeProgress,
    estimate_diameter,
    model_diameter_range,
)
from .tiling import iter_predict_tiled
from .tta import check_tta
from .volume.axes import STACK_MODES  # defined once, where the modes are checked

if TYPE_CHECKING:
    import torch

    from .model import UNet
    from .tiling import TileProgress

__all__ = [
    "Segmentation", "segment", "iter_segment", "rescale_for_diameter", "resize_spatial",
    "describe_resize", "STACK_MODES", "describe_stack_mode", "estimate_diameter",
    "check_diameter", "recommended_postprocess",
]  # fmt: skip


# Resizing below this factor would leave too little of an object to see.
_MIN_RESCALE, _MAX_RESCALE = 1 / 16, 16.0
# For a diameter: objects smaller than this have no shape to segment, and enlarging
# more than this only interpolates pixels (and costs the square in time).
MIN_OBJECT_DIAMETER = 4.0
MAX_ENLARGEMENT = 4.0
# Objects below a model's range are enlarged to this many times its smallest diameter.
ENLARGE_MARGIN = 1.5


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 instance labels of the image's spatial shape (stacks: ``(Z, H, W)``).
    probabilities : numpy.ndarray
        float32 class probabilities ``(K, ...)`` of the same spatial shape (for an
        image with nothing to segment: background everywhere, the model unused).
    rescale : float
        The factor the image was resized by for prediction.
    diameter : float or None
        The object diameter the factor was chosen for: the one given, or the
        estimate; None when a factor was given or nothing could be estimated.
    estimate : DiameterEstimate or None
        The object size estimate, when one was made (no diameter or factor given).
    notes : tuple of str
        Sentences for the user: the estimate and the resize it chose, or why
        there are no objects.
    precision : Precision or None
        The precision the network ran in, and why (``precision.describe()``).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    rescale: float
    diameter: float | None = None
    estimate: DiameterEstimate | None = None
    notes: tuple[str, ...] = ()
    precision: Precision | None = None

    @property
    def resized(self) -> bool:
        """Whether the image was resized for prediction."""
        return self.rescale != 1.0

    @property
    def note(self) -> str:
        """The notes as one line ("" when there are none)."""
        return " ".join(self.notes)


def _check_rescale(rescale: float) -> float:
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


def iter_segment(
    model: UNet,
    image: Any,
    *,
    stack: str = "planes",
    voxel_size: tuple[float, float, float] | None = None,
    z_axis: int | None = None,
    diameter: float | None = None,
    rescale: float | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    tta: bool = False,
    precision: str | Precision = "auto",
    **postprocess: Any,
) -> Generator[TileProgress | SizeProgress | SizeChoice, None, Segmentation]:
    """Generator form of :func:`segment`: yields progress, returns the result.

    Without ``diameter`` and ``rescale`` it first yields the size estimate's
    :class:`~napari_unet.sizing.SizeProgress`, then one
    :class:`~napari_unet.sizing.SizeChoice` (the estimate and the factor, before
    the prediction), then the prediction's :class:`~napari_unet.tiling.TileProgress`.
    Closing the generator between yields cancels the run (the GUI's way).
    """
    from .volume.axes import check_stack_mode

    stack = check_stack_mode(stack)
    tta = check_tta(tta)
    # resolved once (a probe, if any, waits at most a second): every pass of the run uses it
    precision = resolve_precision(precision, select_device(device))
    if diameter is not None and rescale is not None:
        raise NapariUnetError("Give an object diameter or a rescale factor, not both.")
    f = _check_rescale(rescale) if rescale is not None else 1.0
    if min_size is not None and min_size < 0:  # checked before the long prediction
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    if not hasattr(image, "ndim"):
        image = np.asarray(image)
    if image.ndim < 2:
        raise NapariUnetError(f"An image needs at least two dimensions; got shape {image.shape}.")
    if stack == "planes":
        from .volume.pipeline import OPTIONS_3D

        only_3d = sorted(set(postprocess) & set(OPTIONS_3D))
        if only_3d:
            raise NapariUnetError(
                f"{', '.join(only_3d)} only apply to 3D objects (stack='linked' or 'views')."
            )
    else:  # the 3D modes' own bad input, before anything else is said
        _check_3d(model, image, stack, voxel_size, z_axis)
    chosen = None
    if diameter is not None:  # the model's limits first, then the image's
        f = rescale_for_diameter(model, diameter)
        chosen = check_diameter(diameter, tuple(image.shape))
    has_channels = int(model.in_channels) > 1
    empty = nothing_to_segment(image, has_channels=has_channels)
    if empty is not None:
        return replace(_nothing(model, image, has_channels, f, chosen, empty), precision=precision)
    estimate, reuse, notes = None, None, []
    if chosen is None and rescale is None:  # estimate the object size first
        from .sizing import _iter_estimate, choose_rescale

        estimate, reuse = yield from _iter_estimate(
            image,
            model,
            has_channels=has_channels,
            tile_shape=tile_shape,
            batch_size=batch_size,
            device=device,
            check_empty=False,
            reuse=stack == "planes" and not tta,  # its passes go without TTA
            precision=precision,
        )
        f, message = choose_rescale(model, estimate, prefer=reuse[0] if reuse else None)
        chosen = estimate.diameter
        notes.append(message)
        yield SizeChoice(estimate, f, message)
    if stack != "planes":
        result = yield from _iter_segment_3d(
            model,
            image,
            stack=stack,
            voxel_size=voxel_size,
            z_axis=z_axis,
            rescale=f,
            tile_shape=tile_shape,
            batch_size=batch_size,
            device=device,
            threshold=threshold,
            min_size=min_size,
            tta=tta,
            precision=precision,
            **postprocess,
        )
    else:
        spatial = tuple(int(s) for s in image.shape[-2:])
        if reuse is not None and reuse[0] == f:  # the estimate predicted this image already
            prob = reuse[1]
        else:
            work = image
            if f != 1.0:
                small = tuple(max(1, round(s * f)) for s in spatial)
                work = resize_spatial(np.asarray(image), small)
            prob = yield from iter_predict_tiled(
                model, work, tile_shape=tile_shape, batch_size=batch_size, device=device, tta=tta,
                precision=precision,
            )  # fmt: skip
        # the caller's min_size is in the image's pixels, the model's (calibrated on its
        # training images) at the network's scale, where the labels are made
        size = None if min_size is None else round(min_size * f * f)
        # objects of ``chosen`` px in the image are ``chosen * f`` px where labels are made
        known = None if chosen is None else chosen * f
        options = resolve_postprocess(
            model, dict(postprocess, threshold=threshold, min_size=size), diameter=known
        )
        labels = labels_from_probabilities(prob, **options)
        if f != 1.0:
            labels = resize_spatial(labels, spatial, labels=True)
            prob = resize_spatial(prob, spatial)
            labels = _renumber(labels)
        result = Segmentation(labels=labels, probabilities=prob, rescale=f)
    if not result.labels.any():
        notes.append("No objects found.")
    return replace(
        result, diameter=chosen, estimate=estimate, notes=tuple(notes), precision=precision
    )


def _check_3d(model: UNet, image: Any, stack: str, voxel_size: Any, z_axis: int | None) -> None:
    """Refuse, in one sentence, what :func:`_iter_segment_3d` would refuse."""
    from .volume.axes import spatial_ndim, z_to_front
    from .volume.voxels import check_voxel_size

    check_voxel_size(voxel_size)
    nd = spatial_ndim(tuple(image.shape), int(model.in_channels))
    z_to_front(tuple(int(s) for s in image.shape[-nd:]), stack, z_axis)


def _nothing(
    model: UNet, image: Any, has_channels: bool, f: float, diameter: float | None, note: str
) -> Segmentation:
    """The result for an image with nothing to segment: no objects, background everywhere."""
    spatial = tuple(int(s) for s in (image.shape[1:] if has_channels else image.shape))
    prob = np.zeros((int(model.n_classes), *spatial), dtype=np.float32)
    prob[0] = 1.0
    estimate = DiameterEstimate(None, 0, None, "none", empty=True, note=note)
    return Segmentation(
        labels=np.zeros(spatial, dtype=np.int32),
        probabilities=prob,
        rescale=f,
        diameter=diameter,
        estimate=estimate,
        notes=(note,),
    )


def _iter_segment_3d(
    model: UNet, image: Any, *, stack: str, voxel_size: Any, z_axis: int | None, **options: Any
) -> Generator[TileProgress, None, Segmentation]:
    """The 3D modes: Z found and checked, each volume of a 4D+ array segmented on its own."""
    from .tiling import TileProgress
    from .volume.axes import spatial_ndim, z_to_front
    from .volume.pipeline import iter_segment_volume
    from .volume.voxels import check_voxel_size

    vs = check_voxel_size(voxel_size)
    c = int(model.in_channels)
    nd = spatial_ndim(tuple(image.shape), c)
    has_channels = c > 1
    spatial = tuple(int(s) for s in image.shape[-nd:])
    z = z_to_front(spatial, stack, z_axis)
    run = dict(has_channels=has_channels, stack=stack, voxel_size=vs, **options)
    if nd == 3:
        labels, prob = yield from iter_segment_volume(model, image, **run)
        return Segmentation(labels=labels, probabilities=prob, rescale=options["rescale"])
    # 4D+: Z moved to the third axis from the end; the axes before it are separate volumes
    off = 1 if has_channels else 0
    moved = np.moveaxis(np.asarray(image), off + z, off + nd - 3)
    outer = moved.shape[off : off + nd - 3]
    count = int(np.prod(outer))
    labels_all = np.zeros(moved.shape[off:], dtype=np.int32)
    prob_all = None
    done, per_volume = 0, None
    next_id = 0
    for k, index in enumerate(np.ndindex(*outer)):
        vol = moved[(slice(None), *index)] if has_channels else moved[index]
        gen = iter_segment_volume(model, vol, **dict(run))
        while True:
            try:
                event = next(gen)
            except StopIteration as stop_:
                labels, prob = stop_.value
                break
            per_volume = per_volume or event.total
            rest = (count - k - 1) * per_volume
            yield TileProgress(done + event.done, done + max(event.total, event.done) + rest)
        done += max(event.done, per_volume or 0)
        labels_all[index] = np.where(labels > 0, labels + next_id, 0)
        next_id += int(labels.max())
        if prob_all is None:
            prob_all = np.zeros((prob.shape[0], *labels_all.shape), dtype=np.float32)
        prob_all[(slice(None), *index)] = prob
    labels_all = np.moveaxis(labels_all, nd - 3, z)
    prob_all = np.moveaxis(prob_all, 1 + nd - 3, 1 + z)
    return Segmentation(labels=labels_all, probabilities=prob_all, rescale=options["rescale"])


def segment(
    model: UNet,
    image: Any,
    *,
    stack: str = "planes",
    voxel_size: tuple[float, float, float] | None = None,
    z_axis: int | None = None,
    diameter: float | None = None,
    rescale: float | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    tta: bool = False,
    precision: str | Precision = "auto",
    **postprocess: Any,
) -> Segmentation:
    """Segment an image: (resize,) predict tile by tile, label, (resize back).

    Parameters
    ----------
    model : UNet
        The network (with its stored normalisation).
    image : array-like
        As for :func:`napari_unet.predict_tiled`: ``(H, W)``, a stack
        ``(Z, H, W)``, or channels first for a multi-channel model. For a 3D
        mode, any number of further axes before the plane with ``z_axis``
        saying which one is Z (each other index is a volume of its own).
    stack : {"planes", "linked", "views"}
        What a stack's objects are (:data:`STACK_MODES`). ``"planes"``: each
        plane on its own (also right for time-lapse). ``"linked"``: each plane
        labelled, then objects of neighbouring planes joined one-to-one when
        their IoU exceeds ``link_iou`` (0.4), so a nucleus has one id across
        planes. ``"views"``: every XY, XZ and YZ plane predicted (resampled to
        square pixels), the three probability volumes averaged, and 3D objects
        cut by a 3D distance-transform watershed. 3D objects under
        ``min_volume`` voxels are dropped (default: a ball whose cross-section
        is ``min_size`` pixels).
    voxel_size : tuple of float or None
        ``(z, y, x)`` voxel size (physical or relative; only ratios matter), all
        positive; ``None`` means ``(1, 1, 1)``. Used by the 3D modes.
    z_axis : int or None
        Index of Z among the image's non-channel axes; needed for a 3D mode when
        there are more than three of them, otherwise the first is Z.
    diameter : float or None
        Typical object diameter in pixels: the image is resized into the model's
        range (:func:`rescale_for_diameter`). 0, negative, NaN, infinite or
        larger than the image is refused.
    rescale : float or None
        Factor the image is resized by before prediction: below 1 for objects
        larger than the model knows, above 1 for smaller ones. 1 resizes nothing
        and skips the estimate. Labels and probabilities come back at the
        image's own size.

        With neither ``diameter`` nor ``rescale`` (the default), the object
        size is estimated (:func:`napari_unet.estimate_diameter`, on at most
        three planes of a stack) and the image resized when it lies outside the
        range the model records (``metadata["object_diameter"]``); a model that
        records none, or too few objects, means no resizing, with a note.
    tile_shape, batch_size, device
        As for :func:`napari_unet.predict_tiled`.
    threshold : float or None
        Foreground probability threshold; None: the model's recommendation
        (``metadata["postprocess"]``, calibrated after training), else 0.5.
    min_size : int or None
        Smallest object kept, in pixels of the original image; None: the
        model's recommendation, else 16.
    progress : callable or None
        Called as ``progress(done, total)`` after every forward pass over a batch
        of tiles (``total`` counts tile passes: 8 per tile with ``tta``); first
        for the size estimate's passes, then for the prediction.
    tta : bool
        Test-time augmentation: every tile predicted in the 8 symmetries of the
        square and the probabilities averaged (:func:`napari_unet.predict_tiled`),
        at about 8 times the time; in the 3D modes every plane of every view.
        (The size estimate's passes go without it.)
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"`` (default): bfloat16 where a one-time measurement on this
        machine found it at least 1.3x faster, else float32
        (:mod:`napari_unet.precision`; the result's ``precision`` says which ran
        and why). ``"fp32"``: exact float32. ``"bf16"``: bfloat16 autocast
        (probabilities within about 1e-2). ``"fp16"``: float16, CUDA only.
    **postprocess
        Further options of :func:`napari_unet.labels_from_probabilities`
        (``method``, ``h``, ``smoothing``, ``seed_threshold``,
        ``min_confidence``), which act at the network's scale; for the 3D modes
        also ``min_volume`` and ``link_iou`` (linked). What the caller leaves
        out comes from the model's recommendation, the same for every entry
        point (:func:`napari_unet.postprocess.resolve_postprocess`).

    Returns
    -------
    Segmentation
        Labels of the image's spatial shape (one id per 3D object in the 3D
        modes) and probabilities ``(K, ...)`` of the same shape, the factor
        used, the estimate and notes. A constant image or one with nothing but
        noise (:func:`napari_unet.content.nothing_to_segment`) gives no
        objects and a note, without running the model; so does an image where
        the model finds nothing ("No objects found.").
    """
    gen = iter_segment(
        model,
        image,
        stack=stack,
        voxel_size=voxel_size,
        z_axis=z_axis,
        diameter=diameter,
        rescale=rescale,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        threshold=threshold,
        min_size=min_size,
        tta=tta,
        precision=precision,
        **postprocess,
    )
    return run_to_end(gen, progress_callback(progress))


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


def describe_stack_mode(
    shape: tuple[int, ...], stack: str, voxel_size: tuple[float, float, float] | None = None
) -> str:
    """What a stack mode will do and cost, in one sentence (for before a long run).

    Parameters
    ----------
    shape : tuple of int
        The stack's spatial shape ``(Z, H, W)``.
    stack : {"planes", "linked", "views"}
    voxel_size : tuple of float or None
        ``(z, y, x)``; ``None`` means ``(1, 1, 1)``.
    """
    from .volume.axes import check_stack_mode, z_to_front
    from .volume.plan import describe_views
    from .volume.voxels import check_voxel_size, isotropic_factors

    stack = check_stack_mode(stack)
    vs = check_voxel_size(voxel_size)
    z = int(shape[-3]) if len(shape) >= 3 else 1
    if stack == "planes":
        return f"Planes: {z} plane{'s' if z != 1 else ''}, each labelled on its own."
    z_to_front(tuple(shape[-3:]), stack, None)  # a 2D shape or a single plane: one sentence
    if stack == "linked":
        return (
            f"Linked planes: {z} planes labelled, then objects joined across planes; "
            "about the work of planes."
        )
    return describe_views(tuple(shape[-3:]), isotropic_factors(vs))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids again (a tiny object can vanish when labels shrink)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels.astype(np.int32, copy=False)
    lut = np.zeros(int(ids[-1]) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]


class _CallableModule(types.ModuleType):
    """The module :mod:`napari_unet.segment`, callable as :func:`segment`.

    ``napari_unet.segment`` names both this module and its main function; Python
    sets the package's attribute to the module whenever it is imported, so the
    module itself answers ``napari_unet.segment(model, image, ...)``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Segmentation:
        return segment(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
