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
The kernel (:mod:`napari_unet.border_term`) is compiled with numba and cached on disk
after the first call.

Stacks ``(Z or T, H, W)`` are handled plane by plane: distances never cross planes.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from .border_term import weight_rows
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
    sigma, w0 = _checked_border_term(sigma, w0)
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
    out = _fill_in_threads(planes, w_bg, w_fg, w0, sigma).reshape(original.shape)
    if mask is not None:
        out[~mask] = 0.0
    return out


def _checked_border_term(sigma: float, w0: float) -> tuple[float, float]:
    """``sigma`` and ``w0`` as floats, refused unless positive (``w0`` may be 0)."""
    if not (_is_real(sigma) and math.isfinite(sigma) and sigma > 0):
        raise NapariUnetError(f"sigma must be a positive number of pixels, got {sigma!r}.")
    if not (_is_real(w0) and math.isfinite(w0) and w0 >= 0):
        raise NapariUnetError(f"w0 must be zero or a positive number, got {w0!r}.")
    return float(sigma), float(w0)


def _fill_in_threads(
    planes: np.ndarray, w_bg: float, w_fg: float, w0: float, sigma: float
) -> np.ndarray:
    """The weights of every plane, computed in bands of rows shared by the threads."""
    # Beyond this d1 + d2 the border term is below _TRUNCATION and is left out.
    cutoff = sigma * math.sqrt(2.0 * math.log(w0 / _TRUNCATION)) if w0 > _TRUNCATION else 0.0
    out = np.empty(planes.shape, dtype=np.float32)
    inv_two_sigma_sq = 1.0 / (2.0 * sigma * sigma)

    def fill(task: tuple[int, int, int]) -> None:
        p, i0, i1 = task
        weight_rows(planes[p], out[p], i0, i1, w_bg, w_fg, w0, inv_two_sigma_sq, cutoff)

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


def carve_gaps(labels: np.ndarray, areas: np.ndarray | None = None) -> np.ndarray:
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
    areas : numpy.ndarray or None
        2D only: each id's area (``areas[id]``), when ``labels`` is a window of a
        larger plane whose cells it cuts; the ranks are then the whole cells'
        (live training re-prepares a window this way). None: counted in ``labels``.

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
        if areas is not None:
            counts = np.asarray(areas)[ids]
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
