"""The Predict dock: segment the chosen image with a U-Net, off the GUI thread."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from .layers import upsert_layer

if TYPE_CHECKING:
    import napari


class PredictWidget(Container):
    """Segment an image layer; results go to "<image> probability" and "<image> segmentation"."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self._image = create_widget(label="Image", annotation="napari.layers.Image")
        self._model_path = FileEdit(label="Model file", mode="r", filter="*.safetensors", value="")
        self._tile = SpinBox(
            label="Tile size",
            value=0,
            min=0,
            max=8192,
            step=16,
            tooltip="Output pixels per tile; 0 picks large tiles automatically.",
        )
        self._device = ComboBox(label="Device", choices=self._device_choices(), value="auto")
        self._segment = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self._status = Label(label="", value="")
        self.extend(
            [
                self._image,
                self._model_path,
                self._tile,
                self._device,
                self._segment,
                self._cancel,
                self._progress,
                self._status,
            ]
        )
        self._segment.changed.connect(self.segment)
        self._cancel.changed.connect(self.cancel)
        self.native.destroyed.connect(self.cancel)

    @staticmethod
    def _device_choices() -> list[str]:
        from ..device import available_devices

        return ["auto", *available_devices()]

    @property
    def worker(self):
        """The running prediction worker, or None."""
        return self._worker

    def segment(self) -> None:
        """Start predicting the chosen image in a thread worker."""
        from ..layout import to_model_layout
        from ..modelfile import load_model
        from ..tiling import iter_predict_tiled

        if self._worker is not None:
            return
        layer = self._image.value
        if layer is None:
            show_error("Choose an image layer to segment.")
            return
        path = Path(str(self._model_path.value))
        if not str(self._model_path.value) or path == Path("."):
            show_error("Choose a model file (.safetensors) first.")
            return
        try:
            model = load_model(path)
            image = to_model_layout(_layer_array(layer), model.in_channels, rgb=layer.rgb)
        except ValueError as exc:
            show_error(str(exc))
            return
        tile = self._tile.value or None
        gen = iter_predict_tiled(model, image, tile_shape=tile, device=self._device.value)
        worker = create_worker(_drain, gen, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda prob: self._on_done(layer.name, prob))
        worker.errored.connect(lambda exc: show_error(f"Prediction failed: {exc}"))
        worker.aborted.connect(lambda: self._status.__setattr__("value", "Cancelled."))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._segment.enabled = False
        self._cancel.enabled = True
        self._status.value = "Segmenting..."
        worker.start()

    def cancel(self, *_: Any) -> None:
        """Stop the running prediction after the current batch of tiles."""
        if self._worker is not None:
            self._worker.quit()

    def _on_progress(self, event) -> None:
        self._progress.max = event.total
        self._progress.value = event.done

    def _on_done(self, source: str, prob) -> None:
        from ..postprocess import foreground_probability, labels_from_probabilities

        labels = labels_from_probabilities(prob)
        upsert_layer(
            self._viewer,
            foreground_probability(prob),
            kind="image",
            role="probability",
            source=source,
            name=f"{source} probability",
            colormap="magma",
            blending="additive",
            opacity=0.5,
            contrast_limits=(0.0, 1.0),
        )
        upsert_layer(
            self._viewer,
            labels,
            kind="labels",
            role="segmentation",
            source=source,
            name=f"{source} segmentation",
        )
        self._status.value = f"{int(labels.max())} objects found."
        show_info(f"Segmented {source}: {int(labels.max())} objects.")

    def _on_finished(self) -> None:
        self._worker = None
        self._segment.enabled = True
        self._cancel.enabled = False


def _drain(gen):
    """Run a core generator inside the worker, passing on its events and its result."""
    return (yield from gen)


def _layer_array(layer) -> Any:
    import numpy as np

    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return np.asarray(data)
