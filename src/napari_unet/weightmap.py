"""The U-Net loss weight map, and helpers that find and cut contacts between cells.

Ronneberger et al. (2015) weigh each pixel's cross-entropy term by::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

where ``w_c`` balances the class frequencies and ``d1``, ``d2`` are the distances from
background pixel ``x`` to the nearest and the second-nearest cell. The second term makes
the thin background gaps between touching cells weigh heavily.

How it is computed: the term is below ``_TRUNCATION`` wherever ``d1 + d2`` exceeds the
cut-off ``sigma * sqrt(2 * ln(w0 / _TRUNCATION))``, so only cells within that distance
matter. A separable, exact "two nearest distinct cells" transform finds them: a vertical
scan keeps, for every pixel, the two nearest pixels of different cells in its column,
and a horizontal search combines the columns within the cut-off, stopping as soon as no
column further away can change the result. It costs less than one scipy distance
transform of the image, whatever the number of cells (benchmarks/bench_weightmap.py).
The kernel is compiled with numba and cached on disk after the first call.

Stacks ``(Z or T, H, W)`` are handled plane by plane: distances never cross planes.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit
from scipy import ndimage as ndi

from .errors import NapariUnetError
from .paper import SIGMA, W0

__all__ = ["carve_gaps", "touching_cells", "touching_pairs", "unet_weight_map", "warm_up"]

# Largest error the cut-off may add to the border term. It sits well below the promised
# 1e-3 absolute accuracy so that float32 rounding of the result fits in the rest.
_TRUNCATION = 1e-4

# Threads for the kernel (the CPUs this process may use), and the image size below which
# splitting an image into bands costs more than it saves.
_N_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_N_THREADS = max(1, _N_THREADS or 1)
_MIN_PARALLEL_PIXELS = 128 * 128

# Pixels touch when they are 4-connected neighbours, the connectivity with which
# postprocess.labels_from_probabilities turns the foreground into cells: a diagonal
# contact does not merge two cells there. As (pixel, neighbour) slices: right, down.
_NEIGHBOUR_PAIRS = (
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
)


def unet_weight_map(
    labels: np.ndarray,
    w0: float = W0,
    sigma: float = SIGMA,
    class_weights: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Per-pixel loss weights of the U-Net paper, from an instance label image.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``, where ``d1`` and
    ``d2`` are the Euclidean distances in pixels from ``x`` to the nearest pixel of the
    nearest cell and of the second-nearest cell. The border term applies to background
    pixels only and is 0 in a plane with fewer than two cells. It is accurate to 1e-3
    absolute on every pixel, for any ``w0`` and ``sigma``.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels, ``(H, W)`` or a stack ``(Z or T, H, W)`` handled plane by plane.
        0 is background and every cell has its own positive id; ids need not be
        consecutive and may be any size the integer dtype holds. Floats are accepted
        when they hold whole numbers. A boolean image is a foreground mask, not instance
        data: each of its 4-connected components counts as one cell, which is what such
        a mask can say about separate objects.
    w0 : float
        Height of the border term (10 in the paper); 0 turns it off.
    sigma : float
        Width of the border term, in pixels (about 5 in the paper).
    class_weights : (float, float) or None
        ``(w_background, w_foreground)`` used as ``w_c`` directly. ``None`` balances the
        classes by frequency: each class gets ``N / (2 * N_class)``, with ``N`` the
        number of annotated pixels of the whole array and ``N_class`` those of the
        class, so ``w_c`` averages to 1 over the annotated pixels. If one class is
        absent, the present class gets 1, which keeps that average.
    mask : numpy.ndarray or None
        Annotated region, same shape as ``labels``; nonzero means annotated. Pixels
        outside it get weight 0 (they carry no loss) and are left out of the class
        frequencies. Distances are still measured to every labelled cell.

    Returns
    -------
    numpy.ndarray
        float32 weights of the shape of ``labels``.

    Raises
    ------
    NapariUnetError
        If the labels are not 2-D or 3-D, hold negative or fractional values, if
        ``sigma <= 0``, ``w0 < 0``, the class weights are not two non-negative numbers,
        or the mask's shape differs from the labels'.
    """
    original = _checked_labels(labels)
    if not (_is_real(sigma) and math.isfinite(sigma) and sigma > 0):
        raise NapariUnetError(f"sigma must be a positive number of pixels, got {sigma!r}.")
    if not (_is_real(w0) and math.isfinite(w0) and w0 >= 0):
        raise NapariUnetError(f"w0 must be zero or a positive number, got {w0!r}.")
    sigma, w0 = float(sigma), float(w0)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != original.shape:
            raise NapariUnetError(
                f"The mask has shape {mask.shape} but the labels have shape "
                f"{original.shape}; they must match."
            )
        mask = mask.astype(bool, copy=False)

    planes = _instance_planes(original)
    w_bg, w_fg = _class_weights(planes, class_weights, mask)

    # Beyond this d1 + d2 the border term is below _TRUNCATION and is left out.
    cutoff = sigma * math.sqrt(2.0 * math.log(w0 / _TRUNCATION)) if w0 > _TRUNCATION else 0.0
    out = np.empty(planes.shape, dtype=np.float32)
    inv_two_sigma_sq = 1.0 / (2.0 * sigma * sigma)

    def fill(task: tuple[int, int, int]) -> None:
        p, i0, i1 = task
        _weight_rows(planes[p], out[p], i0, i1, w_bg, w_fg, w0, inv_two_sigma_sq, cutoff)

    # The kernel releases the GIL, so threads share the tasks, this one included.
    pending = _row_bands(planes.shape, cutoff)[::-1]

    def work() -> None:
        while pending:
            try:
                task = pending.pop()  # atomic: no two threads get the same task
            except IndexError:
                return
            fill(task)

    n_helpers = min(_N_THREADS, len(pending)) - 1
    helpers = [_thread_pool().submit(work) for _ in range(n_helpers)]
    work()
    for helper in helpers:
        helper.result()
    out = out.reshape(original.shape)
    if mask is not None:
        out[~mask] = 0.0
    return out


def touching_cells(labels: np.ndarray) -> np.ndarray:
    """Pixels where two different cells touch with no background between them.

    Two pixels touch when they are 4-connected neighbours (share an edge), the
    connectivity with which :func:`napari_unet.labels_from_probabilities` turns a
    predicted foreground into cells: cells meeting only at a corner stay apart there,
    cells sharing an edge would merge. Both pixels of each contact are marked. Stacks
    are handled plane by plane.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels as for :func:`unet_weight_map`. In a boolean image every
        component is one cell, so nothing touches.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the shape of ``labels``.
    """
    original = _checked_labels(labels)
    planes = _instance_planes(original)
    touching = np.zeros(planes.shape, dtype=bool)
    for plane, out in zip(planes, touching):
        for here, there in _NEIGHBOUR_PAIRS:
            a, b = plane[here], plane[there]
            contact = (a != b) & (a != 0) & (b != 0)
            out[here] |= contact
            out[there] |= contact
    return touching.reshape(original.shape)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels now, on a tiny image.

    The first call in a process otherwise pays this (0.3 s from the cache, seconds
    on first use after installation) while holding the GIL; the napari docks call
    this from a worker thread when they open, before anyone is painting.
    """
    tiny = np.zeros((8, 8), dtype=np.int64)
    tiny[1:3, 1:3], tiny[5:7, 5:7] = 1, 2
    unet_weight_map(tiny)
    unet_weight_map(tiny, mask=np.ones(tiny.shape, bool))


def touching_pairs(labels: np.ndarray) -> np.ndarray:
    """The pairs of cell ids that touch (see :func:`touching_cells`), over all planes.

    Returns
    -------
    numpy.ndarray
        ``(k, 2)`` array of id pairs, smaller id first, each pair once.
    """
    original = _checked_labels(labels)
    pairs = []
    for plane in _instance_planes(original):
        for here, there in _NEIGHBOUR_PAIRS:
            a, b = plane[here], plane[there]
            contact = (a != b) & (a != 0) & (b != 0)
            if contact.any():
                ab = np.stack([a[contact], b[contact]], axis=1)
                pairs.append(np.sort(ab, axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=original.dtype)
    return np.unique(np.concatenate(pairs), axis=0)


def carve_gaps(labels: np.ndarray) -> np.ndarray:
    """Copy of ``labels`` with a 1-pixel background gap wherever two cells touch.

    At each contact (see :func:`touching_cells`) the larger cell gives up its contact
    pixels (ties go to the higher id), so small cells keep theirs and the gap is one
    pixel wide; a cell vanishes only if every one of its pixels touches a smaller cell.
    Remaining pixels keep their ids; the input is never modified. Afterwards
    :func:`touching_cells` is False everywhere.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels as for :func:`unet_weight_map`.

    Returns
    -------
    numpy.ndarray
        New array of the same shape and dtype.
    """
    original = _checked_labels(labels)
    planes = _instance_planes(original)
    carve = np.zeros(planes.shape, dtype=bool)
    for plane, out in zip(planes, carve):
        ids, inverse, counts = np.unique(plane, return_inverse=True, return_counts=True)
        if original.dtype == np.uint64:
            ids = ids.view(np.uint64)  # undo the int64 view, so ties go to the higher id
        # Rank of each cell by (area, id); a pixel yields to a lower-ranked neighbour.
        rank_of_id = np.empty(len(ids), dtype=np.int64)
        rank_of_id[np.lexsort((ids, counts))] = np.arange(len(ids))
        rank = rank_of_id[inverse.reshape(plane.shape)]
        for here, there in _NEIGHBOUR_PAIRS:
            a, b = plane[here], plane[there]
            contact = (a != b) & (a != 0) & (b != 0)
            higher = rank[here] > rank[there]
            out[here] |= contact & higher
            out[there] |= contact & ~higher
    result = original.copy()
    result[carve.reshape(original.shape)] = 0
    return result


@functools.cache
def _thread_pool() -> ThreadPoolExecutor:
    """Helper threads for the calling one, started once: starting them per call costs more."""
    return ThreadPoolExecutor(
        max_workers=max(1, _N_THREADS - 1), thread_name_prefix="napari-unet-weights"
    )


def _row_bands(shape: tuple[int, int, int], cutoff: float) -> list[tuple[int, int, int]]:
    """``(plane, first row, end row)`` tasks: one per plane, or a few bands per thread."""
    n_planes, h, w = shape
    if _N_THREADS == 1 or n_planes >= _N_THREADS or h * w < _MIN_PARALLEL_PIXELS:
        return [(p, 0, h) for p in range(n_planes)]
    # Each band rescans `cutoff` rows above and below it; keep that overhead small.
    n_bands = max(1, min(2 * _N_THREADS, int(h // max(4.0 * cutoff, 16.0))))
    edges = np.linspace(0, h, n_bands + 1).astype(int)
    return [(p, int(a), int(b)) for p in range(n_planes) for a, b in zip(edges[:-1], edges[1:])]


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _checked_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as an array, after checking it is a 2-D or 3-D non-negative label image."""
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise NapariUnetError(
            f"Labels must be an image (H, W) or a stack of images (Z or T, H, W), "
            f"got {arr.ndim} dimension(s)."
        )
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise NapariUnetError("Labels must be whole numbers, but this float image is not.")
        if arr.size and arr.max() >= 2.0**63:
            raise NapariUnetError("Float labels must stay below 2**63 to be read as ids.")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise NapariUnetError(f"Labels must be an integer image, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.signedinteger) or np.issubdtype(arr.dtype, np.floating):
        if arr.size and arr.min() < 0:
            raise NapariUnetError(
                "Labels must not be negative: 0 is background and each cell has a positive id."
            )
    return arr


def _instance_planes(arr: np.ndarray) -> np.ndarray:
    """Checked labels as a C-contiguous int64 stack ``(P, H, W)`` the kernels can read."""
    stack = arr if arr.ndim == 3 else arr[np.newaxis]
    if stack.dtype == bool:
        components = np.empty(stack.shape, dtype=np.int64)
        for plane, out in zip(stack, components):
            out[...] = ndi.label(plane)[0]  # 4-connected, as in postprocess
        return components
    if stack.dtype == np.uint64:
        # Ids are only compared for equality, which the int64 view keeps, even >= 2**63.
        return np.ascontiguousarray(stack).view(np.int64)
    return np.ascontiguousarray(stack, dtype=np.int64)


def _class_weights(
    planes: np.ndarray, class_weights: Sequence[float] | None, mask: np.ndarray | None
) -> tuple[float, float]:
    """``(w_background, w_foreground)``, given or balanced over the annotated pixels."""
    if class_weights is not None:
        try:
            weights = np.asarray(class_weights, dtype=np.float64)
        except (TypeError, ValueError):
            weights = np.empty(0)
        if weights.shape != (2,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise NapariUnetError(
                "class_weights must be two non-negative numbers: (background, foreground)."
            )
        return float(weights[0]), float(weights[1])
    if mask is None:
        n = planes.size
        n_fg = int(np.count_nonzero(planes))
    else:
        annotated = mask.reshape(planes.shape)
        n = int(np.count_nonzero(annotated))
        n_fg = int(np.count_nonzero(planes[annotated]))
    n_bg = n - n_fg
    if n_bg == 0 or n_fg == 0:
        return 1.0, 1.0
    return n / (2.0 * n_bg), n / (2.0 * n_fg)


# Squared distance meaning "no cell within reach"; far above any real one.
_FAR = np.int64(1) << np.int64(62)


@njit(cache=True, nogil=True)
def _weight_rows(lab, out, i0, i1, w_bg, w_fg, w0, inv_two_sigma_sq, cutoff):  # pragma: no cover
    """Fill rows ``i0:i1`` of ``out`` with ``w_c`` plus the border term, for int64 labels.

    Exactness rests on two facts. (1) In each column, only the nearest pixels of the two
    nearest distinct cells can matter to a pixel: any third cell of that column is beaten
    there by two distinct cells, one of which is not the pixel's nearest. (2) A column at
    horizontal offset ``dj`` adds only squared distances >= ``dj**2``, so the search
    outwards stops once that cannot change the two nearest, or once ``d1 + d2`` is sure
    to exceed the cut-off. (3) ``d1`` is 1-Lipschitz, so a pixel whose left or upper
    neighbour is known to lie more than half the cut-off plus one from every cell is
    skipped: its term is negligible. Rows farther than the cut-off never matter, so a
    band of rows needs only that margin above and below it: bands run independently.
    """
    h, w = lab.shape
    reach = min(int(cutoff), h + w)  # largest offset, in pixels, that can still matter
    half = 0.5 * cutoff

    # Upward scan: rows of the nearest foreground pixel at or below each pixel and of the
    # nearest one below it that belongs to another cell (-1: none).
    below1 = np.empty((i1 - i0, w), np.int32)
    below2 = np.empty((i1 - i0, w), np.int32)
    row1 = np.full(w, -1, np.int32)
    row2 = np.full(w, -1, np.int32)
    id1 = np.zeros(w, np.int64)
    id2 = np.zeros(w, np.int64)
    for i in range(min(h, i1 + reach) - 1, i0 - 1, -1):
        for j in range(w):
            v = lab[i, j]
            if v != 0:
                if row1[j] >= 0 and id1[j] != v:
                    row2[j] = row1[j]
                row1[j] = i
                id1[j] = v
        if i < i1:
            for j in range(w):  # loops, not slice assignments: those compile slowly
                below1[i - i0, j] = row1[j]
                below2[i - i0, j] = row2[j]

    # Downward scan with the same state for "at or above"; per row, both sides merge into
    # the squared vertical distances and ids of the two nearest distinct cells of each
    # column within reach (_FAR: none).
    for j in range(w):
        row1[j] = -1
        row2[j] = -1
        id1[j] = 0
    g1 = np.empty(w, np.int64)
    c1 = np.empty(w, np.int64)
    g2 = np.empty(w, np.int64)
    c2 = np.empty(w, np.int64)
    near_above = np.zeros(w)  # lower bounds on d1 in the row above (0: unknown)
    for i in range(max(0, i0 - reach), i1):
        for j in range(w):
            v = lab[i, j]
            if v != 0:
                if row1[j] >= 0 and id1[j] != v:
                    row2[j] = row1[j]
                    id2[j] = id1[j]
                row1[j] = i
                id1[j] = v
        if i < i0:
            continue
        for j in range(w):
            v = lab[i, j]
            if v != 0:
                # The pixel's own cell is nearest; the second is the nearer of the other
                # cells just above and just below.
                g1[j] = 0
                c1[j] = v
                up2 = _square_within(i - row2[j], row2[j], reach)
                r = below2[i - i0, j]
                down2 = _square_within(r - i, r, reach)
                if up2 <= down2:
                    g2[j] = up2
                    c2[j] = id2[j]
                else:
                    g2[j] = down2
                    c2[j] = lab[r, j]
                continue
            up1 = _square_within(i - row1[j], row1[j], reach)
            up2 = _square_within(i - row2[j], row2[j], reach)
            r = below1[i - i0, j]
            down1 = _square_within(r - i, r, reach)
            dn_id1 = lab[r, j] if r >= 0 else 0
            r = below2[i - i0, j]
            down2 = _square_within(r - i, r, reach)
            dn_id2 = lab[r, j] if r >= 0 else 0
            if up1 <= down1:
                g1[j] = up1
                c1[j] = id1[j]
                other, other_id = (down1, dn_id1) if dn_id1 != id1[j] else (down2, dn_id2)
                if up2 <= other:
                    g2[j] = up2
                    c2[j] = id2[j]
                else:
                    g2[j] = other
                    c2[j] = other_id
            else:
                g1[j] = down1
                c1[j] = dn_id1
                other, other_id = (up1, id1[j]) if id1[j] != dn_id1 else (up2, id2[j])
                if down2 <= other:
                    g2[j] = down2
                    c2[j] = dn_id2
                else:
                    g2[j] = other
                    c2[j] = other_id

        # Horizontal search: each background pixel combines the columns around it.
        near_left = 0.0  # lower bound on d1 of the pixel to the left
        for j0 in range(w):
            if lab[i, j0] != 0:
                out[i, j0] = w_fg
                near_left = 0.0
                near_above[j0] = 0.0
                continue
            # d1 changes by at most 1 between neighbours: deep in the background, the
            # bounds of the left and upper neighbours can show the term is negligible.
            near = max(near_left, near_above[j0]) - 1.0
            if near > half:
                out[i, j0] = w_bg
                near_left = near
                near_above[j0] = near
                continue
            b1 = _FAR
            b2 = _FAR
            l1 = np.int64(0)
            l2 = np.int64(0)
            dj = 0
            while dj <= reach:
                dj_sq = np.int64(dj) * np.int64(dj)
                if dj_sq > b2:
                    break  # every remaining candidate is farther than both found
                # Past half the cut-off, a new candidate could only enter a pair whose sum
                # exceeds the cut-off, so the term is negligible. Go on only while no cell
                # is nearer than dj: that raises the bound that lets neighbours skip.
                if dj > half and dj > cutoff - math.sqrt(b1) and dj_sq > b1:
                    break
                for j in (j0 - dj, j0 + dj):
                    if j < 0 or j >= w or (dj == 0 and j > j0) or g1[j] == _FAR:
                        continue
                    b1, l1, b2, l2 = _insert(dj_sq + g1[j], c1[j], b1, l1, b2, l2)
                    if g2[j] < _FAR:
                        b1, l1, b2, l2 = _insert(dj_sq + g2[j], c2[j], b1, l1, b2, l2)
                dj += 1
            # Columns closer than dj are all seen, so d1 >= min(sqrt(b1), dj).
            near = min(math.sqrt(b1), float(dj))
            near_left = near
            near_above[j0] = near
            value = w_bg
            if b2 < _FAR:
                s = math.sqrt(b1) + math.sqrt(b2)
                if s <= cutoff:
                    value += w0 * math.exp(-s * s * inv_two_sigma_sq)
            out[i, j0] = value


@njit(cache=True, nogil=True)
def _square_within(distance, row, reach):  # pragma: no cover
    """``distance**2`` for a found pixel (``row >= 0``) within reach, else _FAR."""
    if row < 0 or distance > reach:
        return _FAR
    return np.int64(distance) * np.int64(distance)


@njit(cache=True, nogil=True)
def _insert(d, cell, b1, l1, b2, l2):  # pragma: no cover
    """Add candidate ``(d, cell)`` to the two nearest distinct cells ``(b1, l1), (b2, l2)``."""
    if cell == l1:
        if d < b1:
            b1 = d
    elif d < b1:
        b2 = b1
        l2 = l1
        b1 = d
        l1 = cell
    elif d < b2:
        # Also right when cell == l2: its distance just got smaller.
        b2 = d
        l2 = cell
    return b1, l1, b2, l2
