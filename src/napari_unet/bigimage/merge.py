"""The id merge: objects that meet across chunk faces become one, with global ids."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .chunks import Chunk

__all__ = ["merge_across_faces", "merge_pairs"]

# the face of a chunk and the face of its neighbour below / to the right that it meets
_NEIGHBOURS = (((1, 0), ("bottom", "top")), ((0, 1), ("right", "left")))


def merge_across_faces(
    results: list[dict], chunks: list[Chunk], margin: int, min_size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Union-find over ids that meet across chunk faces.

    ``results`` are what :func:`~napari_unet.bigimage.tasks.label_chunk` returned,
    one per chunk. Returns per-chunk lookup tables (local id -> global id, 0 for
    a dropped object) and the number of objects. Objects smaller than
    ``min_size`` (whole, after merging) are dropped; ids are consecutive, in
    raster order of each object's first pixel, as scipy.ndimage.label numbers them.
    """
    offsets = np.cumsum([0] + [r["n"] for r in results])
    if int(offsets[-1]) == 0:
        return [np.zeros(1, dtype=np.int64) for _ in results], np.zeros(0, dtype=np.int64)
    src, dst = _touching_pairs(results, chunks, offsets, margin)
    return merge_pairs(results, src, dst, min_size)


def merge_pairs(
    results: list[dict], src: np.ndarray, dst: np.ndarray, min_size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Global ids from pieces joined by the pairs ``src``-``dst`` (global node numbers).

    ``results`` give each part's ``n``, ``sizes`` and ``keys``; nodes are numbered
    part after part. Returns what :func:`merge_across_faces` returns.
    """
    offsets = np.cumsum([0] + [r["n"] for r in results])
    n_nodes = int(offsets[-1])
    if n_nodes == 0:
        return [np.zeros(1, dtype=np.int64) for _ in results], np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n_nodes, n_nodes))
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.concatenate([r["sizes"] for r in results])
    keys = np.concatenate([r["keys"] for r in results])
    comp_size = np.bincount(comp, weights=sizes, minlength=n_comp).astype(np.int64)
    comp_key = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_key, comp, keys)
    kept = np.flatnonzero(comp_size >= max(min_size, 1))
    order = kept[np.argsort(comp_key[kept], kind="stable")]
    new_id = np.zeros(n_comp, dtype=np.int64)
    new_id[order] = np.arange(1, order.size + 1)
    luts = [
        np.concatenate([[0], new_id[comp[offsets[i] : offsets[i + 1]]]])
        for i in range(len(results))
    ]
    return luts, comp_size[order]


def _touching_pairs(
    results: list[dict], chunks: list[Chunk], offsets: np.ndarray, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Global node numbers of the id pairs that are one object across a face."""
    where = {(c.z, c.i, c.j): c.index for c in chunks}
    src, dst = [], []
    for c in chunks:
        a = results[c.index]
        for (di, dj), (face_a, face_b) in _NEIGHBOURS:
            k = where.get((c.z, c.i + di, c.j + dj))
            if k is None:
                continue
            b = results[k]
            p, ring_a = a["faces"][face_a]
            q, ring_b = b["faces"][face_b]
            touch = (p > 0) & (q > 0)
            if margin > 0:
                # one object if either chunk, seeing both sides of the face, says so
                touch &= (ring_a == p) | (ring_b == q)
            src.append(offsets[c.index] + p[touch] - 1)
            dst.append(offsets[k] + q[touch] - 1)
    s = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
    d = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
    return s, d
