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

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError
from ..model import UNet
from ..postprocess import METHODS, labels_from_probabilities, resolve_postprocess
from ..postprocess.rules import keep_confident
from ..tiling import iter_predict_tiled, resolve_normalization
from ..tta import check_tta
from ..volume.axes import check_stack_mode, z_to_front
from ..volume.instances import labels_3d
from ..volume.linking import LINK_IOU, drop_small_3d, link_planes
from ..volume.pipeline import default_min_volume
from ..volume.views import iter_predict_views
from ..volume.voxels import check_voxel_size, isotropic_factors, scaled_shape
from .api import (
    ChunkProgress,
    _check_counts,
    _label_dtype,
    _open_image,
    _run_metadata,
    _source_ref,
    _write_metadata,
)
from .chunks import chunk_shape, image_axes
from .merge import merge_pairs
from .ngff import Spatial
from .output import (
    LABEL_NAME,
    create_label_levels,
    create_probability_levels,
    mark_complete,
    open_output,
    pyramid_levels,
    read_result,
)
from .tasks import core_ids

__all__ = ["iter_predict_stack_to_zarr", "plan_slabs", "DEFAULT_SLAB_BUDGET"]

#: Bytes one slab (with its halo) may take while it is segmented.
DEFAULT_SLAB_BUDGET = 1 << 30
#: Planes of probabilities around a "views" slab that its 3D watershed sees, in
#: in-plane pixels (converted to planes by the voxel size); as 2D's label margin.
VIEWS_LABEL_MARGIN = 32
# progress steps per slab while it is predicted (a slab may take minutes)
_SUB = 100
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


def _zcut(a: np.ndarray, start: int, stop: int, has_channels: bool) -> np.ndarray:
    return a[:, start:stop] if has_channels else a[start:stop]


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
) -> Generator[ChunkProgress, None, Any]:
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
    if stack == "planes":
        raise NapariUnetError("Slabs are for 3D objects; use stack='linked' or 'views'.")
    # the model's recommendation under the caller's options: the in-memory 3D modes' policy
    opts = resolve_postprocess(
        model, dict(postprocess, threshold=threshold, min_size=min_size), stack=stack
    )
    threshold, min_size = opts.pop("threshold"), opts.pop("min_size")
    _check_counts(batch_size=batch_size, min_size=min_size)
    tta = check_tta(tta)
    if output is None:
        raise NapariUnetError("Name the zarr store to write the result to.")
    if z_chunk is not None and (not isinstance(z_chunk, int | np.integer) or z_chunk < 1):
        raise NapariUnetError(f"z_chunk must be a number of planes, 1 or more; got {z_chunk}.")
    if not 0.0 < threshold < 1.0:
        raise NapariUnetError(f"The threshold must be between 0 and 1, got {threshold}.")
    image, source = _open_image(model, image)
    has_channels = int(model.in_channels) > 1
    spatial_shape = tuple(int(s) for s in image.shape[1 if has_channels else 0 :])
    if len(spatial_shape) != 3:
        z_to_front(spatial_shape[-2:] if len(spatial_shape) < 3 else spatial_shape, stack, None)
        raise NapariUnetError(
            f"3D objects on a zarr store need a stack (Z, H, W); got shape {tuple(image.shape)}."
        )
    z_to_front(spatial_shape, stack, None)
    axes = image_axes(model, image)
    if voxel_size is None:  # the pixel sizes the image comes with, if any
        voxel_size = scale if scale is not None else source.spatial(3).scale if source else None
    vs = check_voxel_size(voxel_size)
    link_iou = float(opts.pop("link_iou", LINK_IOU))
    min_volume = opts.pop("min_volume", None)
    min_volume = default_min_volume(min_size, vs) if min_volume is None else int(min_volume)
    if min_volume < 0:
        raise NapariUnetError(f"min_volume must be 0 or more, got {min_volume}.")
    if stack == "views":
        method = opts.pop("method")
        if method not in METHODS:
            raise NapariUnetError(f"Unknown method {method!r}; use {' or '.join(METHODS)}.")
        h3, smooth3 = float(opts.pop("h")), float(opts.pop("smoothing"))
        seed_threshold = opts.pop("seed_threshold")
        min_confidence = float(opts.pop("min_confidence"))
        if opts:
            raise NapariUnetError(f"Unknown option(s) for 3D objects: {', '.join(sorted(opts))}.")
    else:
        labels_from_probabilities(  # the 2D options, checked now rather than after a slab
            np.full((model.n_classes, 1, 1), 1.0 / model.n_classes, np.float32),
            threshold=threshold,
            min_size=0,
            **opts,
        )
    if scale is None and source is None:
        scale = vs
    spatial = Spatial.plain(3, scale) if scale is not None else source.spatial(3)
    Z, (H, W) = axes.n_planes, axes.shape
    factors = isotropic_factors(vs)
    # windows resample Z by the whole stack's effective factor (its planes are rounded)
    factors = (scaled_shape((Z,), factors[:1])[0] / Z, *factors[1:])
    margin, context = _halos(model, stack, factors, label_margin)
    K = int(model.n_classes)
    if z_chunk is None:
        per_plane = H * W * (_BYTES_PER_VOXEL_CLASS * K + 4 * axes.n_channels)
        fits = (memory_budget or DEFAULT_SLAB_BUDGET) // max(per_plane, 1)
        # slabs thinner than their halo would predict the halo's side views many
        # times over: at most 3x the work, even if that takes more than the budget
        z_chunk = max(int(fits) - 2 * (margin + context), margin + context, 1)
    z_chunk = min(int(z_chunk), Z)
    slabs = plan_slabs(Z, z_chunk)
    n = len(slabs)
    chunk_px = chunk_shape(model, axes, chunk)
    norm = resolve_normalization(model, normalization)
    total = 1 + _SUB * n + n

    target = open_output(output, overwrite, axes=axes, spatial=spatial, source=source)
    target.source_ref = _source_ref(target, source, output)
    yield ChunkProgress("statistics", 0, total)
    stats = norm.statistics(image, channel_axis=0 if has_channels else None)
    yield ChunkProgress("statistics", 1, total)
    labelling = {
        "stack": stack,
        "voxel_size": list(vs),
        "threshold": threshold,
        "min_size": min_size,
        "min_volume": min_volume,
        "z_chunk": z_chunk,
        "margin": margin,
        "z_context": context,
        "postprocess": dict(postprocess),
    }
    meta = _run_metadata(model, image, norm, stats, chunk_px, None, labelling, tta)
    meta["precision"] = str(precision)
    if source is not None:
        meta["source_image"] = str(source.path)
    _write_metadata(target, meta)
    local = target.create_array(
        target.label,
        "_work/local_labels",
        shape=(Z, H, W),
        chunks=(1, *chunk_px),
        dtype="int32",
    )
    n_levels = pyramid_levels(axes, chunk_px)
    prob_levels = []
    if probabilities:
        prob_levels = create_probability_levels(target, axes, chunk_px, n_levels, K)
    forward = dict(
        tile_shape=tile_shape, batch_size=batch_size, device=device, tta=tta, precision=precision
    )

    yield ChunkProgress("predict", 1, total)
    results, src, dst = [], [], []
    above, above_n, offset = None, 0, 0
    for k, (z0, z1) in enumerate(slabs):
        ls, le = max(0, z0 - margin), min(Z, z1 + margin)
        ps, pe = ls, le
        if stack == "views":
            ps, pe = _side_window(ls, le, Z, context, factors[0], model.pooling_factor)
        window = np.asarray(_zcut(image, ps, pe, has_channels))
        window = norm.apply(window, stats, channel_axis=0 if has_channels else None)
        step = (1 + _SUB * k, total)  # where this slab's steps start, of how many
        if stack == "linked":
            prob = yield from _forward(
                iter_predict_tiled(
                    model, _zcut(window, ls - ps, le - ps, has_channels), normalization=False,
                    **forward,
                ),
                step, (0.0, 1.0),
            )  # fmt: skip
            planes = labels_from_probabilities(prob, threshold=threshold, min_size=min_size, **opts)
            ext = link_planes(planes, iou=link_iou, min_volume=0)
        else:
            prob = None
            for i, view in enumerate(("XY", "XZ", "YZ")):
                part = window if view != "XY" else _zcut(window, ls - ps, le - ps, has_channels)
                p = yield from _forward(
                    iter_predict_views(
                        model, part, has_channels=has_channels, factors=factors,
                        views=(view,), normalization=False, **forward,
                    ),
                    step, (i / 3, (i + 1) / 3),
                )  # fmt: skip
                if view != "XY":
                    p = p[:, ls - ps : le - ps]
                # the in-memory order of operations: xy, += xz, += yz, /= 3
                prob = p if prob is None else np.add(prob, p, out=prob)
                del p
            prob /= np.float32(3)
            fg = np.subtract(np.float32(1.0), prob[0])
            if method == "components":
                ext = drop_small_3d(ndi.label(fg > threshold)[0], 0)
            else:
                s = min(vs[1], vs[2])
                ext = labels_3d(
                    fg,
                    threshold=threshold,
                    sampling=[v / s for v in vs],
                    min_volume=0,
                    h=h3,
                    smoothing=smooth3,
                    seed_threshold=seed_threshold,
                )
            ext = keep_confident(ext, fg, min_confidence)
            del fg
        part = _crop_slab(ext, local, z0 - ls, z0, z1, H * W)
        # only the faces between this slab and the last are kept, never all of them
        if above is not None:
            a, b = _touching(above, part["faces"]["top"])
            src.append(offset - above_n + a - 1)
            dst.append(offset + b - 1)
        above, above_n = part.pop("faces")["bottom"], part["n"]
        offset += part["n"]
        results.append(part)
        if prob_levels:
            prob_levels[0][:, z0:z1] = prob[:, z0 - ls : z1 - ls]
        del prob, ext, window
        yield ChunkProgress("predict", 1 + _SUB * (k + 1), total)

    empty = np.zeros(0, np.int64)
    pairs = [np.concatenate(src) if src else empty, np.concatenate(dst) if dst else empty]
    luts, sizes = merge_pairs(results, *pairs, min_volume)
    dtype = _label_dtype(len(sizes))
    levels = create_label_levels(target, axes, chunk_px, n_levels, dtype)
    yield ChunkProgress("relabel", 1 + _SUB * n, total)
    for k, (z0, z1) in enumerate(slabs):
        final = luts[k].astype(dtype)[np.asarray(local[z0:z1])]
        for lv, arr in enumerate(levels):
            s = 2**lv
            arr[z0:z1] = final[:, ::s, ::s]
            if lv and prob_levels:
                prob_levels[lv][:, z0:z1] = np.asarray(prob_levels[0][:, z0:z1])[..., ::s, ::s]
        yield ChunkProgress("relabel", 2 + _SUB * n + k, total)
    mark_complete(target, meta, axes, chunk_px, n_levels, sizes, dtype, probabilities)
    yield ChunkProgress("done", total, total)
    return read_result(target.root, str(output))


def _side_window(
    start: int, stop: int, n_planes: int, context: int, fz: float, pooling: int
) -> tuple[int, int]:
    """Planes the side views of a slab read: ``start:stop`` plus ``context`` each side.

    Moved outwards, when a few planes allow it, so that the window starts on the
    network's pooling grid of the whole resampled stack and resamples to a whole
    number of planes: its side-view tiles then compute what the whole stack's do.
    """
    lo, hi = max(0, start - context), min(n_planes, stop + context)

    def whole(x: float) -> bool:
        return abs(x - round(x)) < 1e-6

    span = max(8 * pooling, 2 * context)
    for ps in range(lo, max(-1, lo - span), -1):
        if whole(ps * fz) and round(ps * fz) % pooling == 0:
            lo = ps
            break
    for pe in range(hi, min(n_planes, hi + span) + 1):
        if pe == n_planes or whole((pe - lo) * fz):
            return lo, pe
    return lo, hi


def _forward(
    gen: Generator, step: tuple[int, int], span: tuple[float, float]
) -> Generator[ChunkProgress, None, Any]:
    """Run a tile generator, yielding progress after each batch (cancel points); its result.

    ``step`` is the slab's first step and the run's total; the tiles fill the
    fraction ``span`` of the slab's :data:`_SUB` steps.
    """
    first, total = step
    lo, hi = span
    try:
        while True:
            try:
                tiles = next(gen)
            except StopIteration as stop:
                return stop.value
            frac = lo + (hi - lo) * min(1.0, tiles.done / max(tiles.total, 1))
            yield ChunkProgress("predict", first + min(_SUB - 1, int(_SUB * frac)), total)
    finally:
        gen.close()


def _touching(above: tuple, below: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Id pairs (slab above, slab below) that are one object across their face.

    As for 2D chunks: the ids meet across the face, and either slab, seeing the
    other side in its margin, labelled them as one object.
    """
    p, ring_a = above
    q, ring_b = below
    touch = (p > 0) & (q > 0) & ((ring_a == p) | (ring_b == q))
    return p[touch].astype(np.int64), q[touch].astype(np.int64)


def _crop_slab(ext: np.ndarray, local: Any, top: int, z0: int, z1: int, plane: int) -> dict:
    """Crop a slab's labels to its core, write its compact ids, return what the merge needs.

    ``ext`` covers the slab and its margin, the core starting at plane ``top``;
    as :func:`~napari_unet.bigimage.tasks.label_chunk` does for a 2D chunk, along Z.
    """
    core = ext[top : top + (z1 - z0)]
    ids_core, lut, first, n = core_ids(ext, core)
    local[z0:z1] = ids_core
    sizes = np.bincount(ids_core.ravel(), minlength=n + 1)[1:].astype(np.int64)

    def ring(z: int) -> np.ndarray | None:
        """The margin's ids in the plane just outside the core, in the core's id space."""
        if 0 <= z < ext.shape[0]:
            return lut[ext[z]].astype(np.int32)
        return None

    return {
        "n": n,
        "sizes": sizes,
        "keys": (z0 * plane + first).astype(np.int64),
        "faces": {
            "top": (ids_core[0].copy(), ring(top - 1)),
            "bottom": (ids_core[-1].copy(), ring(top + z1 - z0)),
        },
    }
