"""Image in, instance labels out: prediction, optional rescaling and post-processing.

A network recognises objects of the sizes it was trained on. When the objects
in an image are much larger or smaller, :func:`segment` resizes the image by
``rescale`` before prediction and brings the probabilities and labels back to
the image's own shape afterwards, so the caller never sees the resized arrays.
The CLI and the GUI both go through :func:`iter_segment`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.transform import resize

from ._generators import progress_callback, run_to_end
from .errors import NapariUnetError
from .postprocess import labels_from_probabilities
from .tiling import iter_predict_tiled
from .tta import check_tta

if TYPE_CHECKING:
    import torch

    from .model import UNet
    from .tiling import TileProgress

__all__ = [
    "Segmentation", "segment", "iter_segment", "rescale_for_diameter", "resize_spatial",
    "describe_resize", "STACK_MODES", "describe_stack_mode",
]  # fmt: skip

#: How a stack is segmented: ``"planes"`` (each plane on its own, also for time-lapse),
#: ``"linked"`` (plane objects joined across planes), ``"views"`` (XY, XZ and YZ planes
#: predicted and averaged, then a 3D watershed). See :mod:`napari_unet.volume`.
STACK_MODES = ("planes", "linked", "views")

# Resizing below this factor would leave too little of an object to see.
_MIN_RESCALE, _MAX_RESCALE = 1 / 16, 16.0
# For a diameter: objects smaller than this have no shape to segment, and enlarging
# more than this only interpolates pixels (and costs the square in time).
MIN_OBJECT_DIAMETER = 4.0
MAX_ENLARGEMENT = 4.0


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 instance labels of the image's spatial shape (stacks: ``(Z, H, W)``).
    probabilities : numpy.ndarray
        float32 class probabilities ``(K, ...)`` of the same spatial shape.
    rescale : float
        The factor the image was resized by for prediction.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    rescale: float


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
    rescale: float = 1.0,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    threshold: float = 0.5,
    min_size: int = 16,
    tta: bool = False,
    **postprocess: Any,
) -> Generator[TileProgress, None, Segmentation]:
    """Generator form of :func:`segment`: yields tile progress, returns the result.

    Closing the generator between yields cancels the prediction (the GUI's way).
    """
    from .volume.axes import check_stack_mode

    stack = check_stack_mode(stack)
    tta = check_tta(tta)
    f = _check_rescale(rescale)
    if min_size < 0:  # checked before the long prediction, not after
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    if not hasattr(image, "ndim"):
        image = np.asarray(image)
    if stack != "planes":
        return (
            yield from _iter_segment_3d(
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
                **postprocess,
            )
        )
    from .volume.pipeline import OPTIONS_3D

    only_3d = sorted(set(postprocess) & set(OPTIONS_3D))
    if only_3d:
        raise NapariUnetError(
            f"{', '.join(only_3d)} only apply to 3D objects (stack='linked' or 'views')."
        )
    spatial = tuple(int(s) for s in image.shape[-2:])
    work = image
    if f != 1.0:
        small = tuple(max(1, round(s * f)) for s in spatial)
        work = resize_spatial(np.asarray(image), small)
    prob = yield from iter_predict_tiled(
        model, work, tile_shape=tile_shape, batch_size=batch_size, device=device, tta=tta
    )
    # min_size is in the image's pixels; the labels are made at the network's scale
    size = round(min_size * f * f) if min_size else 0
    labels = labels_from_probabilities(prob, threshold=threshold, min_size=size, **postprocess)
    if f != 1.0:
        labels = resize_spatial(labels, spatial, labels=True)
        prob = resize_spatial(prob, spatial)
        labels = _renumber(labels)
    return Segmentation(labels=labels, probabilities=prob, rescale=f)


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
    rescale: float = 1.0,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    threshold: float = 0.5,
    min_size: int = 16,
    progress: Callable[[int, int], Any] | None = None,
    tta: bool = False,
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
    rescale : float
        Factor the image is resized by before prediction: below 1 for objects
        larger than the model knows, above 1 for smaller ones (see
        :func:`rescale_for_diameter`). Labels and probabilities come back at the
        image's own size. 1 (default) resizes nothing.
    tile_shape, batch_size, device
        As for :func:`napari_unet.predict_tiled`.
    threshold : float
        Foreground probability threshold.
    min_size : int
        Smallest object kept, in pixels of the original image.
    progress : callable or None
        Called as ``progress(done, total)`` after every forward pass over a batch
        of tiles (``total`` counts tile passes: 8 per tile with ``tta``).
    tta : bool
        Test-time augmentation: every tile predicted in the 8 symmetries of the
        square and the probabilities averaged (:func:`napari_unet.predict_tiled`),
        at about 8 times the time; in the 3D modes every plane of every view.
    **postprocess
        Further options of :func:`napari_unet.labels_from_probabilities`
        (``method``, ``h``, ``smoothing``), which act at the network's scale;
        for the 3D modes also ``min_volume``, ``link_iou`` (linked) and
        ``seed_threshold`` (views).

    Returns
    -------
    Segmentation
        Labels of the image's spatial shape (one id per 3D object in the 3D
        modes) and probabilities ``(K, ...)`` of the same shape.
    """
    gen = iter_segment(
        model,
        image,
        stack=stack,
        voxel_size=voxel_size,
        z_axis=z_axis,
        rescale=rescale,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        threshold=threshold,
        min_size=min_size,
        tta=tta,
        **postprocess,
    )
    return run_to_end(gen, progress_callback(progress))


def rescale_for_diameter(model: UNet, diameter: float | None) -> float:
    """The rescale factor that brings objects of ``diameter`` pixels into the model's range.

    A model may record the object diameters it was trained for in its metadata
    (``metadata["object_diameter"] = {"min": ..., "max": ...}``, as the bundled
    model does). Objects inside the range need no resizing (1.0); outside it,
    the factor maps the diameter to the nearest end of the range.

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
        When the model records no diameter range, the objects are smaller than
        ``MIN_OBJECT_DIAMETER`` (4 px) or would need enlarging more than
        ``MAX_ENLARGEMENT`` (4x), or larger than 16x the model's largest.
    """
    if diameter is None:
        return 1.0
    d = float(diameter)
    if not (math.isfinite(d) and d > 0):
        raise NapariUnetError(f"The object diameter must be a positive number, got {diameter!r}.")
    known = getattr(model, "metadata", {}).get("object_diameter") or {}
    lo, hi = known.get("min"), known.get("max")
    if lo is None or hi is None:
        raise NapariUnetError(
            "This model does not record the object sizes it was trained for, so a diameter "
            "cannot be turned into a resize; give a rescale factor instead."
        )
    lo, hi = float(lo), float(hi)
    smallest = max(lo / MAX_ENLARGEMENT, MIN_OBJECT_DIAMETER)
    largest = hi / _MIN_RESCALE
    if not smallest <= d <= largest:
        raise NapariUnetError(
            f"Objects {d:g} px across are too far from the {lo:g}-{hi:g} px this model knows; "
            f"it can resize for diameters from {smallest:g} to {largest:g} px."
        )
    return min(max(d, lo), hi) / d


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
