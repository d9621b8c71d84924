"""Running a prediction in a thread worker and showing it as layers.

Shared by the Predict dock (Segment) and the Train dock (refresh after training).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from ..events import Announcement, CountedProgress
from .layers import OWNER_KEY, find_own_layer, layer_data, layer_image, upsert_layer
from .session import state_for
from .workers import Cancelled, UserProblem, WorkerGroup, until_cancelled

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    import numpy as np

    from ..model import UNet


def _segment_job(
    model, data, rgb, diameter, tile, device, stack=None, rescale=None, tta=False, precision="auto"
):
    """In the worker: read the model, (estimate the object size,) predict with its events, label.

    ``model`` is a model or a function that loads one. ``diameter`` and
    ``rescale`` None estimate the object size; ``rescale=1.0`` keeps the image
    as it is (after training, the model knows the image's own scale). ``stack``
    holds the 3D keywords of ``iter_segment`` (``stack``, ``voxel_size``,
    ``z_axis``); None or empty segments plane by plane. ``tta``: test-time
    augmentation. ``precision``: as for ``iter_segment`` ("auto" measures once, here
    in the worker). Yields the core's events (:mod:`napari_unet.events`): progress,
    and sentences on what the run will do before it does it. Returns (foreground
    probability, labels, the model, the notes, the last saying which precision ran
    and why).
    """
    from .. import segment as seg
    from ..events import Note
    from ..layout import to_model_layout
    from ..modelfile import resolve_model_arg
    from ..postprocess import foreground_probability

    stack = stack or {}
    model = resolve_model_arg(model)
    if stack.get("z_axis") is not None and model.in_channels == 1 and not rgb:
        image = data  # 4D+ (e.g. TZYX): iter_segment finds Z and runs each volume
    else:
        image = to_model_layout(data, model.in_channels, rgb=rgb)
    if stack:  # say what the mode costs before the run
        zhw = _zhw(data.shape, rgb, stack)
        yield Note(seg.describe_stack_mode(zhw, stack["stack"], stack["voxel_size"]))
    # the diameter is checked, and a resize said with its cost, before anything runs;
    # closing this generator (a cancel) closes iter_segment at once
    result = yield from seg.iter_segment(
        model,
        image,
        diameter=diameter,
        rescale=rescale,
        tile_shape=tile,
        device=device,
        tta=tta,
        precision=precision,
        **stack,
    )
    labels = result.labels
    notes = (*result.notes, f"{result.precision.describe()}.")
    return foreground_probability(result.probabilities), labels, model, notes


def _zhw(shape: tuple[int, ...], rgb: bool, stack: dict) -> tuple[int, int, int]:
    """(Z, H, W) of a layer's data for a 3D mode (Z: ``z_axis``, else the third-last axis)."""
    spatial = shape[:-1] if rgb else shape
    z = stack.get("z_axis")
    z = len(spatial) - 3 if z is None else z
    return (int(spatial[z]), int(spatial[-2]), int(spatial[-1]))


def _zarr_job(
    model, data, rgb, output, tile, device, scale=None, stack=None, tta=False, precision="auto"
):
    """In the worker: read the model, then predict ``data`` chunk by chunk into ``output``.

    ``scale`` is the layer's pixel size along the image's spatial axes; the
    OME-Zarr result records it. ``stack`` (``stack`` and ``voxel_size``) asks for
    3D objects, made slab by slab in Z. ``tta``: test-time augmentation; ``precision``
    as for :func:`_segment_job`.
    """
    import dask.array as da

    from ..bigimage import iter_predict_to_zarr
    from ..device import select_device
    from ..layout import to_model_layout
    from ..modelfile import resolve_model_arg
    from ..precision import resolve_precision

    model = resolve_model_arg(model)
    if not isinstance(data, da.Array):
        data = da.from_zarr(data) if hasattr(data, "chunks") else da.asarray(data)
    image = to_model_layout(data, model.in_channels, rgb=rgb)
    # resolved once: the estimate's passes run as the prediction's (one answer)
    precision = resolve_precision(precision, select_device(device))
    diameter = yield from _size_of_lazy(model, image, tile, device, precision)
    n_spatial = 3 if image.ndim - (model.in_channels > 1) == 3 else 2
    scale = tuple(scale[-n_spatial:]) if scale is not None else None
    # replaces only an earlier napari-unet result, never another store
    return (
        yield from iter_predict_to_zarr(
            model,
            image,
            output,
            tile_shape=tile,
            device=device,
            tta=tta,
            precision=precision,
            overwrite=True,
            scale=scale,
            diameter=diameter,
            **{k: v for k, v in (stack or {}).items() if k in ("stack", "voxel_size")},
        )  # fmt: skip
    )


def _size_of_lazy(model, image, tile, device, precision):
    """An image not in memory keeps its scale: its estimated object size, said and returned.

    Reads a crop of at most 1024x1024 px of three planes and segments a window
    of at most 256x256 px, whatever the image's size. Yields the estimate's
    progress, then the sentence (nothing when the image cannot be measured:
    the prediction says why in its own words). Returns the diameter (or None),
    which scales the instance rule as ``segment``'s estimate does.
    """
    from ..errors import NapariUnetError
    from ..events import Note
    from ..sizing import iter_size_at_own_scale

    try:
        gen = iter_size_at_own_scale(
            model, image, tile_shape=tile, device=device, precision=precision
        )
        diameter, message = yield from gen  # closing this generator closes the estimate
    except NapariUnetError:
        return None
    yield Note(message)
    return diameter


def show_segmentation(
    viewer: napari.viewer.Viewer,
    source: str,
    foreground: np.ndarray,
    labels: np.ndarray,
    *,
    made_by: int | None = None,
    like: Any = None,
) -> None:
    """Add or update "<source> probability" and "<source> segmentation" in place.

    ``made_by`` is the generation of the viewer's model in use that made them
    (None: another model), recorded in both layers' metadata tag. ``like`` is
    the image layer they were made from: they take its scale and offset (a
    stack's Z step).
    """
    place = {}
    if like is not None:
        nd = labels.ndim
        place = {"scale": tuple(like.scale[-nd:]), "translate": tuple(like.translate[-nd:])}
    probability = upsert_layer(
        viewer,
        foreground,
        kind="image",
        role="probability",
        source=source,
        name=f"{source} probability",
        colormap="magma",
        blending="additive",
        opacity=0.6,
        contrast_limits=(0.0, 1.0),
        **place,
    )
    segmentation = upsert_layer(
        viewer,
        labels,
        kind="labels",
        role="segmentation",
        source=source,
        name=f"{source} segmentation",
        opacity=0.5,
        **place,
    )
    for layer in (probability, segmentation):
        layer.metadata[OWNER_KEY]["model"] = made_by


class PredictionRunner:
    """Predicts an image layer off the GUI thread and adds/updates the result layers.

    Results go to "<image> probability" (Image, magma, additive) and
    "<image> segmentation" (Labels), both updated in place on later runs. Their
    metadata tag records ``"model"``: the viewer's model generation
    (:attr:`ModelSession.generation`) when the model in use made them, else None.
    """

    progressed = Signal(int, int)  # done, total
    planned = Signal(str)  # what the run will do (a resize and its cost), before it starts
    finished = Signal(str)  # status message
    succeeded = Signal()  # a run ended well: before its layers are shown

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.worker = None
        self._workers = WorkerGroup()
        self._bar = None
        self._cancel_flag: threading.Event | None = None  # lazy runs only

    @property
    def running(self) -> bool:
        """Whether a prediction is under way."""
        return self.worker is not None

    def start(
        self,
        layer: Any,
        model: UNet | Callable[[], UNet],
        *,
        tile: int | None = None,
        device: str = "auto",
        diameter: float | None = None,
        stack: dict | None = None,
        rescale: float | None = None,
        tta: bool = False,
        precision: str = "auto",
    ) -> None:
        """Start predicting ``layer``; problems become notifications.

        ``model`` may be a function that loads it: it is called in the worker.
        ``diameter`` (typical object size in pixels) resizes the image for the
        network when it is outside the model's range; the layers come back at
        the image's size. Without it the size is estimated, unless ``rescale``
        is given (1.0: the image as it is). ``stack``: the 3D keywords of
        ``iter_segment`` (see :class:`~napari_unet._qt.stack_options.StackOptions`),
        None for planes. ``tta``: test-time augmentation (8 passes per tile).
        ``precision``: ``"auto"`` (bfloat16 where measured faster here) or ``"fp32"``.
        """
        if self.worker is not None:
            return
        data = layer_image(layer)
        gen = _segment_job(
            model, data, layer.rgb, diameter, tile, device, stack, rescale, tta, precision
        )
        source = layer.name
        # before the worker starts: napari's progress bar may process events
        self._bar = napari_progress(total=0, desc=f"Segmenting {source}")
        worker = self._workers.start_generator(
            gen,
            yielded=self._on_progress,
            returned=lambda result: self._on_done(source, layer, result),
            errored=lambda exc: self._end(f"Prediction failed: {exc}", error=True),
            aborted=lambda: self._end("Prediction cancelled."),
            finished=self._on_finished,
        )
        self.worker = worker

    def start_lazy(
        self,
        layer: Any,
        model: UNet | Callable[[], UNet],
        output: str,
        *,
        tile: int | None = None,
        device: str = "auto",
        stack: dict | None = None,
        tta: bool = False,
        precision: str = "auto",
    ) -> None:
        """Predict a dask/zarr-backed layer chunk by chunk into the zarr store ``output``.

        ``model`` may be a function that loads it: it is called in the worker.
        The result opens as a lazy (multiscale) Labels layer. ``stack`` and
        ``tta`` as for :meth:`start` (a ``(Z, Y, X)`` stack's 3D objects, slab by slab).
        """
        if self.worker is not None:
            return
        scale = tuple(float(v) for v in layer.scale)
        data = layer_data(layer)
        gen = _zarr_job(model, data, layer.rgb, output, tile, device, scale, stack, tta, precision)
        self._cancel_flag = threading.Event()
        self._bar = napari_progress(total=0, desc=f"Segmenting {layer.name} to {output}")
        self.worker = self._workers.start_generator(
            until_cancelled(gen, self._cancel_flag),
            yielded=self._on_progress,
            returned=lambda result: self._on_lazy_done(layer, result),
            errored=lambda exc: self._end(f"Prediction failed: {exc}", error=True),
            finished=self._on_finished,
        )

    def _on_lazy_done(self, layer: Any, result: Any) -> None:
        if isinstance(result, Cancelled):
            self._end("Prediction cancelled; the zarr store is incomplete.")
            return
        if isinstance(result, UserProblem):
            self._end(result.message, error=True)
            return
        self.succeeded.emit()
        old = find_own_layer(self._viewer, "segmentation", layer.name)
        if old is not None:  # a lazy result replaces the layer: its data becomes a pyramid
            self._viewer.layers.remove(old)
        labels = result.labels
        nd = labels[0].ndim  # a stack keeps its Z scale and offset
        self._viewer.add_labels(
            labels if len(labels) > 1 else labels[0],
            multiscale=len(labels) > 1,
            name=f"{layer.name} segmentation",
            opacity=0.5,
            scale=result.scale,  # the layer's, as the OME-Zarr result records it
            translate=layer.translate[-nd:],
            metadata={OWNER_KEY: {"role": "segmentation", "source": layer.name}},
        )
        words = {"bf16": "bfloat16", "fp16": "float16"}
        ran = words.get(result.metadata.get("precision"), "float32")
        self._end(
            f"{result.n_objects} objects found in {layer.name}; saved to {result.path}. "
            f"Precision: {ran}."
        )

    def cancel(self) -> None:
        """Stop after the current batch of tiles (a lazy run: after the chunks under way)."""
        if self.worker is None:
            return
        if self._cancel_flag is not None:
            self._cancel_flag.set()  # the worker closes the run itself, then finishes
        else:
            self.worker.quit()

    def shutdown(self, timeout: float = 10.0) -> None:
        """The dock or viewer closes: stop the prediction and wait for it to end."""
        if self._cancel_flag is not None:
            self._cancel_flag.set()
        self._workers.stop_all(timeout)
        self._on_finished()  # its signals are no longer delivered

    def _on_progress(self, event: CountedProgress | Announcement) -> None:
        if isinstance(event, Announcement):  # what the run will do, before it does it
            show_info(event.text)
            self.planned.emit(event.text)
            return
        if self._bar is not None:
            self._bar.total = event.total
            self._bar.n = event.done
            self._bar.refresh()
        self.progressed.emit(event.done, event.total)

    def _on_done(self, source: str, layer: Any, result: tuple | UserProblem) -> None:
        if isinstance(result, UserProblem):
            self._end(result.message, error=True)
            return
        foreground, labels, model, notes = result
        self.succeeded.emit()  # the dock may make the model it read the one in use
        session = state_for(self._viewer).model
        made_by = session.generation if model is session.model else None
        show_segmentation(self._viewer, source, foreground, labels, made_by=made_by, like=layer)
        # the estimate and the resize it chose, or why there are no objects
        self._end(" ".join([f"{int(labels.max())} objects found in {source}.", *notes]))

    def _end(self, message: str, error: bool = False) -> None:
        (show_error if error else show_info)(message)
        self.finished.emit(message)

    def _on_finished(self) -> None:
        self.worker = None
        self._cancel_flag = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
