"""The chunk-by-chunk path: 2D images, and stacks plane by plane (``stack="planes"``).

A run has four phases: image statistics, prediction (one task per chunk),
labelling (one task per chunk, then the id merge) and relabelling (one task per
chunk, writing every display level). Their order and the metadata's
``"complete"`` flag, written last, are decided here; the work is in the
sibling modules.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..device import select_device
from ..errors import NapariUnetError
from ..events import ChunkProgress
from ..model import UNet
from ..normalization import Normalization
from ..postprocess import resolve_postprocess
from ..precision import Precision
from ..tiling import TileGrid, default_memory_budget, plan_tiles, resolve_normalization
from .checks import check_counts, check_destination, check_postprocess, resolve_label_margin
from .chunks import Chunk, ImageAxes, chunk_shape, image_axes, plan_chunks
from .merge import merge_across_faces
from .ngff import Spatial
from .output import (
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
from .runners import DistributedRunner, ThreadRunner, make_runner, run_phase
from .store import create_work_arrays, label_dtype, open_input, source_ref, start_metadata
from .tasks import label_tasks, predict_tasks, relabel_tasks
from .worker import SharedModel

__all__ = ["iter_predict_chunks"]

# Activations one task may use by default; a few tasks run at once.
_DEFAULT_TASK_BUDGET = 512 << 20


@dataclass(frozen=True)
class _Run:
    """What every phase of one run needs: where, what, in which chunks."""

    runner: ThreadRunner | DistributedRunner
    target: OutputTarget
    axes: ImageAxes
    chunk: tuple[int, int]
    chunks: list[Chunk]
    run_id: str

    @property
    def total(self) -> int:
        """Steps in all: the statistics, then one per chunk in each of three phases."""
        return 1 + 3 * len(self.chunks)


def iter_predict_chunks(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any,
    *,
    precision: Precision,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    **postprocess: Any,
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """:func:`~napari_unet.bigimage.iter_predict_to_zarr` for ``stack="planes"``.

    Same arguments (``tta`` checked and ``precision`` resolved by the caller).
    """
    labelling = _labelling(model, threshold, min_size, label_margin, postprocess)
    check_counts(batch_size=batch_size, min_size=labelling["min_size"], retries=retries)
    if num_workers is not None and num_workers < 1:
        raise NapariUnetError(f"num_workers must be at least 1, got {num_workers}.")
    labelling["margin"] = resolve_label_margin(label_margin, labelling["postprocess"])
    check_postprocess(model.n_classes, labelling["threshold"], labelling["postprocess"])
    image, source = open_input(model, image)
    check_destination(output, into_input, probabilities)
    axes = image_axes(model, image)
    if scale is not None or source is None:
        spatial = Spatial.plain(3 if axes.is_stack else 2, scale)
    else:
        spatial = source.spatial(3 if axes.is_stack else 2)
    norm = resolve_normalization(model, normalization)
    # labels inside an image get its levels (when they halve y and x), as NGFF asks
    image_levels = source.levels_by_two() if into_input and source is not None else None
    chunk_px = chunk_shape(model, axes, chunk, multiple=2 ** ((image_levels or 1) - 1))
    budget = _tile_memory_budget(scheduler, device, memory_budget)
    plan = plan_tiles(model, chunk_px, tile_shape, memory_budget=budget // batch_size)
    chunks = plan_chunks(axes, chunk_px)
    runner = make_runner(scheduler, num_workers, retries)
    try:
        target = open_output(
            output, overwrite, axes=axes, spatial=spatial, source=source,
            into_input=into_input, label_name=label_name,
        )  # fmt: skip
        target.source_ref = source_ref(target, source, output)
        run = _Run(runner, target, axes, chunk_px, chunks, uuid.uuid4().hex[:12])
        stats = yield from _statistics(run, norm, image)
        meta = start_metadata(
            target, (model, image, norm, stats), chunk_px, plan, labelling,
            tta=tta, precision=str(precision), source=source,
        )  # fmt: skip
        prob, local = create_work_arrays(target, axes, chunk_px, model.n_classes, probabilities)
        n_levels = image_levels or pyramid_levels(axes, chunk_px)
        forward = (device, batch_size, tta, precision.name)
        yield from _predict(run, model, image, plan, (norm, stats), forward, prob)
        luts, sizes = yield from _label(run, prob, local, labelling)
        dtype = label_dtype(len(sizes))
        yield from _relabel(run, (prob, local), luts, dtype, n_levels, probabilities)
        mark_complete(target, meta, axes, chunk_px, n_levels, sizes, dtype, probabilities)
        yield ChunkProgress("done", run.total, run.total)
        if target.into_input:  # the labels list changed on disk, under zarr's feet
            return open_prediction(target.path, label=target.name)
        return read_result(target.root, str(output))
    finally:
        runner.close()


def _labelling(
    model: UNet,
    threshold: float | None,
    min_size: int | None,
    label_margin: int | None,
    postprocess: dict,
) -> dict:
    """How chunks are labelled, as the metadata records it (the margin comes later).

    One policy: the model's recommendation under the caller's options, as in segment.
    """
    postprocess = dict(postprocess)
    diameter = postprocess.pop("diameter", None)  # scales the rule, as in segment
    postprocess = resolve_postprocess(
        model, dict(postprocess, threshold=threshold, min_size=min_size), diameter=diameter
    )
    threshold, min_size = postprocess.pop("threshold"), postprocess.pop("min_size")
    return {
        "threshold": threshold,
        "min_size": min_size,
        "margin": label_margin,
        "postprocess": dict(postprocess),
    }


def _tile_memory_budget(scheduler: Any, device: str | None, memory_budget: int | None) -> int:
    """Bytes of activations one chunk's forward passes may use."""
    budget = min(default_memory_budget(None), _DEFAULT_TASK_BUDGET)  # host RAM
    if scheduler is None or scheduler == "threads":  # cluster workers resolve their device
        dev = select_device(device)
        if dev.type == "cuda":  # activations live on the GPU, not in host RAM
            budget = default_memory_budget(dev)
    return memory_budget or budget


def _statistics(
    run: _Run, norm: Normalization, image: da.Array
) -> Generator[ChunkProgress, None, np.ndarray]:
    """The normalisation's statistics of the whole image, computed once."""
    yield ChunkProgress("statistics", 0, run.total)
    with dask.config.set(scheduler=run.runner.statistics_scheduler()):
        stats = norm.statistics(image, channel_axis=0 if run.axes.has_channels else None)
    yield ChunkProgress("statistics", 1, run.total)
    return stats


def _predict(
    run: _Run,
    model: UNet,
    image: da.Array,
    plan: TileGrid,
    normalised: tuple,
    forward: tuple,
    prob: Any,
) -> Generator[ChunkProgress, None, None]:
    """Every chunk's probabilities, one task each, into ``prob``."""
    shared = run.runner.share(SharedModel(model))
    tasks = predict_tasks(
        shared, image, run.axes, run.chunks, plan, normalised, forward, prob, run.run_id
    )
    yield from run_phase(run.runner, tasks, "predict", 1, run.total)


def _label(
    run: _Run, prob: Any, local: Any, labelling: dict
) -> Generator[ChunkProgress, None, tuple[list, np.ndarray]]:
    """Every chunk labelled on its own, then the ids merged across chunk faces."""
    tasks = label_tasks(prob, local, run.axes, run.chunks, labelling, run.run_id)
    # labels_from_probabilities holds the GIL (scipy.ndimage): on local threads a
    # second task only adds memory and contention (measured: slower than one).
    n = len(run.chunks)
    results = yield from run_phase(run.runner, tasks, "label", 1 + n, run.total, serial=True)
    return merge_across_faces(results, run.chunks, labelling["margin"], labelling["min_size"])


def _relabel(
    run: _Run,
    work: tuple[Any, Any],
    luts: list,
    dtype: str,
    n_levels: int,
    probabilities: bool,
) -> Generator[ChunkProgress, None, None]:
    """Consecutive global ids written at every display level (and the probabilities')."""
    prob, local = work
    target, axes, chunk = run.target, run.axes, run.chunk
    levels = create_label_levels(target, axes, chunk, n_levels, dtype)
    prob_levels = []
    if probabilities and n_levels > 1:
        prob_levels = create_probability_levels(
            target,
            axes,
            chunk,
            n_levels,
            prob.shape[0],
            first=1,  # prob: (K, ...)
        )
    tasks = relabel_tasks(
        local, levels, axes, run.chunks, luts, dtype, run.run_id,
        target.singleton_axes, (prob, prob_levels),
    )  # fmt: skip
    n = len(run.chunks)
    yield from run_phase(run.runner, tasks, "relabel", 1 + 2 * n, run.total)
