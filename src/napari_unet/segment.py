"""Image in, instance labels out: prediction, optional rescaling and post-processing.

A network recognises objects of the sizes it was trained on. When the objects
in an image are much larger or smaller, :func:`segment` resizes the image by
``rescale`` before prediction and brings the probabilities and labels back to
the image's own shape afterwards, so the caller never sees the resized arrays.
Without a diameter or a factor it estimates the object size first
(:mod:`napari_unet.sizing`). An image with nothing but noise, or constant, gives
no objects and a note (:mod:`napari_unet.content`). The CLI and the GUI both go
through :func:`iter_segment`.

This module holds the orchestration: the checks, the size, and the choice of
path. The resize rules are in :mod:`napari_unet.rescaling`, the plane-by-plane
path in :mod:`napari_unet.planes`, the 3D modes in :mod:`napari_unet.volume`.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._generators import progress_callback, run_to_end
from .content import nothing_to_segment
from .device import select_device
from .errors import NapariUnetError
from .events import DiameterEstimate, Note, SizeChoice, SizeProgress, TileProgress
from .planes import iter_segment_planes
from .postprocess import recommended_postprocess
from .precision import Precision, resolve_precision
from .rescaling import (
    ENLARGE_MARGIN,
    MAX_ENLARGEMENT,
    MIN_OBJECT_DIAMETER,
    check_diameter,
    check_rescale,
    describe_resize,
    implied_diameter,
    rescale_for_diameter,
    resize_spatial,
)
from .sizing import choose_rescale, estimate_diameter, iter_size_estimate
from .tta import check_tta
from .volume.axes import STACK_MODES, check_stack_mode
from .volume.pipeline import OPTIONS_3D
from .volume.plan import describe_stack_mode
from .volume.stacks import check_stack_input, iter_segment_stack

if TYPE_CHECKING:
    import torch

    from .model import UNet

__all__ = [
    "Segmentation", "segment", "iter_segment", "rescale_for_diameter", "resize_spatial",
    "describe_resize", "STACK_MODES", "describe_stack_mode", "estimate_diameter",
    "check_diameter", "recommended_postprocess", "MIN_OBJECT_DIAMETER", "MAX_ENLARGEMENT",
    "ENLARGE_MARGIN",
]  # fmt: skip


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
) -> Generator[TileProgress | SizeProgress | SizeChoice | Note, None, Segmentation]:
    """Generator form of :func:`segment`: yields progress, returns the result.

    With a ``diameter`` that calls for a resize it first yields a
    :class:`~napari_unet.events.Note` saying what the resize costs. Without
    ``diameter`` and ``rescale`` it first yields the size estimate's
    :class:`~napari_unet.events.SizeProgress`, then one
    :class:`~napari_unet.events.SizeChoice` (the estimate and the factor, before
    the prediction). Then the prediction's :class:`~napari_unet.events.TileProgress`.
    Closing the generator between yields cancels the run (the GUI's way).
    """
    image, stack, tta, precision, f = _checked(
        model, image, stack, voxel_size, z_axis, rescale, min_size, tta, precision, device,
        diameter, postprocess,
    )  # fmt: skip
    chosen = None
    if diameter is not None:  # the model's limits first, then the image's
        f = rescale_for_diameter(model, diameter)
        chosen = check_diameter(diameter, tuple(image.shape))
        if f != 1.0:  # said before anything runs, as the size chosen is
            yield Note(describe_resize(image.shape, f))
    has_channels = int(model.in_channels) > 1
    empty = nothing_to_segment(image, has_channels=has_channels)
    if empty is not None:
        return replace(_nothing(model, image, has_channels, f, chosen, empty), precision=precision)
    estimate, reuse, notes = None, None, []
    if chosen is None and rescale is None:  # estimate the object size first
        choice, reuse = yield from _iter_size_choice(
            model, image, has_channels=has_channels, tile_shape=tile_shape,
            batch_size=batch_size, device=device, precision=precision,
            reuse=stack == "planes" and not tta,  # its passes go without TTA
        )  # fmt: skip
        f, estimate, chosen = choice.rescale, choice.estimate, choice.estimate.diameter
        notes.append(choice.message)
        yield choice
    options = dict(
        rescale=f, tile_shape=tile_shape, batch_size=batch_size, device=device,
        threshold=threshold, min_size=min_size, tta=tta, precision=precision, **postprocess,
    )  # fmt: skip
    # the size the instance rule scales with: the one given or estimated, else the one
    # a factor given alone implies (the model's typical size, once resized)
    sized = implied_diameter(model, f) if rescale is not None else chosen
    if stack == "planes":
        labels, prob = yield from iter_segment_planes(
            model, image, reuse=reuse, diameter=sized, **options
        )
    else:
        labels, prob = yield from iter_segment_stack(
            model,
            image,
            stack=stack,
            voxel_size=voxel_size,
            z_axis=z_axis,
            diameter=sized,
            **options,
        )
    if not labels.any():
        notes.append("No objects found.")
    return Segmentation(
        labels=labels, probabilities=prob, rescale=f, diameter=chosen, estimate=estimate,
        notes=tuple(notes), precision=precision,
    )  # fmt: skip


def _checked(
    model: UNet,
    image: Any,
    stack: Any,
    voxel_size: Any,
    z_axis: int | None,
    rescale: Any,
    min_size: int | None,
    tta: Any,
    precision: Any,
    device: Any,
    diameter: Any,
    postprocess: dict,
) -> tuple[Any, str, bool, Precision, float]:
    """The arguments of :func:`iter_segment` checked before any work, in one sentence each.

    Returns the image (an array), the stack mode, ``tta``, the precision resolved
    for the device, and the rescale factor (1 when none is given).
    """
    stack = check_stack_mode(stack)
    tta = check_tta(tta)
    # resolved once (a probe, if any, waits at most a second): every pass of the run uses it
    precision = resolve_precision(precision, select_device(device))
    if diameter is not None and rescale is not None:
        raise NapariUnetError("Give an object diameter or a rescale factor, not both.")
    f = check_rescale(rescale) if rescale is not None else 1.0
    if min_size is not None and min_size < 0:  # checked before the long prediction
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    if not hasattr(image, "ndim"):
        image = np.asarray(image)
    if image.ndim < 2:
        raise NapariUnetError(f"An image needs at least two dimensions; got shape {image.shape}.")
    if stack == "planes":
        only_3d = sorted(set(postprocess) & set(OPTIONS_3D))
        if only_3d:
            raise NapariUnetError(
                f"{', '.join(only_3d)} only apply to 3D objects (stack='linked' or 'views')."
            )
    else:  # the 3D modes' own bad input, before anything else is said
        check_stack_input(model, image, stack, voxel_size, z_axis)
    return image, stack, tta, precision, f


def _iter_size_choice(
    model: UNet, image: Any, *, reuse: bool, **options: Any
) -> Generator[SizeProgress, None, tuple[SizeChoice, tuple[float, np.ndarray] | None]]:
    """The object size estimated, the factor chosen for it, and a prediction to reuse if any.

    ``reuse``: the estimate may keep its whole-image pass as the prediction; the
    factor then prefers the one that pass ran at (:func:`napari_unet.sizing.choose_rescale`).
    """
    estimate, kept = yield from iter_size_estimate(
        image, model, check_empty=False, reuse=reuse, **options
    )
    f, message = choose_rescale(model, estimate, prefer=kept[0] if kept else None)
    resize = describe_resize(image.shape, f) if f != 1.0 else ""
    return SizeChoice(estimate, f, message, resize), kept


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
        image's own size. A factor says the resized objects are of the size the
        model knows best (the middle of its range): the instance rule scales
        with that size (:func:`napari_unet.rescaling.implied_diameter`).

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


class _CallableModule(types.ModuleType):
    """The module :mod:`napari_unet.segment`, callable as :func:`segment`.

    ``napari_unet.segment`` names both this module and its main function; Python
    sets the package's attribute to the module whenever it is imported, so the
    module itself answers ``napari_unet.segment(model, image, ...)``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Segmentation:
        return segment(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
