"""Running a prediction in a thread worker and showing it as layers.

Shared by the Predict dock (Segment) and the Train dock (refresh after training).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from psygnal import Signal

from .layers import OWNER_KEY, find_own_layer, upsert_layer

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari

    from ..model import UNet


def layer_image(layer: Any) -> np.ndarray:
    """The pixels of an image layer (the full-resolution level of a multiscale one)."""
    return np.asarray(layer_data(layer))


def layer_data(layer: Any) -> Any:
    """The full-resolution array of a layer, as it is (numpy, dask, zarr...)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_lazy(layer: Any) -> bool:
    """Whether the layer's pixels are not in memory (dask, zarr): predict chunk by chunk."""
    return not isinstance(layer_data(layer), np.ndarray)


class ComputationError(Exception):
    """A RuntimeError raised in a worker, re-raised under another type.

    superqt takes a worker's RuntimeError for "the worker was deleted" and then
    emits neither ``errored`` nor ``finished``; torch reports real failures (out
    of memory, for one) as RuntimeError, so they must travel as something else.
    """


class UserProblem:
    """What a worker returns instead of raising when the input is at fault."""

    def __init__(self, error: Exception) -> None:
        self.message = str(error)


def drain(gen):
    """Run a core generator inside a worker, passing on its events and its result.

    A :class:`~napari_unet.errors.NapariUnetError` (bad input, in plain words)
    comes back as a :class:`UserProblem` so the dock can show its sentence; any
    other exception is a bug and goes to napari's error reporting with its traceback.
    """
    from ..errors import NapariUnetError

    try:
        return (yield from gen)
    except NapariUnetError as exc:
        return UserProblem(exc)
    except RuntimeError as exc:
        raise ComputationError(str(exc)) from exc


class Cancelled:
    """What a cooperatively cancelled worker returns."""


def until_cancelled(gen, flag):
    """Pass on ``gen``'s events until ``flag`` is set, then close it *in this thread*.

    For generators that run work in threads of their own (dask): closing them
    here waits for that work to stop, so the worker finishes only once nothing
    writes any more, and a new run cannot meet the old one's writes.
    """
    try:
        while True:
            if flag.is_set():
                return Cancelled()
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield event
    finally:
        gen.close()


def call_safely(func, *args):
    """Call ``func`` in a function worker with RuntimeError re-raised as ComputationError."""
    try:
        return func(*args)
    except RuntimeError as exc:
        raise ComputationError(str(exc)) from exc


def start_worker(gen, **connections):
    """A napari generator worker around ``gen``; errors are reported, not re-raised."""
    worker = create_worker(drain, gen, _start_thread=False, _ignore_errors=True)
    for signal, slot in connections.items():
        getattr(worker, signal).connect(slot)
    return worker


def _segment_job(model, data, rgb, diameter, tile, device):
    """In the worker: read the model, predict with its events, then label.

    ``model`` is a model or a function that loads one. Returns
    (foreground probability, labels).
    """
    import torch

    from .. import segment as seg
    from ..layout import to_model_layout
    from ..postprocess import foreground_probability

    if not isinstance(model, torch.nn.Module):
        model = model()
    image = to_model_layout(data, model.in_channels, rgb=rgb)
    rescale = seg.rescale_for_diameter(model, diameter)
    result = yield from seg.iter_segment(
        model, image, rescale=rescale, tile_shape=tile, device=device
    )
    return foreground_probability(result.probabilities), result.labels


def _warm_up() -> None:
    import torch

    from ..model import UNet
    from ..weightmap import warm_up

    warm_up()
    # torch imports its compiler stack on an optimizer's first step (about 2 s of imports)
    tiny = UNet(base_channels=1, depth=1)
    opt = torch.optim.Adam(tiny.parameters())
    tiny(torch.zeros(1, 1, 5, 5)).sum().backward()
    opt.step()


def warm_up_worker():
    """Do the one-time loading (numba kernels, torch's optimizer imports) in a worker.

    Docks call this when they open, so that the first training or weight map does
    not hold the GIL for hundreds of milliseconds while the user waits.
    """
    worker = create_worker(call_safely, _warm_up, _start_thread=False, _ignore_errors=True)
    worker.start()
    return worker


class PredictionRunner:
    """Predicts an image layer off the GUI thread and adds/updates the result layers.

    Results go to "<image> probability" (Image, magma, additive) and
    "<image> segmentation" (Labels), both updated in place on later runs.
    """

    progressed = Signal(int, int)  # done, total
    finished = Signal(str)  # status message

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.worker = None
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
    ) -> None:
        """Start predicting ``layer``; problems become notifications.

        ``model`` may be a function that loads it: it is called in the worker.
        ``diameter`` (typical object size in pixels) resizes the image for the
        network when it is outside the model's range; the layers come back at
        the image's size.
        """
        if self.worker is not None:
            return
        gen = _segment_job(model, layer_image(layer), layer.rgb, diameter, tile, device)
        source = layer.name
        worker = start_worker(
            gen,
            yielded=self._on_progress,
            returned=lambda result: self._on_done(source, result),
            errored=lambda exc: self._end(f"Prediction failed: {exc}", error=True),
            aborted=lambda: self._end("Prediction cancelled."),
            finished=self._on_finished,
        )
        self.worker = worker
        self._bar = napari_progress(total=0, desc=f"Segmenting {source}")
        worker.start()

    def start_lazy(
        self, layer: Any, model: UNet, output: str, *, tile: int | None = None, device: str = "auto"
    ) -> None:
        """Predict a dask/zarr-backed layer chunk by chunk into the zarr store ``output``.

        The result opens as a lazy (multiscale) Labels layer.
        """
        import dask.array as da

        from ..bigimage import iter_predict_to_zarr
        from ..layout import to_model_layout

        if self.worker is not None:
            return
        data = layer_data(layer)
        if not isinstance(data, da.Array):
            data = da.from_zarr(data) if hasattr(data, "chunks") else da.asarray(data)
        image = to_model_layout(data, model.in_channels, rgb=layer.rgb)
        # replaces only an earlier napari-unet result, never another store
        gen = iter_predict_to_zarr(
            model, image, output, tile_shape=tile, device=device, overwrite=True
        )
        self._cancel_flag = threading.Event()
        self.worker = start_worker(
            until_cancelled(gen, self._cancel_flag),
            yielded=self._on_progress,
            returned=lambda result: self._on_lazy_done(layer, result),
            errored=lambda exc: self._end(f"Prediction failed: {exc}", error=True),
            finished=self._on_finished,
        )
        self._bar = napari_progress(total=0, desc=f"Segmenting {layer.name} to {output}")
        self.worker.start()

    def _on_lazy_done(self, layer: Any, result: Any) -> None:
        if isinstance(result, Cancelled):
            self._end("Prediction cancelled; the zarr store is incomplete.")
            return
        if isinstance(result, UserProblem):
            self._end(result.message, error=True)
            return
        old = find_own_layer(self._viewer, "segmentation", layer.name)
        if old is not None:  # a lazy result replaces the layer: its data becomes a pyramid
            self._viewer.layers.remove(old)
        labels = result.labels
        nd = labels[0].ndim  # a stack keeps its Z scale and offset
        self._viewer.add_labels(
            labels if len(labels) > 1 else labels[0], multiscale=len(labels) > 1,
            name=f"{layer.name} segmentation", opacity=0.5, scale=layer.scale[-nd:],
            translate=layer.translate[-nd:],
            metadata={OWNER_KEY: {"role": "segmentation", "source": layer.name}},
        )  # fmt: skip
        self._end(f"{result.n_objects} objects found in {layer.name}; saved to {result.path}.")

    def cancel(self) -> None:
        """Stop after the current batch of tiles (a lazy run: after the chunks under way)."""
        if self.worker is None:
            return
        if self._cancel_flag is not None:
            self._cancel_flag.set()  # the worker closes the run itself, then finishes
        else:
            self.worker.quit()

    def _on_progress(self, event) -> None:
        if self._bar is not None:
            self._bar.total = event.total
            self._bar.n = event.done
            self._bar.refresh()
        self.progressed.emit(event.done, event.total)

    def _on_done(self, source: str, result: tuple[np.ndarray, np.ndarray] | UserProblem) -> None:
        if isinstance(result, UserProblem):
            self._end(result.message, error=True)
            return
        foreground, labels = result
        upsert_layer(
            self._viewer, foreground, kind="image", role="probability",
            source=source, name=f"{source} probability", colormap="magma",
            blending="additive", opacity=0.6, contrast_limits=(0.0, 1.0),
        )  # fmt: skip
        upsert_layer(
            self._viewer, labels, kind="labels", role="segmentation",
            source=source, name=f"{source} segmentation", opacity=0.5,
        )  # fmt: skip
        self._end(f"{int(labels.max())} objects found in {source}.")

    def _end(self, message: str, error: bool = False) -> None:
        from napari.utils.notifications import show_error, show_info

        (show_error if error else show_info)(message)
        self.finished.emit(message)

    def _on_finished(self) -> None:
        self.worker = None
        self._cancel_flag = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
