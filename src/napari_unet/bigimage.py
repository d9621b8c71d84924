"""Images bigger than memory: overlap-tile prediction chunk by chunk, on dask, into zarr.

The output is cut into chunks whose origins lie on the network's pooling grid of
the whole image. Each chunk is one dask task: it reads its input window (the chunk
plus the network's context) from the source, mirrors it at the image border
exactly as the in-memory path mirror-pads the whole image, normalises it with
statistics computed once for the whole image, and runs the same tile code as
:func:`napari_unet.predict_tiled` (:func:`napari_unet.tiling.predict_padded`). So
the probabilities equal in-memory prediction, and memory is bounded by a few
chunks, never by the image.

Instance labels take three more steps: every chunk is labelled on its own (with
a margin of neighbouring probabilities), ids that meet across chunk faces are
merged with a union-find, and the chunks are relabelled with global, consecutive
ids; ``min_size`` is applied after merging, to whole objects.

Every task writes only its own zarr chunks, from inputs no task modifies, so a
task that is run again (dask retrying it after a worker died) writes the same
bytes. The output's metadata says ``"complete": true`` only once everything is
written; an interrupted run is detectable and is simply run again.
"""

from __future__ import annotations

import copy
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._generators import progress_callback, run_to_end
from .errors import NapariUnetError
from .normalization import Normalization
from .padding import mirror_indices

if TYPE_CHECKING:
    import dask.array as da
    import torch
    import zarr

    from .model import UNet

__all__ = [
    "ChunkProgress",
    "ZarrPrediction",
    "iter_predict_to_zarr",
    "open_image_lazily",
    "open_prediction",
    "predict_to_zarr",
]

FORMAT_VERSION = 1
_ATTR = "napari_unet"
#: Default output chunk (and unit of work) in pixels per side.
DEFAULT_CHUNK = 1024
#: Default margin of neighbouring probabilities each chunk sees when labelling.
DEFAULT_LABEL_MARGIN = 64
# Activations one task may use by default; a few tasks run at once.
_DEFAULT_TASK_BUDGET = 512 << 20
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
# Display levels stop once a level fits in a screen-sized texture.
_PYRAMID_STOP = 2048
_PYRAMID_MIN_CHUNK = 32


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class ChunkProgress:
    """Progress of :func:`iter_predict_to_zarr`.

    Attributes
    ----------
    phase : str
        ``"statistics"``, ``"predict"``, ``"label"``, ``"relabel"`` or ``"done"``.
    done, total : int
        Steps done and in all; one step per chunk and phase (plus one for the
        statistics), so ``done / total`` is the overall fraction.
    """

    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class ZarrPrediction:
    """A finished prediction in a zarr store, opened lazily.

    Attributes
    ----------
    path : str
        The store.
    labels : list of dask.array.Array
        Instance labels, full resolution first, then levels downsampled by 2, 4,
        ... along the last two axes (nearest neighbour); pass the list to
        ``viewer.add_labels(labels, multiscale=True)``.
    probabilities : dask.array.Array or None
        float32 ``(K, ..., H, W)`` class probabilities, when they were requested.
    n_objects : int
        Number of objects; ids are ``1..n_objects``.
    metadata : dict
        Everything the run recorded (model, normalisation with its statistics,
        chunking, post-processing).
    """

    path: str
    labels: list
    probabilities: Any
    n_objects: int
    metadata: dict = field(repr=False)


# --------------------------------------------------------------------------- opening inputs


def open_image_lazily(path: str | os.PathLike, *, level: int = 0) -> da.Array:
    """Open a zarr, OME-Zarr or TIFF image as a dask array, reading nothing yet.

    Parameters
    ----------
    path : path-like
        A zarr array, a zarr group holding one array, an OME-Zarr image (its
        ``multiscales`` metadata picks the level), or a TIFF file of any size
        (read through tifffile's zarr interface, tile by tile or strip by strip).
    level : int
        Resolution level of a multiscale image; 0 is full resolution.

    Returns
    -------
    dask.array.Array
        The image with singleton axes other than the last two removed, so an
        OME-Zarr ``(1, 1, 1, Y, X)`` becomes ``(Y, X)``. Pass it through
        :func:`napari_unet.layout.to_model_layout` before predicting, as for any
        image. It can be sent to cluster workers that see the same path.
    """
    import dask.array as da
    import zarr

    p = Path(path)
    if not p.exists():
        raise NapariUnetError(f"The image {p} does not exist.")
    if p.is_file() and p.name.lower().endswith(_TIFF_SUFFIXES):
        source = _LazyTiff(str(p), level)
        arr = da.from_array(source, chunks=_read_chunks(source.shape, source.chunks), asarray=True)
    elif p.is_dir():
        try:
            node = zarr.open(str(p), mode="r")
        except Exception as exc:  # zarr raises several types for "not a store"
            raise NapariUnetError(f"{p} is not a zarr store ({exc}).") from None
        z = _pick_array(node, level, p)
        arr = da.from_zarr(z, chunks=_read_chunks(z.shape, z.chunks))
    else:
        raise NapariUnetError(
            f"{p} is neither a zarr store nor a TIFF file, so it cannot be read lazily; "
            "write a TIFF output instead (-o OUT.tif) to segment it in memory."
        )
    squeeze = tuple(i for i in range(arr.ndim - 2) if arr.shape[i] == 1)
    arr = arr.squeeze(axis=squeeze) if squeeze else arr
    if arr.ndim < 2 or min(arr.shape[-2:]) < 1:
        raise NapariUnetError(f"{p} does not contain a 2D image (shape {arr.shape}).")
    return arr


def _pick_array(node: Any, level: int, p: Path) -> zarr.Array:
    import zarr

    if isinstance(node, zarr.Array):
        return node
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if multiscales:
        datasets = multiscales[0].get("datasets", [])
        if not 0 <= level < len(datasets):
            raise NapariUnetError(f"{p} has {len(datasets)} resolution levels, not {level + 1}.")
        return node[datasets[level]["path"]]
    names = sorted(node.array_keys())
    if len(names) == 1 and level == 0:
        return node[names[0]]
    if str(level) in names:
        return node[str(level)]
    raise NapariUnetError(
        f"{p} holds {len(names)} arrays ({', '.join(names) or 'none'}) and no multiscale "
        "metadata; open the array you mean, e.g. PATH/NAME."
    )


def _read_chunks(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Dask chunks for reading: the store's own, grown to about 1024 pixels per spatial side."""
    from .layout import looks_rgb

    rgb = looks_rgb(tuple(shape))
    spatial = (-3, -2) if rgb else (-2, -1)
    # one plane per read along the other axes: a window never pulls in a whole Z chunk
    out = [1] * len(shape)
    out[-1] = max(1, int(chunks[-1]))
    out[-2] = max(1, int(chunks[-2]))
    if rgb:
        out[-3] = max(1, int(chunks[-3]))
    for ax in spatial:
        c = out[ax]
        out[ax] = min(int(shape[ax]), c * max(1, round(DEFAULT_CHUNK / c)))
    return tuple(out)


class _LazyTiff:
    """A picklable, lazily opened TIFF level: workers open the file themselves."""

    def __init__(self, path: str, level: int) -> None:
        self.path, self.level = path, level
        self._array = None
        self._lock = threading.Lock()
        arr = self._open()
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        # a contiguous TIFF is one "chunk" to zarr; memory-mapped, any window can be read
        self.chunks = getattr(arr, "chunks", None) or tuple(min(s, 256) for s in arr.shape)

    def _open(self):
        import tifffile
        import zarr

        with self._lock:
            if self._array is None and self.level == 0:
                try:  # uncompressed and contiguous (ImageJ's default): map it, read windows
                    self._array = tifffile.memmap(self.path, mode="r", series=0, level=0)
                except Exception:  # compressed, tiled or odd: tifffile's zarr interface
                    self._array = None
            if self._array is None:
                try:
                    store = tifffile.imread(self.path, aszarr=True)
                    node = zarr.open(store, mode="r")
                except Exception as exc:  # tifffile has many exception types
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise NapariUnetError(
                        f"{self.path} could not be read as an image ({reason})."
                    ) from None
                self._array = _pick_array(node, self.level, Path(self.path))
            return self._array

    def __getitem__(self, key):
        return self._open()[key]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


# --------------------------------------------------------------------------- the model on workers

#: How many models this process has received by unpickling (tests check it is one per worker).
MODELS_RECEIVED = 0


class _SharedModel:
    """The network as shipped to dask workers: weights once per worker, never per task.

    On the threaded scheduler it is one private copy, in eval mode, shared by the
    tasks (the caller's model is neither moved nor switched to eval). Pickled, it
    carries the architecture and the weights as numpy arrays; each worker rebuilds
    the network on first use and keeps it.
    """

    def __init__(self, model: UNet | None = None, payload: tuple | None = None) -> None:
        self._source = model
        self._payload = payload
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __reduce__(self):
        if self._payload is None:
            m = self._source
            state = {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
            self._payload = (m.config, state, dict(getattr(m, "metadata", {})))
        return (_receive_model, self._payload)

    def get(self, device: Any) -> tuple[UNet, torch.device]:
        """The network on ``device`` (resolved on this worker), built once per process."""
        import torch

        from .device import select_device
        from .model import UNet

        dev = select_device(device)
        with self._lock:
            model = self._models.get(str(dev))
            if model is None:
                if self._source is not None:
                    model = copy.deepcopy(self._source)
                else:
                    config, state, metadata = self._payload
                    model = UNet.from_config(config)
                    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
                    model.metadata = metadata
                model.eval()
                # channels-last lets oneDNN run the narrow convolutions about twice as fast
                model.to(dev, memory_format=torch.channels_last)
                self._models[str(dev)] = model
        return model, dev


def _receive_model(config: dict, state: dict, metadata: dict) -> _SharedModel:
    global MODELS_RECEIVED
    MODELS_RECEIVED += 1
    return _SharedModel(payload=(config, state, metadata))


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Chunk:
    """One output chunk: plane ``z``, rows ``y0:y1``, columns ``x0:x1``, grid cell ``(i, j)``."""

    index: int
    z: int
    i: int
    j: int
    y0: int
    y1: int
    x0: int
    x1: int


@dataclass(frozen=True)
class _Layout:
    """The image in the model's terms: channels, planes, spatial shape."""

    has_channels: bool
    is_stack: bool
    n_channels: int
    n_planes: int
    shape: tuple[int, int]

    def out_shape(self, lead: tuple[int, ...] = ()) -> tuple[int, ...]:
        return (*lead, *((self.n_planes,) if self.is_stack else ()), *self.shape)

    def plane_index(self, z: int) -> tuple:
        return (z,) if self.is_stack else ()


def _plan_chunks(layout: _Layout, chunk: tuple[int, int]) -> list[_Chunk]:
    H, W = layout.shape
    cy, cx = chunk
    out = []
    for z in range(layout.n_planes):
        for i in range(math.ceil(H / cy)):
            for j in range(math.ceil(W / cx)):
                y0, x0 = i * cy, j * cx
                c = _Chunk(len(out), z, i, j, y0, min(H, y0 + cy), x0, min(W, x0 + cx))
                out.append(c)
    return out


# --------------------------------------------------------------------------- tasks


def _predict_chunk(
    shared: _SharedModel,
    window: np.ndarray,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    grid: Any,
    chunk: _Chunk,
    layout: _Layout,
    norm: Normalization,
    stats: np.ndarray,
    device: Any,
    batch_size: int,
    target: zarr.Array,
) -> int:
    """Predict one chunk from its raw ``(C, h, w)`` source window and write its probabilities."""
    from .tiling import predict_padded

    model, dev = shared.get(device)
    x = np.asarray(window)
    if rows is not None:  # mirrored at the image border, as the in-memory path pads
        x = np.take(x, rows, axis=-2)
    if cols is not None:
        x = np.take(x, cols, axis=-1)
    x = norm.apply(x, stats, channel_axis=0)
    out = np.empty((model.n_classes, *grid.image_shape), dtype=np.float32)

    def forward() -> None:
        for _ in predict_padded(model, x, grid, batch_size, dev, out):
            pass

    _run_forward(dev, forward)
    target[_region(chunk, layout, lead=True)] = out
    _release_memory()
    return chunk.index


def _release_memory() -> None:
    """Hand freed heap memory back to the system (glibc only; elsewhere a no-op).

    glibc keeps what a thread freed in that thread's arena, so a process whose
    threads took turns with large arrays would hold the sum of their peaks.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


_INFERENCE_LOCK = threading.Lock()
_inference_thread: ThreadPoolExecutor | None = None


def _run_forward(device: torch.device, work: Callable[[], None]) -> None:
    """Run ``work`` (the forward passes of one chunk) on this process's inference thread.

    torch runs each CPU pass on all its intra-op threads, so two passes at once only
    fight for the cores; and each thread's allocator arena keeps the activations it
    once held, so passes spread over threads multiply the peak memory. One inference
    thread per process avoids both while the task threads keep reading, normalising
    and writing. A GPU is one device too. Dask workers started with one thread per
    core (``OMP_NUM_THREADS=1``) run their passes side by side instead.
    """
    global _inference_thread
    import torch

    if device.type == "cpu" and torch.get_num_threads() == 1:
        work()
        return
    with _INFERENCE_LOCK:
        if _inference_thread is None:
            _inference_thread = ThreadPoolExecutor(1, thread_name_prefix="napari-unet-inference")
    _inference_thread.submit(work).result()


def _region(chunk: _Chunk, layout: _Layout, lead: bool = False, margin: int = 0) -> tuple:
    H, W = layout.shape
    ys = slice(max(0, chunk.y0 - margin), min(H, chunk.y1 + margin))
    xs = slice(max(0, chunk.x0 - margin), min(W, chunk.x1 + margin))
    return ((slice(None),) if lead else ()) + layout.plane_index(chunk.z) + (ys, xs)


def _label_chunk(
    probabilities: zarr.Array,
    local: zarr.Array,
    chunk: _Chunk,
    layout: _Layout,
    margin: int,
    threshold: float,
    postprocess: dict,
) -> dict:
    """Label one chunk with ``margin`` pixels of context and write its local ids.

    Returns what the merge needs: object sizes, first pixels, ids along the faces.
    """
    from .postprocess import labels_from_probabilities

    H, W = layout.shape
    region = _region(chunk, layout, lead=True, margin=margin)
    prob = np.asarray(probabilities[region])
    ext = labels_from_probabilities(prob, threshold=threshold, min_size=0, **postprocess)
    ty, tx = chunk.y0 - region[-2].start, chunk.x0 - region[-1].start
    h, w = chunk.y1 - chunk.y0, chunk.x1 - chunk.x0
    core = ext[ty : ty + h, tx : tx + w]
    ids, first = np.unique(core, return_index=True)
    if ids.size and ids[0] == 0:
        ids, first = ids[1:], first[1:]
    n = int(ids.size)
    # ids of the window -> compact ids 1..n of the core; -1 for objects only in the margin
    lut = np.full(int(ext.max()) + 1, -1, dtype=np.int64)
    lut[0] = 0
    lut[ids] = np.arange(1, n + 1)
    ids_core = lut[core].astype(np.int32)
    local[_region(chunk, layout)] = ids_core
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
    _release_memory()
    return result


def _relabel_chunk(
    local: zarr.Array, levels: list, chunk: _Chunk, layout: _Layout, lut: np.ndarray
) -> int:
    """Write one chunk's global ids at every display level."""
    final = lut[np.asarray(local[_region(chunk, layout)])]
    for k, target in enumerate(levels):
        s = 2**k
        part = final[::s, ::s]
        y0, x0 = chunk.y0 // s, chunk.x0 // s
        idx = layout.plane_index(chunk.z) + (
            slice(y0, y0 + part.shape[0]),
            slice(x0, x0 + part.shape[1]),
        )
        target[idx] = part
    return chunk.index


# --------------------------------------------------------------------------- merging


def _merge(
    results: list[dict], chunks: list[_Chunk], margin: int, min_size: int
) -> tuple[list[np.ndarray], int]:
    """Union-find over ids that meet across chunk faces.

    Returns per-chunk lookup tables (local id -> global id, 0 for a dropped object)
    and the number of objects.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.cumsum([0] + [r["n"] for r in results])
    n_nodes = int(offsets[-1])
    where = {(c.z, c.i, c.j): c.index for c in chunks}
    src, dst = [], []
    for c in chunks:
        a = results[c.index]
        for (di, dj), (face_a, face_b) in (
            ((1, 0), ("bottom", "top")),
            ((0, 1), ("right", "left")),
        ):
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
    if n_nodes == 0:
        return [np.zeros(1, dtype=np.int64) for _ in results], 0
    s = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
    d = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(s.size, dtype=np.int8), (s, d)), shape=(n_nodes, n_nodes))
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.concatenate([r["sizes"] for r in results])
    keys = np.concatenate([r["keys"] for r in results])
    comp_size = np.bincount(comp, weights=sizes, minlength=n_comp).astype(np.int64)
    comp_key = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_key, comp, keys)
    kept = np.flatnonzero(comp_size >= max(min_size, 1))
    # ids in raster order of each object's first pixel, as scipy.ndimage.label numbers them
    order = kept[np.argsort(comp_key[kept], kind="stable")]
    new_id = np.zeros(n_comp, dtype=np.int64)
    new_id[order] = np.arange(1, order.size + 1)
    luts = [
        np.concatenate([[0], new_id[comp[offsets[i] : offsets[i + 1]]]])
        for i in range(len(results))
    ]
    return luts, int(order.size)


# --------------------------------------------------------------------------- execution


class _Cancelled(Exception):
    """Raised inside the threaded scheduler to stop a cancelled run."""


class _ThreadRunner:
    """dask's local threaded scheduler, with progress and cancellation."""

    def __init__(self, num_workers: int | None) -> None:
        self.num_workers = num_workers

    def share(self, obj: Any) -> Any:
        return obj

    def statistics_scheduler(self) -> Any:
        return "threads"

    def run(self, tasks: list, serial: bool = False) -> Generator[int, None, list]:
        import dask

        keys = {t.key for t in tasks}
        events: queue.SimpleQueue = queue.SimpleQueue()
        cancel = threading.Event()
        box: dict[str, Any] = {}

        def pretask(key, dsk, state):
            if cancel.is_set():
                raise _Cancelled

        def posttask(key, result, dsk, state, worker_id):
            if key in keys:
                events.put(1)

        def work():
            try:
                box["result"] = dask.compute(
                    *tasks,
                    scheduler="threads",
                    num_workers=1 if serial else self.num_workers,
                    callbacks=[(None, None, pretask, posttask, None)],
                )
            except BaseException as exc:  # handed to the generator's thread
                box["error"] = exc
            finally:
                events.put(None)

        thread = threading.Thread(target=work, name="napari-unet-dask", daemon=True)
        thread.start()
        done = 0
        try:
            while events.get() is not None:
                done += 1
                yield done
        finally:
            cancel.set()  # a no-op once finished; stops a closed generator's run
            thread.join()
        if "error" in box:
            raise box["error"]
        return list(box["result"])

    def close(self) -> None:
        pass


class _DistributedRunner:
    """A dask.distributed cluster: the model is scattered to every worker once."""

    def __init__(self, client: Any, owned: bool, retries: int) -> None:
        self.client, self.owned, self.retries = client, owned, retries

    def share(self, obj: Any) -> Any:
        return self.client.scatter(obj, broadcast=True, hash=False)

    def statistics_scheduler(self) -> Any:
        return self.client

    def run(self, tasks: list, serial: bool = False) -> Generator[int, None, list]:
        from distributed import as_completed

        futures = self.client.compute(tasks, retries=self.retries)
        try:
            done = 0
            for fut in as_completed(futures):
                if fut.status == "error":
                    fut.result()  # raises the task's exception here
                done += 1
                yield done
            return self.client.gather(futures)
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.owned:
            self.client.close()


def _runner(scheduler: Any, num_workers: int | None, retries: int) -> Any:
    if scheduler is None or scheduler == "threads":
        return _ThreadRunner(num_workers)
    try:
        import distributed
    except ImportError:
        raise NapariUnetError(
            "Running on a dask cluster needs the 'distributed' package (pip install distributed)."
        ) from None
    if isinstance(scheduler, distributed.Client):
        return _DistributedRunner(scheduler, owned=False, retries=retries)
    if isinstance(scheduler, str):
        try:
            client = distributed.Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise NapariUnetError(
                f"Could not reach the dask scheduler at {scheduler} ({exc})."
            ) from None
        return _DistributedRunner(client, owned=True, retries=retries)
    raise NapariUnetError(
        f"The scheduler must be None, 'threads', a dask.distributed Client or a scheduler "
        f"address; got {scheduler!r}."
    )


# --------------------------------------------------------------------------- the driver


def _as_dask(image: Any) -> da.Array:
    import dask.array as da
    import zarr

    if isinstance(image, da.Array):
        return image
    if isinstance(image, zarr.Array):
        return da.from_zarr(image, chunks=_read_chunks(image.shape, image.chunks))
    if not hasattr(image, "shape"):
        image = np.asarray(image)
    shape = tuple(image.shape)
    return da.from_array(image, chunks=_read_chunks(shape, shape))


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a zarr group holding a napari-unet result (complete or not)."""
    import zarr

    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:  # an array, or not zarr at all
        return False
    return isinstance(dict(root.attrs).get(_ATTR), dict)


def _open_output(output: Any, overwrite: bool) -> zarr.Group:
    import zarr

    if isinstance(output, str | os.PathLike) and "://" not in str(output):
        p = Path(output)
        if p.exists():
            is_zarr = any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zarray"))
            if not overwrite:
                raise NapariUnetError(
                    f"The output {p} already exists; pass --overwrite to replace it."
                )
            if not is_zarr:
                raise NapariUnetError(
                    f"The output {p} exists and is not a zarr store; it was left alone."
                )
            if not _written_by_us(p):  # e.g. the input image: --overwrite never deletes data
                raise NapariUnetError(
                    f"The output {p} is a zarr store that napari-unet did not write (an image?); "
                    "it was left alone. Choose another output."
                )
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise NapariUnetError(f"The folder {parent} for the output does not exist.")
        if not os.access(parent, os.W_OK):
            raise NapariUnetError(f"The folder {parent} is not writable.")
        root = zarr.open_group(str(p), mode="w", zarr_format=3)
    else:
        root = zarr.open_group(output, mode="w" if overwrite else "w-", zarr_format=3)
    # ours from the start: a run that fails before its metadata is written is still
    # recognised as an incomplete result (and may be overwritten), not a foreign store
    root.attrs[_ATTR] = {"complete": False}
    return root


def _layout(model: UNet, image: Any) -> _Layout:
    from .tiling import channel_and_stack_axes

    has_channels, is_stack = channel_and_stack_axes(model, image)
    return _Layout(
        has_channels=has_channels,
        is_stack=is_stack,
        n_channels=int(image.shape[0]) if has_channels else 1,
        n_planes=int(image.shape[-3]) if is_stack else 1,
        shape=(int(image.shape[-2]), int(image.shape[-1])),
    )


def _chunk_shape(model: UNet, layout: _Layout, chunk: int | Sequence[int] | None):
    f = model.pooling_factor
    if chunk is None:
        chunk = DEFAULT_CHUNK
    if isinstance(chunk, int | np.integer):
        chunk = (int(chunk),) * 2
    chunk = tuple(chunk)
    if len(chunk) != 2 or not all(isinstance(c, int | np.integer) and c >= 1 for c in chunk):
        raise NapariUnetError(f"The chunk must be one or two positive integers, got {chunk!r}.")
    # on the pooling grid of the whole image, and no larger than the image needs
    return tuple(min(math.ceil(c / f), math.ceil(s / f)) * f for c, s in zip(chunk, layout.shape))


def _pyramid_levels(layout: _Layout, chunk: tuple[int, int]) -> int:
    levels = 1
    while max(layout.shape) / 2 ** (levels - 1) > _PYRAMID_STOP and all(
        c % 2**levels == 0 and c >> levels >= _PYRAMID_MIN_CHUNK for c in chunk
    ):
        levels += 1
    return levels


def iter_predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any,
    *,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    probabilities: bool = False,
    threshold: float = 0.5,
    min_size: int = 16,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    **postprocess: Any,
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """Generator form of :func:`predict_to_zarr`.

    Yields a :class:`ChunkProgress` before any work (``done == 0``), as every
    phase starts and after every chunk of it, and returns the :class:`ZarrPrediction`
    (``StopIteration.value``). Closing the generator between yields cancels the
    run within the chunks under way; the output then stays marked incomplete.
    Arguments are checked before the first yield.
    """
    import dask
    from dask import delayed

    from .postprocess import labels_from_probabilities
    from .tiling import TileGrid, _resolve_normalization, default_memory_budget, plan_tiles

    if batch_size < 1:
        raise NapariUnetError(f"batch_size must be at least 1, got {batch_size}.")
    if min_size < 0:
        raise NapariUnetError(f"min_size must be 0 or more, got {min_size}.")
    if retries < 0:
        raise NapariUnetError(f"retries must be 0 or more, got {retries}.")
    if num_workers is not None and num_workers < 1:
        raise NapariUnetError(f"num_workers must be at least 1, got {num_workers}.")
    method = postprocess.get("method", "watershed")
    if label_margin is None:
        label_margin = 0 if method == "components" else DEFAULT_LABEL_MARGIN
    if label_margin < 0:
        raise NapariUnetError(f"label_margin must be 0 or more, got {label_margin}.")
    # post-processing options are checked now, on a 1-pixel image, not after hours
    k = model.n_classes
    labels_from_probabilities(
        np.full((k, 1, 1), 1.0 / k, dtype=np.float32),
        threshold=threshold,
        min_size=0,
        **postprocess,
    )
    image = _as_dask(image)
    layout = _layout(model, image)
    norm = _resolve_normalization(model, normalization)
    cy, cx = _chunk_shape(model, layout, chunk)

    budget = min(default_memory_budget(None), _DEFAULT_TASK_BUDGET)  # host RAM
    if scheduler is None or scheduler == "threads":  # cluster workers resolve their device
        from .device import select_device

        dev = select_device(device)
        if dev.type == "cuda":  # activations live on the GPU, not in host RAM
            budget = default_memory_budget(dev)
    budget = memory_budget or budget
    plan = plan_tiles(model, (cy, cx), tile_shape, memory_budget=budget // batch_size)
    chunks = _plan_chunks(layout, (cy, cx))
    n = len(chunks)
    total = 1 + 3 * n
    runner = _runner(scheduler, num_workers, retries)
    try:
        root = _open_output(output, overwrite)
        yield ChunkProgress("statistics", 0, total)
        with dask.config.set(scheduler=runner.statistics_scheduler()):
            stats = norm.statistics(image, channel_axis=0 if layout.has_channels else None)
        yield ChunkProgress("statistics", 1, total)

        meta = {
            "format_version": FORMAT_VERSION,
            "complete": False,
            "image_shape": [int(s) for s in image.shape],
            "image_dtype": str(image.dtype),
            "model": model.config,
            "normalization": {
                **norm.to_dict(),
                "statistics": stats.tolist(),
                "subsample": "regular, shape-only (napari_unet.normalization)",
            },
            "chunk": [cy, cx],
            "tile_step": list(plan.step),
            "tile_input": list(plan.input_shape),
            "halo": plan.halo,
            "labels": {
                "threshold": threshold,
                "min_size": min_size,
                "margin": label_margin,
                "postprocess": dict(postprocess),
            },
        }
        root.attrs[_ATTR] = meta  # complete: false, until everything below is written
        zkw = {"fill_value": 0, "overwrite": True}
        plane_chunk = (1,) if layout.is_stack else ()
        prob_name = "probabilities" if probabilities else "_work/probabilities"
        prob = root.create_array(
            prob_name,
            shape=layout.out_shape((k,)),
            chunks=(k, *plane_chunk, cy, cx),
            dtype="float32",
            compressors=None,  # float noise compresses little; decoding it would cost CPU
            **zkw,
        )
        local = root.create_array(
            "_work/local_labels",
            shape=layout.out_shape(),
            chunks=(*plane_chunk, cy, cx),
            dtype="int32",
            **zkw,
        )

        shared = runner.share(_SharedModel(model))
        run_id = uuid.uuid4().hex[:12]
        src4 = image
        if not layout.has_channels:
            src4 = src4[None]
        if not layout.is_stack:
            src4 = src4[:, None]
        H, W = layout.shape
        tasks = []
        for c in chunks:
            counts = (
                math.ceil((c.y1 - c.y0) / plan.step[0]),
                math.ceil((c.x1 - c.x0) / plan.step[1]),
            )
            grid = TileGrid(
                image_shape=(c.y1 - c.y0, c.x1 - c.x0),
                step=plan.step,
                input_shape=plan.input_shape,
                counts=counts,
                halo=plan.halo,
            )
            (pb_y, pa_y), (pb_x, pa_x) = grid.pad_widths()
            rows = mirror_indices(c.y0 - pb_y, c.y1 + pa_y, H)
            cols = mirror_indices(c.x0 - pb_x, c.x1 + pa_x, W)
            ry0, ry1, rx0, rx1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            rows, cols = rows - ry0, cols - rx0
            rows = None if np.array_equal(rows, np.arange(rows.size)) else rows
            cols = None if np.array_equal(cols, np.arange(cols.size)) else cols
            window = src4[:, c.z, ry0:ry1, rx0:rx1]
            tasks.append(
                delayed(_predict_chunk, pure=False)(
                    shared, window, rows, cols, grid, c, layout, norm, stats, device,
                    batch_size, prob, dask_key_name=f"napari-unet-predict-{run_id}-{c.index}",
                )
            )  # fmt: skip
        yield from _phase(runner, tasks, "predict", 1, total)

        tasks = [
            delayed(_label_chunk, pure=False)(
                prob, local, c, layout, label_margin, threshold, dict(postprocess),
                dask_key_name=f"napari-unet-label-{run_id}-{c.index}",
            )
            for c in chunks
        ]  # fmt: skip
        # labels_from_probabilities holds the GIL (scipy.ndimage): on local threads a
        # second task only adds memory and contention (measured: slower than one).
        results = yield from _phase(runner, tasks, "label", 1 + n, total, serial=True)

        luts, n_objects = _merge(results, chunks, label_margin, min_size)
        dtype = "uint16" if n_objects < 2**16 else "uint32" if n_objects < 2**32 else "uint64"
        n_levels = _pyramid_levels(layout, (cy, cx))
        levels = []
        for lv in range(n_levels):
            s = 2**lv
            spatial = (math.ceil(H / s), math.ceil(W / s))
            levels.append(
                root.create_array(
                    f"labels/{lv}",
                    shape=(*((layout.n_planes,) if layout.is_stack else ()), *spatial),
                    chunks=(*plane_chunk, cy // s, cx // s),
                    dtype=dtype,
                    **zkw,
                )
            )
        tasks = [
            delayed(_relabel_chunk, pure=False)(
                local, levels, c, layout, luts[c.index].astype(dtype),
                dask_key_name=f"napari-unet-relabel-{run_id}-{c.index}",
            )
            for c in chunks
        ]  # fmt: skip
        yield from _phase(runner, tasks, "relabel", 1 + 2 * n, total)

        root["labels"].attrs["ome"] = _ome_multiscales(layout, n_levels)
        del root["_work"]
        meta.update(
            complete=True,
            n_objects=n_objects,
            labels={**meta["labels"], "levels": n_levels, "dtype": dtype},
            probabilities=prob_name if probabilities else None,
        )
        root.attrs[_ATTR] = meta  # written last: its "complete" marks a finished run
        yield ChunkProgress("done", total, total)
        return _open_group(root, str(output))
    finally:
        runner.close()


def _phase(
    runner: Any, tasks: list, name: str, done: int, total: int, serial: bool = False
) -> Generator[ChunkProgress, None, list]:
    """Run one pass: an event as it starts, then one per finished chunk; returns the results."""
    yield ChunkProgress(name, done, total)
    gen = runner.run(tasks, serial=serial)
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            yield ChunkProgress(name, done + step, total)
    finally:
        gen.close()  # a closed caller cancels the pass


def _ome_multiscales(layout: _Layout, n_levels: int) -> dict:
    axes = ([{"name": "z", "type": "space"}] if layout.is_stack else []) + [
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    lead = [1.0] if layout.is_stack else []
    return {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {
                        "path": str(lv),
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [*lead, 2.0**lv, 2.0**lv]}
                        ],
                    }
                    for lv in range(n_levels)
                ],
            }
        ],
    }


def predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any,
    *,
    progress: Callable[[int, int], Any] | None = None,
    **kwargs: Any,
) -> ZarrPrediction:
    """Segment an image of any size chunk by chunk, on dask, into a zarr store.

    Parameters
    ----------
    model : UNet
        The network. It is copied (threaded scheduler) or sent once to every
        worker (distributed); the caller's model is not changed.
    image : dask array, zarr array or array-like
        In the model's layout, as for :func:`napari_unet.predict_tiled`:
        ``(H, W)`` or ``(Z, H, W)`` for a single-channel model, ``(C, H, W)`` or
        ``(C, Z, H, W)`` for ``C`` channels. Read window by window; never loaded
        whole. :func:`open_image_lazily` opens zarr, OME-Zarr and TIFF files.
    output : path-like or zarr store
        The zarr group to write: ``labels/0`` (full resolution) and coarser
        ``labels/1``, ... for display, ``probabilities`` on request, and the run's
        metadata in the group attribute ``"napari_unet"``. On a cluster it must
        be a location every worker can write (a shared file system, or an object
        store URL that zarr understands).
    progress : callable or None
        Called as ``progress(done, total)`` after every chunk of every phase.
    **kwargs
        Keyword arguments of :func:`iter_predict_to_zarr`:

        chunk : int, (int, int) or None
            Output chunk per side (1024 by default), which is also the unit of
            work. Rounded up to a multiple of the pooling factor
            ``2**(depth-1)`` so that every chunk lies on the pooling grid of the
            whole image; capped at the image.
        tile_shape : int, (int, int) or None
            Output tile per forward pass inside a chunk, rounded up to the pooling
            factor and capped at the chunk. ``None`` takes the largest tiles whose
            activations fit ``memory_budget``, split evenly over the chunk. Pick a
            divisor of ``chunk`` to waste nothing. The result does not depend on
            it (to float rounding).
        batch_size : int
            Tiles per forward pass.
        device : str or None
            Resolved on each worker: ``None``/``"auto"`` picks CUDA, MPS, then CPU.
        normalization : Normalization, dict, False or None
            As for :func:`napari_unet.predict_tiled`. Percentiles come from a
            regular, shape-only subsample of at most about 4 million pixels, the
            same one the in-memory path uses; they are stored in the metadata.
        probabilities : bool
            Keep the float32 ``(K, ..., H, W)`` probabilities in the output
            (4 bytes per pixel and class). They are always computed, and
            otherwise deleted once the labels are written.
        threshold, min_size, **postprocess
            As for :func:`napari_unet.labels_from_probabilities` (``method``,
            ``h``, ``smoothing``...). ``min_size`` applies to whole objects,
            after merging across chunks.
        label_margin : int or None
            Pixels of neighbouring probabilities each chunk sees when it is
            labelled. ``None``: 0 for ``method="components"`` (exact without
            one), 64 otherwise.
        memory_budget : int or None
            Bytes of activations one forward pass may use when ``tile_shape`` is
            None: 512 MiB by default (less if RAM is short; half the free GPU
            memory on the local scheduler with CUDA).
        scheduler : None, "threads", distributed.Client or str
            ``None``/``"threads"``: dask's local threaded scheduler. A
            ``distributed.Client``, or a scheduler address such as
            ``"tcp://10.0.0.1:8786"`` (connected for this run and closed after),
            runs on that cluster.
        num_workers : int or None
            Threads of the local scheduler (dask's default: one per core).
        retries : int
            Distributed only: times dask reruns a failed task (a lost worker, say)
            before the run fails. Reruns write the same bytes.
        overwrite : bool
            Replace an existing zarr store at ``output``.

    Returns
    -------
    ZarrPrediction
        The output, opened lazily.

    Notes
    -----
    Probabilities equal :func:`napari_unet.predict_tiled` on the same image
    (exactly for the same tiles, else to float rounding). With
    ``method="components"`` the labels equal the in-memory labels, ids
    included. With the watershed each chunk is split on its own, seeing
    ``label_margin`` pixels around it; two pieces that meet across a chunk face
    become one object when either chunk's labelling puts them in one object. This
    matches the in-memory watershed for objects smaller than the margin; larger
    objects may be split or joined differently near chunk faces. Ids are
    consecutive and in raster order of each object's first pixel.
    """
    gen = iter_predict_to_zarr(model, image, output, **kwargs)
    return run_to_end(gen, progress_callback(progress))


def open_prediction(output: str | os.PathLike | Any) -> ZarrPrediction:
    """Open the result of :func:`predict_to_zarr` lazily.

    Raises
    ------
    NapariUnetError
        If the store is missing, was not written by napari-unet, or comes from an
        interrupted run.
    """
    import zarr

    try:
        root = zarr.open_group(str(output) if isinstance(output, os.PathLike) else output, mode="r")
    except Exception:  # zarr raises several types for a missing or foreign store
        raise NapariUnetError(f"{output} is not a zarr store.") from None
    return _open_group(root, str(output))


def _open_group(root: zarr.Group, path: str) -> ZarrPrediction:
    import dask.array as da

    meta = dict(root.attrs).get(_ATTR)
    if not isinstance(meta, dict):
        raise NapariUnetError(f"{path} was not written by napari-unet.")
    if not meta.get("complete"):
        raise NapariUnetError(
            f"{path} is incomplete (the run that wrote it was interrupted); run it again "
            "with --overwrite."
        )
    n_levels = int(meta["labels"]["levels"])
    labels = [da.from_zarr(root[f"labels/{lv}"]) for lv in range(n_levels)]
    prob = meta.get("probabilities")
    return ZarrPrediction(
        path=path,
        labels=labels,
        probabilities=da.from_zarr(root[prob]) if prob else None,
        n_objects=int(meta["n_objects"]),
        metadata=meta,
    )
