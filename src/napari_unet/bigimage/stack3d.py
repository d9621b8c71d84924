"""Z-stacks larger than memory as 3D objects: slab by slab in Z, into the zarr layout.

The stack is cut into slabs of whole planes. Each slab is read with a Z-halo,
normalised with statistics computed once over the whole stack, and segmented by
the in-memory 3D code (:mod:`napari_unet.volume`): for ``"linked"`` the planes
are labelled and linked, with one plane of halo each side so the links across a
slab face are seen; for ``"views"`` the three views are predicted with the
network's context along Z as halo (so the probabilities inside the slab are the
in-memory ones) plus a labelling margin, and the 3D watershed runs on the slab
and its margin. The halo is cropped, each slab's ids are written to a work array,
objects that meet across a slab face are merged by the same rule as 2D chunks
(:func:`~napari_unet.bigimage.merge.merge_across_faces`: one object if either
slab, seeing both sides, says so), and a final pass writes consecutive ids at
every display level. Memory is one slab with its halo, whatever the number of planes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Sequence
from typing import Any

import dask.array as da
import numpy as np

from ..errors import NapariUnetError
from ..events import ChunkProgress
from ..model import UNet
from ..normalization import Normalization
from ..postprocess import resolve_postprocess
from ..tiling import resolve_normalization
from ..tta import check_tta
from ..volume.axes import check_stack_mode, z_to_front
from ..volume.options import ViewsLabelling, take_3d_options
from ..volume.voxels import check_voxel_size, isotropic_factors, scaled_shape
from .checks import check_counts, check_destination, check_postprocess
from .chunks import ImageAxes, chunk_shape, image_axes
from .merge import merge_pairs
from .ngff import SourceImage, Spatial
from .output import (
    LABEL_NAME,
    ZarrPrediction,
    create_label_levels,
    create_probability_levels,
    mark_complete,
    open_output,
    pyramid_levels,
    read_result,
)
from .slabs import STEPS_PER_SLAB, SlabRun, relabel_slabs, segment_slabs
from .store import label_dtype, open_input, source_ref, start_metadata

__all__ = ["iter_predict_stack_to_zarr", "plan_slabs", "DEFAULT_SLAB_BUDGET"]

#: Bytes one slab (with its halo) may take while it is segmented.
DEFAULT_SLAB_BUDGET = 1 << 30
#: Planes of probabilities around a "views" slab that its 3D watershed sees, in
#: in-plane pixels (converted to planes by the voxel size); as 2D's label margin.
VIEWS_LABEL_MARGIN = 32
# float32 arrays per voxel and class while a slab is in flight (three views, their
# sum, the foreground, the watershed's distance map and labels), measured loosely.
_BYTES_PER_VOXEL_CLASS = 20


def plan_slabs(n_planes: int, z_chunk: int) -> list[tuple[int, int]]:
    """The slabs ``(z0, z1)`` of a stack of ``n_planes`` planes, ``z_chunk`` planes each."""
    return [(z, min(z + z_chunk, n_planes)) for z in range(0, n_planes, z_chunk)]


def _halos(model: UNet, stack: str, factors: Sequence[float], label_margin: int | None):
    """Planes of labelling margin and of extra prediction context on each side of a slab."""
    if stack == "linked":
        return 1, 0  # links join neighbouring planes only: one plane each side sees them
    fz = float(factors[0])
    margin = math.ceil(VIEWS_LABEL_MARGIN / fz) if label_margin is None else int(label_margin)
    if margin < 1:
        raise NapariUnetError(f"label_margin must be at least 1 plane, got {label_margin}.")
    # the network's context along Z in the side views, in stack planes: the halo,
    # plus up to a pooling step that an off-grid row also reaches, plus the reach of
    # the resampling's interpolation and anti-aliasing (4 sigma) when Z is resized
    context = math.ceil((model.halo + model.pooling_factor) / fz)
    if fz != 1.0:  # 4 sigma of the anti-aliasing, sigma = (shrink - 1) / 2, in planes
        context += 1 + math.ceil(2 * (1 - 1 / fz) if fz > 1 else 2 * (1 / fz - 1))
    return margin, context


def iter_predict_stack_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any,
    *,
    stack: str,
    voxel_size: Any = None,
    z_chunk: int | None = None,
    label_margin: int | None = None,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Any = None,
    tta: bool = False,
    precision: Any = "fp32",
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    memory_budget: int | None = None,
    overwrite: bool = False,
    **postprocess: Any,
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """Segment a ``(Z, H, W)`` stack as 3D objects slab by slab into an OME-Zarr store.

    :func:`~napari_unet.bigimage.predict_to_zarr` with ``stack="linked"`` or
    ``"views"`` runs this; the output layout is the 2D zarr path's, with a Z axis.

    Parameters
    ----------
    model, image, output, label_name, chunk, tile_shape, batch_size, device,
    normalization, tta, probabilities, threshold, min_size, overwrite
        As for :func:`~napari_unet.bigimage.predict_to_zarr`.
    precision : str or Precision
        As resolved by :func:`~napari_unet.bigimage.predict_to_zarr`.
    stack : {"linked", "views"}
        The 3D mode, as for :func:`napari_unet.segment`.
    voxel_size : sequence of float, str or None
        ``(z, y, x)``; None takes ``scale``, else the OME-Zarr image's pixel
        sizes, else 1, 1, 1.
    z_chunk : int or None
        Planes per slab (the halo comes on top). None: as many as fit
        ``memory_budget`` with the halo, but at least the halo of one side (the
        side views of a slab's halo are predicted again by its neighbour, so
        thinner slabs waste work; the bundled model's context is 92 pixels).
    label_margin : int or None
        ``"views"``: planes of probabilities each side of a slab that its 3D
        watershed sees (default: 32 in-plane pixels in planes).
    scale : sequence of float or None
        Recorded pixel size ``(z, y, x)``; default the voxel size.
    memory_budget : int or None
        Bytes one slab with its halo may take (1 GiB by default).
    **postprocess
        ``method``, ``h``, ``smoothing``, ``seed_threshold``, ``link_iou``,
        ``min_volume`` as for :func:`napari_unet.segment`.

    Yields
    ------
    ChunkProgress
        ``"statistics"``, then ``"predict"`` (100 steps per slab, one event per
        batch of tiles, so closing the generator stops within one batch),
        ``"relabel"`` (one step per slab) and ``"done"``.

    Returns
    -------
    ZarrPrediction
        The output, opened lazily.

    Notes
    -----
    ``"linked"``: probabilities equal the in-memory ones, and the labels are the
    same objects (ids in raster order of each object's first voxel). ``"views"``:
    probabilities equal the in-memory ones to float rounding (with square voxels the
    side views' tiles even lie on the same pooling grid; with a Z step unlike the
    pixel size each window is resampled on its own, one plane of extra context
    keeps that within rounding in the tests). The 3D watershed of a slab sees
    ``label_margin`` planes beyond it, so the labels equal the in-memory ones for
    objects the margin covers; a larger object cut by a slab face may be split or
    joined differently there, as with 2D chunks.
    """
    stack = check_stack_mode(stack)
    diameter = postprocess.pop("diameter", None)  # scales the default rule, as in memory
    given = dict(postprocess, threshold=threshold, min_size=min_size)
    opts, tta = _check_arguments(model, stack, given, output, batch_size, tta, z_chunk, diameter)
    threshold, min_size = opts.pop("threshold"), opts.pop("min_size")
    image, source = open_input(model, image)
    axes = _stack_axes(model, image, stack)
    vs, spatial = _voxels(voxel_size, scale, source)
    link_iou, min_volume = take_3d_options(opts, min_size, vs)
    views = _views_labelling(model, stack, opts, threshold)
    geometry = _plan(model, axes, stack, vs, label_margin, z_chunk, memory_budget)
    chunk_px = chunk_shape(model, axes, chunk)
    norm = resolve_normalization(model, normalization)
    total = 1 + (STEPS_PER_SLAB + 1) * len(geometry["slabs"])

    target = open_output(output, overwrite, axes=axes, spatial=spatial, source=source)
    target.source_ref = source_ref(target, source, output)
    stats = yield from _statistics(norm, image, axes.has_channels, total)
    labelling = {
        "stack": stack, "voxel_size": list(vs), "threshold": threshold, "min_size": min_size,
        "min_volume": min_volume, "z_chunk": geometry["z_chunk"], "margin": geometry["margin"],
        "z_context": geometry["context"], "postprocess": dict(postprocess),
    }  # fmt: skip
    meta = start_metadata(
        target, (model, image, norm, stats), chunk_px, None, labelling,
        tta=tta, precision=str(precision), source=source,
    )  # fmt: skip
    local = target.create_array(
        target.label, "_work/local_labels", shape=axes.out_shape(), chunks=(1, *chunk_px),
        dtype="int32",
    )  # fmt: skip
    n_levels = pyramid_levels(axes, chunk_px)
    run = SlabRun(
        model, image, axes, stack, (norm, stats), geometry, total,
        forward=dict(
            tile_shape=tile_shape, batch_size=batch_size, device=device, tta=tta,
            precision=precision,
        ),
        planes=(threshold, min_size, opts, link_iou), views=views, voxel_size=vs,
        prob_levels=(
            create_probability_levels(target, axes, chunk_px, n_levels, model.n_classes)
            if probabilities else []
        ),
    )  # fmt: skip
    results, pairs = yield from segment_slabs(run, local)
    luts, sizes = merge_pairs(results, *pairs, min_volume)
    dtype = label_dtype(len(sizes))
    levels = create_label_levels(target, axes, chunk_px, n_levels, dtype)
    yield from relabel_slabs(run, local, levels, luts, dtype)
    mark_complete(target, meta, axes, chunk_px, n_levels, sizes, dtype, probabilities)
    yield ChunkProgress("done", total, total)
    return read_result(target.root, str(output))


def _check_arguments(
    model: UNet,
    stack: str,
    given: dict,
    output: Any,
    batch_size: int,
    tta: Any,
    z_chunk: Any,
    diameter: float | None = None,
) -> tuple[dict, bool]:
    """The post-processing options resolved for ``stack`` and ``tta``, checked before any work.

    The model's recommendation under the caller's options: the in-memory 3D modes' policy.
    """
    if stack == "planes":
        raise NapariUnetError("Slabs are for 3D objects; use stack='linked' or 'views'.")
    opts = resolve_postprocess(model, given, stack=stack, diameter=diameter)
    threshold, min_size = opts["threshold"], opts["min_size"]
    check_counts(batch_size=batch_size, min_size=min_size)
    tta = check_tta(tta)
    check_destination(output, False, False)
    if z_chunk is not None and (not isinstance(z_chunk, int | np.integer) or z_chunk < 1):
        raise NapariUnetError(f"z_chunk must be a number of planes, 1 or more; got {z_chunk}.")
    if not 0.0 < threshold < 1.0:
        raise NapariUnetError(f"The threshold must be between 0 and 1, got {threshold}.")
    return opts, tta


def _voxels(
    voxel_size: Any, scale: Sequence[float] | None, source: SourceImage | None
) -> tuple[tuple, Spatial]:
    """The voxel size (checked) and the placement the result records.

    The voxel size defaults to ``scale``, else the OME-Zarr image's pixel sizes;
    the recorded scale to the voxel size.
    """
    if voxel_size is None:  # the pixel sizes the image comes with, if any
        voxel_size = scale if scale is not None else source.spatial(3).scale if source else None
    vs = check_voxel_size(voxel_size)
    if scale is None and source is None:
        scale = vs
    return vs, Spatial.plain(3, scale) if scale is not None else source.spatial(3)


def _views_labelling(
    model: UNet, stack: str, opts: dict, threshold: float
) -> ViewsLabelling | None:
    """The views mode's labelling; for linked, the 2D options checked now, not after a slab."""
    if stack == "views":
        return ViewsLabelling.take(dict(opts, threshold=threshold))
    check_postprocess(model.n_classes, threshold, opts)
    return None


def _stack_axes(model: UNet, image: da.Array, stack: str) -> ImageAxes:
    """The axes of a ``(Z, H, W)`` stack (channels first for several); else one sentence."""
    has_channels = int(model.in_channels) > 1
    spatial_shape = tuple(int(s) for s in image.shape[1 if has_channels else 0 :])
    if len(spatial_shape) != 3:
        z_to_front(spatial_shape[-2:] if len(spatial_shape) < 3 else spatial_shape, stack, None)
        raise NapariUnetError(
            f"3D objects on a zarr store need a stack (Z, H, W); got shape {tuple(image.shape)}."
        )
    z_to_front(spatial_shape, stack, None)
    return image_axes(model, image)


def _plan(
    model: UNet,
    axes: ImageAxes,
    stack: str,
    voxel_size: tuple,
    label_margin: int | None,
    z_chunk: int | None,
    memory_budget: int | None,
) -> dict:
    """The resampling factors, the halos, the planes per slab and the slabs."""
    Z, (H, W) = axes.n_planes, axes.shape
    factors = isotropic_factors(voxel_size)
    # windows resample Z by the whole stack's effective factor (its planes are rounded)
    factors = (scaled_shape((Z,), factors[:1])[0] / Z, *factors[1:])
    margin, context = _halos(model, stack, factors, label_margin)
    if z_chunk is None:
        per_plane = H * W * (_BYTES_PER_VOXEL_CLASS * int(model.n_classes) + 4 * axes.n_channels)
        fits = (memory_budget or DEFAULT_SLAB_BUDGET) // max(per_plane, 1)
        # slabs thinner than their halo would predict the halo's side views many
        # times over: at most 3x the work, even if that takes more than the budget
        z_chunk = max(int(fits) - 2 * (margin + context), margin + context, 1)
    z_chunk = min(int(z_chunk), Z)
    return {
        "factors": factors,
        "margin": margin,
        "context": context,
        "z_chunk": z_chunk,
        "slabs": plan_slabs(Z, z_chunk),
    }


def _statistics(
    norm: Normalization, image: da.Array, has_channels: bool, total: int
) -> Generator[ChunkProgress, None, np.ndarray]:
    """The normalisation's statistics of the whole stack, computed once."""
    yield ChunkProgress("statistics", 0, total)
    stats = norm.statistics(image, channel_axis=0 if has_channels else None)
    yield ChunkProgress("statistics", 1, total)
    return stats
