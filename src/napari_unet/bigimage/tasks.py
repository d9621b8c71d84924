"""The work on one chunk, one dask task each: predict it, label it, relabel it.

``predict_tasks``, ``label_tasks`` and ``relabel_tasks`` make one task per chunk.

Every task writes only its own zarr chunks, from inputs no task modifies, so a
task that is run again (dask retrying it after a worker died) writes the same bytes.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask import delayed

from ..normalization import Normalization
from ..postprocess import labels_from_probabilities
from ..tiling import TileGrid, predict_padded
from .chunks import Chunk, ImageAxes, chunk_region, chunk_tile_grid, source_window
from .worker import SharedModel, release_memory, run_forward

__all__ = [
    "core_ids",
    "label_chunk",
    "label_tasks",
    "predict_chunk",
    "predict_tasks",
    "relabel_chunk",
    "relabel_tasks",
]


def predict_chunk(
    shared: SharedModel | Any,
    window: np.ndarray,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    grid: TileGrid,
    chunk: Chunk,
    axes: ImageAxes,
    norm: Normalization,
    stats: np.ndarray,
    device: Any,
    batch_size: int,
    tta: bool,
    precision: str,
    target: zarr.Array,
) -> int:
    """Predict one chunk from its raw ``(C, h, w)`` source window and write its probabilities.

    ``rows``/``cols`` (or None) reorder the window's rows and columns: the mirroring
    at the image border that the in-memory path does by padding. ``tta``: test-time
    augmentation, as in the in-memory path; ``precision`` a resolved one. ``shared``:
    the model, or on a cluster its handle (anything with ``get(device)``).
    """
    model, dev = shared.get(device)
    x = np.asarray(window)
    if rows is not None:  # mirrored at the image border, as the in-memory path pads
        x = np.take(x, rows, axis=-2)
    if cols is not None:
        x = np.take(x, cols, axis=-1)
    x = norm.apply(x, stats, channel_axis=0)
    out = np.empty((model.n_classes, *grid.image_shape), dtype=np.float32)

    def forward() -> None:
        for _ in predict_padded(model, x, grid, batch_size, dev, out, tta=tta, precision=precision):
            pass

    run_forward(dev, forward)
    target[chunk_region(chunk, axes, lead=True)] = out
    release_memory()
    return chunk.index


def core_ids(ext: np.ndarray, core: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Compact ids ``1..n`` for the objects of ``core`` (a view into the labelled window ``ext``).

    Returns
    -------
    tuple
        ``(ids_core, lut, first, n)``: the core relabelled (int32), the lookup table from the
        window's ids (-1 for objects only in the margin), the flat index in ``core`` of each
        object's first pixel, and the number of objects.
    """
    ids, first = np.unique(core, return_index=True)
    if ids.size and ids[0] == 0:
        ids, first = ids[1:], first[1:]
    n = int(ids.size)
    lut = np.full(int(ext.max()) + 1, -1, dtype=np.int64)
    lut[0] = 0
    lut[ids] = np.arange(1, n + 1)
    return lut[core].astype(np.int32), lut, first, n


def label_chunk(
    probabilities: zarr.Array,
    local: zarr.Array,
    chunk: Chunk,
    axes: ImageAxes,
    margin: int,
    threshold: float,
    postprocess: dict,
) -> dict:
    """Label one chunk with ``margin`` pixels of context and write its local ids.

    Returns what the merge (:func:`~napari_unet.bigimage.merge.merge_across_faces`)
    needs: object sizes, first pixels, ids along the faces.
    """
    H, W = axes.shape
    region = chunk_region(chunk, axes, lead=True, margin=margin)
    prob = np.asarray(probabilities[region])
    ext = labels_from_probabilities(prob, threshold=threshold, min_size=0, **postprocess)
    ty, tx = chunk.y0 - region[-2].start, chunk.x0 - region[-1].start
    h, w = chunk.y1 - chunk.y0, chunk.x1 - chunk.x0
    core = ext[ty : ty + h, tx : tx + w]
    ids_core, lut, first, n = core_ids(ext, core)
    local[chunk_region(chunk, axes)] = ids_core
    sizes = np.bincount(ids_core.ravel(), minlength=n + 1)[1:].astype(np.int64)
    plane = chunk.z * H * W
    keys = plane + (chunk.y0 + first // w) * W + (chunk.x0 + first % w)

    def ring(yy: int | None, xx: int | None) -> np.ndarray | None:
        """The window's ids just outside the core (in the core's id space)."""
        if margin == 0:
            return None
        if yy is not None and 0 <= yy < ext.shape[0] and yy not in range(ty, ty + h):
            return lut[ext[yy, tx : tx + w]].astype(np.int32)
        if xx is not None and 0 <= xx < ext.shape[1] and xx not in range(tx, tx + w):
            return lut[ext[ty : ty + h, xx]].astype(np.int32)
        return None

    result = {
        "n": n,
        "sizes": sizes,
        "keys": keys.astype(np.int64),
        # copies: a view would keep the whole chunk alive until the merge
        "faces": {
            "top": (ids_core[0].copy(), ring(ty - 1, None)),
            "bottom": (ids_core[-1].copy(), ring(ty + h, None)),
            "left": (ids_core[:, 0].copy(), ring(None, tx - 1)),
            "right": (ids_core[:, -1].copy(), ring(None, tx + w)),
        },
    }
    release_memory()
    return result


def relabel_chunk(
    local: zarr.Array,
    levels: list,
    chunk: Chunk,
    axes: ImageAxes,
    lut: np.ndarray,
    singleton_axes: tuple = (),
    probabilities: zarr.Array | None = None,
    probability_levels: tuple = (),
) -> int:
    """Write one chunk's global ids at every display level (and its probabilities' levels).

    ``singleton_axes`` are the label arrays' extra axes of size 1 (labels
    written into an image with more axes). ``probability_levels`` are the
    probabilities' levels 1, 2, ..., filled from ``probabilities``.
    """
    final = lut[np.asarray(local[chunk_region(chunk, axes)])]
    prob = None
    if probability_levels:
        prob = np.asarray(probabilities[chunk_region(chunk, axes, lead=True)])
    for k, target in enumerate(levels):
        s = 2**k
        part = final[::s, ::s]
        y0, x0 = chunk.y0 // s, chunk.x0 // s
        idx = axes.plane_index(chunk.z) + (
            slice(y0, y0 + part.shape[0]),
            slice(x0, x0 + part.shape[1]),
        )
        full = list(idx)
        for a in singleton_axes:
            full.insert(a, 0)
        target[tuple(full)] = part
        if prob is not None and k >= 1:
            probability_levels[k - 1][(slice(None), *idx)] = prob[..., ::s, ::s]
    return chunk.index


# --------------------------------------------------------------------------- task graphs


def predict_tasks(
    shared: Any,
    image: da.Array,
    axes: ImageAxes,
    chunks: list[Chunk],
    plan: TileGrid,
    normalization: tuple[Normalization, np.ndarray],
    forward: tuple[str | None, int, bool, str],
    target: zarr.Array,
    run_id: str,
) -> list:
    """One task per chunk: read its mirrored source window, predict, write probabilities.

    ``forward`` is ``(device, batch_size, tta, precision)``.
    """
    norm, stats = normalization
    device, batch_size, tta, precision = forward
    source = image if axes.has_channels else image[None]
    source = source if axes.is_stack else source[:, None]  # (C, Z, H, W)
    tasks = []
    for c in chunks:
        grid = chunk_tile_grid(c, plan)
        window = source_window(c, grid, axes)
        tasks.append(
            delayed(predict_chunk, pure=False)(
                shared,
                source[:, c.z, window.rows, window.cols],
                window.row_order,
                window.col_order,
                grid,
                c,
                axes,
                norm,
                stats,
                device,
                batch_size,
                tta,
                precision,
                target,
                dask_key_name=f"napari-unet-predict-{run_id}-{c.index}",
            )
        )
    return tasks


def label_tasks(
    prob: zarr.Array,
    local: zarr.Array,
    axes: ImageAxes,
    chunks: list[Chunk],
    labelling: dict,
    run_id: str,
) -> list:
    """One task per chunk: label its probabilities (with a margin), write local ids."""
    return [
        delayed(label_chunk, pure=False)(
            prob,
            local,
            c,
            axes,
            labelling["margin"],
            labelling["threshold"],
            dict(labelling["postprocess"]),
            dask_key_name=f"napari-unet-label-{run_id}-{c.index}",
        )
        for c in chunks
    ]


def relabel_tasks(
    local: zarr.Array,
    levels: list,
    axes: ImageAxes,
    chunks: list[Chunk],
    luts: list[np.ndarray],
    dtype: str,
    run_id: str,
    singleton_axes: tuple = (),
    probabilities: tuple = (None, ()),
) -> list:
    """One task per chunk: write its global ids (and probabilities) at every display level.

    ``probabilities`` is the full-resolution array and its coarser levels to fill.
    """
    return [
        delayed(relabel_chunk, pure=False)(
            local,
            levels,
            c,
            axes,
            luts[c.index].astype(dtype),
            tuple(singleton_axes),
            probabilities[0],
            tuple(probabilities[1]),
            dask_key_name=f"napari-unet-relabel-{run_id}-{c.index}",
        )
        for c in chunks
    ]
