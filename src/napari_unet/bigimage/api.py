"""The public entry points: :func:`predict_to_zarr` and its generator form.

A run has four phases: image statistics, prediction (one task per chunk),
labelling (one task per chunk, then the id merge) and relabelling (one task per
chunk, writing every display level). Their order and the metadata's
``"complete"`` flag, written last, are decided here; the work is in the
sibling modules.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from .._generators import progress_callback, run_to_end
from ..device import select_device
from ..errors import NapariUnetError
from ..events import CountedProgress
from ..model import UNet
from ..normalization import Normalization
from ..postprocess import labels_from_probabilities, resolve_postprocess
from ..precision import resolve_precision
from ..tiling import TileGrid, default_memory_budget, plan_tiles, resolve_normalization
from ..tta import check_tta
from .chunks import (
    ImageAxes,
    chunk_shape,
    image_axes,
    plan_chunks,
)
from .inputs import as_dask, open_image_lazily
from .merge import merge_across_faces
from .ngff import SourceImage, Spatial, read_source_image
from .output import (
    ATTR,
    FORMAT_VERSION,
    LABEL_NAME,
    OutputTarget,
    ZarrPrediction,
    create_label_levels,
    create_probability_levels,
    mark_complete,
    open_output,
    open_prediction,
    pyramid_levels,
    read_result,
)
from .runners import DistributedRunner, ThreadRunner, make_runner
from .tasks import label_tasks, predict_tasks, relabel_tasks
from .worker import SharedModel

__all__ = ["DEFAULT_LABEL_MARGIN", "ChunkProgress", "iter_predict_to_zarr", "predict_to_zarr"]

#: Default margin of neighbouring probabilities each chunk sees when labelling.
DEFAULT_LABEL_MARGIN = 64
# Activations one task may use by default; a few tasks run at once.
_DEFAULT_TASK_BUDGET = 512 << 20


@dataclass(frozen=True)
class ChunkProgress(CountedProgress):
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


def predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any = None,
    *,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    precision: str = "auto",
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    stack: str = "planes",
    voxel_size: Any = None,
    z_chunk: int | None = None,
    **postprocess: Any,
) -> ZarrPrediction:
    """Segment an image of any size chunk by chunk, on dask, into a zarr store.

    Parameters
    ----------
    model : UNet
        The network. It is copied (threaded scheduler) or sent once to every
        worker (distributed); the caller's model is not changed.
    image : path-like, dask array, zarr array or array-like
        A path is opened with :func:`open_image_lazily` (zarr, OME-Zarr, TIFF)
        and put in the model's layout; an OME-Zarr image's pixel size, units and
        offset then carry over to the result. An array is in the model's layout,
        as for :func:`napari_unet.predict_tiled`: ``(H, W)`` or ``(Z, H, W)`` for
        a single-channel model, ``(C, H, W)`` or ``(C, Z, H, W)`` for ``C``
        channels. Read window by window; never loaded whole.
    output : path-like, zarr store or None
        The OME-Zarr (NGFF 0.5) store to write: an image group holding the
        probabilities (when kept; else empty placeholder levels that take no
        space), with the instance labels as its label image
        ``labels/<label_name>`` (full resolution ``0`` and coarser ``1``, ...
        for display), and the run's metadata in the attribute
        ``"napari_unet"``. On a cluster it must be a location every worker can
        write (a shared file system, or an object store URL that zarr
        understands). None with ``into_input``.
    into_input : bool
        Write the labels into ``image``'s own ``labels/<label_name>`` (``image``
        must be the path of an OME-Zarr image; its NGFF version is kept), where
        other OME-Zarr tools look for them. Only that label image is written and
        the name added to the ``labels`` list; the image's arrays are never
        touched, and a label image of that name that napari-unet did not write is
        refused.
    label_name : str
        The label image's name under ``labels/``.
    scale : sequence of float or None
        Pixel size along ``(z,) y, x`` recorded in the result, when ``image`` is
        not an OME-Zarr path that gives it (for example a napari layer's scale).
    chunk : int, (int, int) or None
        Output chunk per side (1024 by default), which is also the unit of
        work. Rounded up to a multiple of the pooling factor ``2**(depth-1)``
        so that every chunk lies on the pooling grid of the whole image; capped
        at the image.
    tile_shape : int, (int, int) or None
        Output tile per forward pass inside a chunk, rounded up to the pooling
        factor and capped at the chunk. ``None`` takes the largest tiles whose
        activations fit ``memory_budget``, split evenly over the chunk. Pick a
        divisor of ``chunk`` to waste nothing. The result does not depend on it
        (to float rounding).
    batch_size : int
        Tiles per forward pass.
    device : str or None
        Resolved on each worker: ``None``/``"auto"`` picks CUDA, MPS, then CPU.
    normalization : Normalization, dict, False or None
        As for :func:`napari_unet.predict_tiled`. Percentiles come from a
        regular, shape-only subsample of at most about 4 million pixels, the
        same one the in-memory path uses; they are stored in the metadata.
    tta : bool
        Test-time augmentation, as for :func:`napari_unet.predict_tiled`: each
        tile predicted in the 8 symmetries of the square, probabilities
        averaged; about 8x the prediction time. Recorded in the metadata.
    precision : {"auto", "fp32", "bf16", "fp16"}
        As for :func:`napari_unet.segment`: resolved once, for the device of
        this process, and recorded in the metadata (``"precision"``).
    probabilities : bool
        Keep the float32 ``(K, ..., H, W)`` probabilities in the output (4 bytes
        per pixel and class). They are always computed, and otherwise deleted
        once the labels are written.
    threshold : float or None
        As for :func:`napari_unet.labels_from_probabilities`; None: the
        model's recommendation, else 0.5 (the policy of :func:`napari_unet.segment`).
    min_size : int or None
        Smallest object kept, in pixels; applies to whole objects, after
        merging across chunks. None: the model's recommendation, else 16.
    label_margin : int or None
        Pixels of neighbouring probabilities each chunk sees when it is
        labelled. ``None``: 0 for ``method="components"`` (exact without one),
        64 otherwise.
    memory_budget : int or None
        Bytes of activations one forward pass may use when ``tile_shape`` is
        None: 512 MiB by default (less if RAM is short; half the free GPU memory
        on the local scheduler with CUDA).
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
        Replace an existing zarr store at ``output`` (only one napari-unet wrote),
        or with ``into_input`` the image's napari-unet labels of that name.
    progress : callable or None
        Called as ``progress(done, total)`` after every chunk of every phase.
    stack : {"planes", "linked", "views"}
        A ``(Z, H, W)`` stack's objects: each plane on its own (default), or 3D
        objects as for :func:`napari_unet.segment`, made slab by slab in Z
        (:func:`~napari_unet.bigimage.stack3d.iter_predict_stack_to_zarr`).
    voxel_size : sequence of float or None
        3D modes: ``(z, y, x)`` (default the OME-Zarr image's pixel sizes, else 1).
    z_chunk : int or None
        3D modes: planes per slab (default: as many as ``memory_budget`` allows).
    **postprocess
        As for :func:`napari_unet.labels_from_probabilities` (``method``, ``h``,
        ``smoothing``...).

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
    gen = iter_predict_to_zarr(
        model,
        image,
        output,
        into_input=into_input,
        label_name=label_name,
        scale=scale,
        chunk=chunk,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        normalization=normalization,
        tta=tta,
        precision=precision,
        probabilities=probabilities,
        threshold=threshold,
        min_size=min_size,
        label_margin=label_margin,
        memory_budget=memory_budget,
        scheduler=scheduler,
        num_workers=num_workers,
        retries=retries,
        overwrite=overwrite,
        stack=stack,
        voxel_size=voxel_size,
        z_chunk=z_chunk,
        **postprocess,
    )
    return run_to_end(gen, progress_callback(progress))


def iter_predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any = None,
    *,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    precision: str = "auto",
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    stack: str = "planes",
    voxel_size: Any = None,
    z_chunk: int | None = None,
    **postprocess: Any,
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """Generator form of :func:`predict_to_zarr` (same arguments but ``progress``).

    Yields a :class:`ChunkProgress` before any work (``done == 0``), as every
    phase starts and after every chunk of it, and returns the :class:`ZarrPrediction`
    (``StopIteration.value``). Closing the generator between yields cancels the
    run within the chunks under way; the output then stays marked incomplete.
    Arguments are checked before the first yield.
    """
    tta = check_tta(tta)
    prec = resolve_precision(precision, select_device(device))
    if stack != "planes":
        return (
            yield from _iter_stack_3d(
                model, image, output, stack=stack, voxel_size=voxel_size, z_chunk=z_chunk,
                into_input=into_input, scheduler=scheduler, label_name=label_name, scale=scale,
                chunk=chunk, tile_shape=tile_shape, batch_size=batch_size, device=device,
                normalization=normalization, tta=tta, probabilities=probabilities,
                threshold=threshold, precision=prec,
                min_size=min_size, label_margin=label_margin, memory_budget=memory_budget,
                overwrite=overwrite, **postprocess,
            )
        )  # fmt: skip
    # one policy: the model's recommendation under the caller's options, as in segment
    postprocess = resolve_postprocess(
        model, dict(postprocess, threshold=threshold, min_size=min_size)
    )
    threshold, min_size = postprocess.pop("threshold"), postprocess.pop("min_size")
    _check_counts(batch_size=batch_size, min_size=min_size, retries=retries)
    if num_workers is not None and num_workers < 1:
        raise NapariUnetError(f"num_workers must be at least 1, got {num_workers}.")
    label_margin = _label_margin(label_margin, postprocess)
    _check_postprocess(model.n_classes, threshold, postprocess)
    image, source = _open_image(model, image)
    _check_destination(output, into_input, probabilities)
    axes = image_axes(model, image)
    n_spatial = 3 if axes.is_stack else 2
    if scale is not None or source is None:
        spatial = Spatial.plain(n_spatial, scale)
    else:
        spatial = source.spatial(n_spatial)
    norm = resolve_normalization(model, normalization)
    # labels inside an image get its levels (when they halve y and x), as NGFF asks
    image_levels = source.levels_by_two() if into_input and source is not None else None
    chunk_px = chunk_shape(model, axes, chunk, multiple=2 ** ((image_levels or 1) - 1))
    budget = _tile_memory_budget(scheduler, device, memory_budget)
    plan = plan_tiles(model, chunk_px, tile_shape, memory_budget=budget // batch_size)
    chunks = plan_chunks(axes, chunk_px)
    n = len(chunks)
    total = 1 + 3 * n
    run_id = uuid.uuid4().hex[:12]
    runner = make_runner(scheduler, num_workers, retries)
    try:
        target = open_output(
            output,
            overwrite,
            axes=axes,
            spatial=spatial,
            source=source,
            into_input=into_input,
            label_name=label_name,
        )
        target.source_ref = _source_ref(target, source, output)
        yield ChunkProgress("statistics", 0, total)
        with dask.config.set(scheduler=runner.statistics_scheduler()):
            stats = norm.statistics(image, channel_axis=0 if axes.has_channels else None)
        yield ChunkProgress("statistics", 1, total)
        labelling = {
            "threshold": threshold,
            "min_size": min_size,
            "margin": label_margin,
            "postprocess": dict(postprocess),
        }
        meta = _run_metadata(model, image, norm, stats, chunk_px, plan, labelling, tta)
        meta["precision"] = prec.name
        if source is not None:
            meta["source_image"] = str(source.path)
        _write_metadata(target, meta)  # complete: false, until everything below is written
        prob, local = _create_work_arrays(target, axes, chunk_px, model.n_classes, probabilities)
        n_levels = image_levels or pyramid_levels(axes, chunk_px)

        shared = runner.share(SharedModel(model))
        tasks = predict_tasks(
            shared,
            image,
            axes,
            chunks,
            plan,
            (norm, stats),
            (device, batch_size, tta, prec.name),
            prob,
            run_id,
        )
        yield from run_phase(runner, tasks, "predict", 1, total)

        tasks = label_tasks(prob, local, axes, chunks, labelling, run_id)
        # labels_from_probabilities holds the GIL (scipy.ndimage): on local threads a
        # second task only adds memory and contention (measured: slower than one).
        results = yield from run_phase(runner, tasks, "label", 1 + n, total, serial=True)
        luts, sizes = merge_across_faces(results, chunks, label_margin, min_size)
        dtype = _label_dtype(len(sizes))
        levels = create_label_levels(target, axes, chunk_px, n_levels, dtype)
        prob_levels = []
        if probabilities and n_levels > 1:
            prob_levels = create_probability_levels(
                target, axes, chunk_px, n_levels, model.n_classes, first=1
            )
        tasks = relabel_tasks(
            local, levels, axes, chunks, luts, dtype, run_id,
            target.singleton_axes, (prob, prob_levels),
        )  # fmt: skip
        yield from run_phase(runner, tasks, "relabel", 1 + 2 * n, total)

        mark_complete(target, meta, axes, chunk_px, n_levels, sizes, dtype, probabilities)
        yield ChunkProgress("done", total, total)
        if target.into_input:  # the labels list changed on disk, under zarr's feet
            return open_prediction(target.path, label=target.name)
        return read_result(target.root, str(output))
    finally:
        runner.close()


def _iter_stack_3d(
    model: UNet, image: Any, output: Any, *, into_input: bool, scheduler: Any, **options: Any
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """3D objects slab by slab (:mod:`.stack3d`), for what that path supports."""
    from ..volume.axes import check_stack_mode
    from .stack3d import iter_predict_stack_to_zarr

    mode = check_stack_mode(options["stack"])
    if into_input:
        raise NapariUnetError(
            f"3D objects ({mode}) are written to a separate zarr store, not into the input "
            "image; give an output instead."
        )
    if scheduler not in (None, "threads"):
        raise NapariUnetError(
            f"3D objects ({mode}) run on this machine slab by slab, not on a dask cluster."
        )
    return (yield from iter_predict_stack_to_zarr(model, image, output, **options))


# --------------------------------------------------------------------------- checks


def _check_counts(**counts: int) -> None:
    """``batch_size`` at least 1; ``min_size`` and ``retries`` 0 or more."""
    for name, value in counts.items():
        lowest = 1 if name == "batch_size" else 0
        if value < lowest:
            at_least = "at least 1" if lowest else "0 or more"
            raise NapariUnetError(f"{name} must be {at_least}, got {value}.")


def _label_margin(label_margin: int | None, postprocess: dict) -> int:
    """The margin asked for, or the default for the labelling method."""
    if label_margin is None:
        method = postprocess.get("method", "watershed")
        label_margin = 0 if method == "components" else DEFAULT_LABEL_MARGIN
    if label_margin < 0:
        raise NapariUnetError(f"label_margin must be 0 or more, got {label_margin}.")
    return label_margin


def _check_postprocess(n_classes: int, threshold: float, postprocess: dict) -> None:
    """Post-processing options are checked now, on a 1-pixel image, not after hours."""
    labels_from_probabilities(
        np.full((n_classes, 1, 1), 1.0 / n_classes, dtype=np.float32),
        threshold=threshold,
        min_size=0,
        **postprocess,
    )


def _tile_memory_budget(scheduler: Any, device: str | None, memory_budget: int | None) -> int:
    """Bytes of activations one chunk's forward passes may use."""
    budget = min(default_memory_budget(None), _DEFAULT_TASK_BUDGET)  # host RAM
    if scheduler is None or scheduler == "threads":  # cluster workers resolve their device
        dev = select_device(device)
        if dev.type == "cuda":  # activations live on the GPU, not in host RAM
            budget = default_memory_budget(dev)
    return memory_budget or budget


# --------------------------------------------------------------------------- the store


def _run_metadata(
    model: UNet,
    image: da.Array,
    norm: Normalization,
    stats: np.ndarray,
    chunk: tuple[int, int],
    plan: TileGrid | None,
    labelling: dict,
    tta: bool = False,
) -> dict:
    """What the run records, ``"complete": False`` until it is finished.

    ``plan`` is the 2D path's tile grid (None for 3D slabs, whose views plan their own);
    ``tta`` whether the tiles were predicted with test-time augmentation.
    """
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
        "chunk": list(chunk),
        "tta": bool(tta),
        "labels": labelling,
    }
    if plan is not None:
        meta.update(tile_step=list(plan.step), tile_input=list(plan.input_shape), halo=plan.halo)
    return meta


def _open_image(model: UNet, image: Any) -> tuple[da.Array, SourceImage | None]:
    """``image`` as a lazy array in the model's layout, and its OME-Zarr image if any."""
    if not isinstance(image, str | os.PathLike):
        return as_dask(image), None
    from ..layout import to_model_layout

    lazy = to_model_layout(open_image_lazily(image), model.in_channels)
    return as_dask(lazy), read_source_image(image)


def _check_destination(output: Any, into_input: bool, probabilities: bool) -> None:
    """An output, or ``into_input`` without one (and without probabilities)."""
    if into_input:
        if output is not None:
            raise NapariUnetError(
                "With into_input the labels go into the input image; give no output."
            )
        if probabilities:
            raise NapariUnetError(
                "Probabilities are not written into the input image; write a separate "
                "output to keep them."
            )
    elif output is None:
        raise NapariUnetError("Name the zarr store to write the result to.")


def _source_ref(target: OutputTarget, source: SourceImage | None, output: Any) -> str:
    """NGFF ``source`` of the labels: their image, as a path relative to the label image.

    Our own store's labels point at the OME-Zarr input image (both local), else
    at the store's own image group.
    """
    if target.into_input or source is None or not isinstance(output, str | os.PathLike):
        return "../../"
    if "://" in str(output):
        return "../../"
    label_dir = (Path(output) / "labels" / target.name).resolve()
    return os.path.relpath(source.path.resolve(), label_dir).replace(os.sep, "/") + "/"


def _write_metadata(target: OutputTarget, meta: dict) -> None:
    """The run's metadata on the label image (and our store's root).

    Copies: zarr keeps a written attribute's value by reference, and ``meta`` grows later.
    """
    target.label.attrs[ATTR] = copy.deepcopy(meta)
    if not target.into_input:
        target.root.attrs[ATTR] = copy.deepcopy(meta)


def _create_work_arrays(
    target: OutputTarget,
    axes: ImageAxes,
    chunk: tuple[int, int],
    n_classes: int,
    probabilities: bool,
) -> tuple[zarr.Array, zarr.Array]:
    """The probabilities (kept as our image's level 0, or under ``_work/``) and local ids."""
    plane_chunk = (1,) if axes.is_stack else ()
    if probabilities:
        prob = create_probability_levels(target, axes, chunk, 1, n_classes)[0]
    else:
        prob = target.create_array(
            target.label,
            "_work/probabilities",
            shape=axes.out_shape((n_classes,)),
            chunks=(n_classes, *plane_chunk, *chunk),
            dtype="float32",
            compressors=None,  # float noise compresses little; decoding it would cost CPU
        )
    local = target.create_array(
        target.label,
        "_work/local_labels",
        shape=axes.out_shape(),
        chunks=(*plane_chunk, *chunk),
        dtype="int32",
    )
    return prob, local


def _label_dtype(n_objects: int) -> str:
    """The smallest unsigned integer type that holds every id."""
    return "uint16" if n_objects < 2**16 else "uint32" if n_objects < 2**32 else "uint64"


def run_phase(
    runner: ThreadRunner | DistributedRunner,
    tasks: list,
    name: str,
    done: int,
    total: int,
    serial: bool = False,
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
