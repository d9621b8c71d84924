"""The slabs of a 3D zarr run: each one segmented with its halo, then relabelled.

:mod:`.stack3d` plans the run and writes the store; here a slab is read with its
halo, normalised, predicted (one plane stack, or three views), labelled in 3D,
cropped to its core and its ids written; the ids that continue across a slab face
are paired for the merge, and a last pass writes consecutive ids at every level.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ..events import ChunkProgress
from ..model import UNet
from ..normalization import Normalization
from ..postprocess import labels_from_probabilities
from ..tiling import iter_predict_tiled
from ..volume.linking import link_planes
from ..volume.options import ViewsLabelling
from ..volume.views import iter_predict_views
from .chunks import ImageAxes
from .tasks import core_ids

__all__ = ["STEPS_PER_SLAB", "SlabRun", "relabel_slabs", "segment_slabs"]

#: Progress steps per slab while it is predicted (a slab may take minutes).
STEPS_PER_SLAB = 100


def _zcut(a: np.ndarray, start: int, stop: int, has_channels: bool) -> np.ndarray:
    return a[:, start:stop] if has_channels else a[start:stop]


@dataclass(frozen=True)
class SlabRun:
    """What segmenting the slabs needs, resolved and checked.

    ``normalised`` is the normalisation and its statistics; ``geometry`` the
    plan (``factors``, ``margin``, ``context``, ``z_chunk``, ``slabs``);
    ``planes`` the linked mode's threshold, min_size, 2D options and link IoU;
    ``views`` the views mode's labelling; ``total`` the run's progress steps.
    """

    model: UNet
    image: da.Array
    axes: ImageAxes
    stack: str
    normalised: tuple[Normalization, np.ndarray]
    geometry: dict
    total: int
    forward: dict
    planes: tuple
    views: ViewsLabelling | None
    voxel_size: tuple
    prob_levels: list

    @property
    def slabs(self) -> list[tuple[int, int]]:
        """The slabs ``(z0, z1)``."""
        return self.geometry["slabs"]


def segment_slabs(
    run: SlabRun, local: Any
) -> Generator[ChunkProgress, None, tuple[list[dict], list[np.ndarray]]]:
    """Every slab segmented, its ids written to ``local``; the id pairs across slab faces.

    Returns each slab's part of the merge and the pairs (global ids) of the objects
    that continue across a face.
    """
    yield ChunkProgress("predict", 1, run.total)
    Z, (H, W) = run.axes.n_planes, run.axes.shape
    margin = run.geometry["margin"]
    results, src, dst = [], [], []
    above, above_n, offset = None, 0, 0
    for k, (z0, z1) in enumerate(run.slabs):
        ls, le = max(0, z0 - margin), min(Z, z1 + margin)
        prob, ext = yield from _segment_slab(run, k, ls, le)
        part = _crop_slab(ext, local, z0 - ls, z0, z1, H * W)
        # only the faces between this slab and the last are kept, never all of them
        if above is not None:
            a, b = _touching(above, part["faces"]["top"])
            src.append(offset - above_n + a - 1)
            dst.append(offset + b - 1)
        above, above_n = part.pop("faces")["bottom"], part["n"]
        offset += part["n"]
        results.append(part)
        if run.prob_levels:
            run.prob_levels[0][:, z0:z1] = prob[:, z0 - ls : z1 - ls]
        del prob, ext
        yield ChunkProgress("predict", 1 + STEPS_PER_SLAB * (k + 1), run.total)
    empty = np.zeros(0, np.int64)
    return results, [np.concatenate(src) if src else empty, np.concatenate(dst) if dst else empty]


def _segment_slab(
    run: SlabRun, k: int, ls: int, le: int
) -> Generator[ChunkProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Probabilities and labels of the planes ``ls:le`` (slab ``k`` and its margin)."""
    has_channels = run.axes.has_channels
    ps, pe = ls, le
    if run.stack == "views":
        context, fz = run.geometry["context"], run.geometry["factors"][0]
        ps, pe = _side_window(ls, le, run.axes.n_planes, context, fz, run.model.pooling_factor)
    norm, stats = run.normalised
    window = np.asarray(_zcut(run.image, ps, pe, has_channels))
    window = norm.apply(window, stats, channel_axis=0 if has_channels else None)
    step = (1 + STEPS_PER_SLAB * k, run.total)  # where this slab's steps start, of how many
    if run.stack == "views":
        prob = yield from _predict_views(run, window, (ls - ps, le - ps), step)
        return prob, run.views.label(prob, run.voxel_size, 0)
    threshold, min_size, opts, link_iou = run.planes
    prob = yield from _forward(
        iter_predict_tiled(
            run.model, _zcut(window, ls - ps, le - ps, has_channels), normalization=False,
            **run.forward,
        ),
        step, (0.0, 1.0),
    )  # fmt: skip
    planes = labels_from_probabilities(prob, threshold=threshold, min_size=min_size, **opts)
    return prob, link_planes(planes, iou=link_iou, min_volume=0)


def _predict_views(
    run: SlabRun, window: np.ndarray, core: tuple[int, int], step: tuple[int, int]
) -> Generator[ChunkProgress, None, np.ndarray]:
    """The three views of a slab, averaged; ``window[core]`` is the slab with its margin."""
    has_channels = run.axes.has_channels
    start, stop = core
    prob = None
    for i, view in enumerate(("XY", "XZ", "YZ")):
        part = window if view != "XY" else _zcut(window, start, stop, has_channels)
        p = yield from _forward(
            iter_predict_views(
                run.model, part, has_channels=has_channels, factors=run.geometry["factors"],
                views=(view,), normalization=False, **run.forward,
            ),
            step, (i / 3, (i + 1) / 3),
        )  # fmt: skip
        if view != "XY":
            p = p[:, start:stop]
        # the in-memory order of operations: xy, += xz, += yz, /= 3
        prob = p if prob is None else np.add(prob, p, out=prob)
        del p
    prob /= np.float32(3)
    return prob


def relabel_slabs(
    run: SlabRun, local: Any, levels: list, luts: list, dtype: str
) -> Generator[ChunkProgress, None, None]:
    """Consecutive global ids written at every display level (and the probabilities')."""
    n = len(run.slabs)
    yield ChunkProgress("relabel", 1 + STEPS_PER_SLAB * n, run.total)
    prob_levels = run.prob_levels
    for k, (z0, z1) in enumerate(run.slabs):
        final = luts[k].astype(dtype)[np.asarray(local[z0:z1])]
        for lv, arr in enumerate(levels):
            s = 2**lv
            arr[z0:z1] = final[:, ::s, ::s]
            if lv and prob_levels:
                prob_levels[lv][:, z0:z1] = np.asarray(prob_levels[0][:, z0:z1])[..., ::s, ::s]
        yield ChunkProgress("relabel", 2 + STEPS_PER_SLAB * n + k, run.total)


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
    fraction ``span`` of the slab's :data:`STEPS_PER_SLAB` steps.
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
            yield ChunkProgress(
                "predict", first + min(STEPS_PER_SLAB - 1, int(STEPS_PER_SLAB * frac)), total
            )
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
