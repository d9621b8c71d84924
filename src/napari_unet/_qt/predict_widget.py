"""The Predict dock: segment the chosen image with a U-Net, off the GUI thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info

from .batch_panel import BatchPanel
from .dock import ScrollingDock, StatusLine
from .layers import OWNER_KEY, find_own_layer, free_id, is_lazy, layer_choices
from .model_choice import CURRENT, FILE, chosen_path, model_choices, model_loader
from .precision_choice import precision_choice, show_auto_ran
from .prediction import PredictionRunner
from .session import state_for
from .stack_options import StackOptions

if TYPE_CHECKING:
    import napari


class PredictWidget(ScrollingDock):
    """Segment an image layer into "<image> probability" and "<image> segmentation"."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._state = state_for(viewer)
        self._session = self._state.model
        self._runner = PredictionRunner(viewer)
        self._read: list = []  # the model a run read from its file or the bundle
        self._build_model_fields()
        self._build_options()
        self._build_run_fields()
        self._batch = BatchPanel(viewer, self._settings, lambda: self._runner.running)
        self.form.extend(
            [
                self._image,
                self._model_choice,
                self._model_path,
                self._model_info,
                self._tile,
                self._diameter,
                self._tta,
                *self._stack.widgets,
                self._device,
                self._precision,
                self._zarr_out,
                self._segment,
                self._cancel,
                self._progress,
                self._copy,
                self._status,
                *self._batch.widgets,
            ]
        )
        self._model_path.visible = False
        self._zarr_out.visible = False
        self._connect()
        self.finish(self._state)
        self._state.warm_up()

    def _build_model_fields(self) -> None:
        """The image, the model (in use, bundled or a file) and what the one in use is."""
        self._image = ComboBox(label="Image", choices=layer_choices(self._viewer, "Image"))
        self._model_choice = ComboBox(label="Model", choices=model_choices(), value=CURRENT)
        self._model_path = FileEdit(label="Model file", mode="r", filter="*.safetensors")
        self._model_info = StatusLine(2, label="In use", value=self._session.describe())

    def _build_options(self) -> None:
        """How to predict: tile size, object diameter, TTA, stack mode, device, precision."""
        self._tile = SpinBox(
            label="Tile size (0: auto)",
            value=0,
            min=0,
            max=8192,
            step=16,
            tooltip="Output pixels per tile; 0 picks the largest tiles that fit in memory. "
            "The result does not depend on it.",
        )
        self._diameter = FloatSpinBox(
            label="Object diameter",
            value=0.0,
            min=0.0,
            max=2000.0,
            step=1.0,
            tooltip="Typical cell/nucleus diameter in pixels. When it is outside the range "
            "the model was trained for, the image is resized for prediction (results "
            "come back full size; the status says what the resize costs). Objects under "
            "4 px, or needing more than 4x enlargement, are refused. 0: estimate it from "
            "the image (the status says the estimate and the resize); to keep the image "
            "as it is, give a diameter inside the model's range.",
        )
        self._diameter.native.setSpecialValueText("estimate (automatic)")
        self._tta = CheckBox(
            text="Test-time augmentation (8x time)",
            value=False,
            tooltip="Predict every tile 8 times, mirrored and turned by quarter turns, and "
            "average the probabilities: outlines no longer depend on which way up the image "
            "lies. Costs about 8x the time. The result still does not depend on the tile size.",
        )
        # filled in once torch has loaded in the warm-up worker, not on the GUI thread
        self._device = ComboBox(label="Device", choices=self._devices)
        self._precision = precision_choice(
            "Fast: bfloat16 where a one-time check found it at least 1.3x faster on this "
            "computer (probabilities within about 1%), else float32. Exact: float32 always. "
            "The status says which ran."
        )
        self._stack = StackOptions(lambda: self._state.is_warm)  # shows for Z-stacks only

    def _build_run_fields(self) -> None:
        """Segment and Cancel, the progress, the zarr output, the copy button, the status."""
        self._segment = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self._zarr_out = FileEdit(
            label="Output (zarr)",
            mode="w",
            filter="*.zarr",
            tooltip="Images not in memory (dask, zarr) are segmented chunk by chunk into "
            "this zarr store; the result opens lazily.",
        )
        self._copy = PushButton(
            text="Copy segmentation to annotation",
            tooltip="Start an annotation from the prediction, to correct instead of painting.",
        )
        self._status = StatusLine(4, label="", value="")

    def _connect(self) -> None:
        """The fields, the runner and the viewer's shared state, wired to this dock."""
        self._image.changed.connect(self._on_image)
        self._on_image(self._image.value)
        self._model_choice.changed.connect(self._on_choice)
        self._segment.changed.connect(self.segment)
        self._cancel.changed.connect(self.cancel)
        self._copy.changed.connect(self.copy_to_annotation)
        self._runner.progressed.connect(self._on_progress)
        self._runner.planned.connect(self._on_planned)
        self._runner.finished.connect(self._on_finished)
        self._runner.succeeded.connect(self._adopt)
        self._session.changed.connect(self._on_session)
        self._state.warmed.connect(self._device.reset_choices)
        self._state.warmed.connect(self._stack.refresh)

    def _devices(self, _widget: object = None) -> list[str]:
        if not self._state.is_warm:  # torch is still loading in the worker
            return ["auto"]
        from ..device import available_devices

        return ["auto", *available_devices()]

    def _ask_to_stop(self) -> None:
        self._runner.cancel()
        self._batch.cancel()

    def _shutdown(self) -> None:
        """The dock or the viewer closes: stop the prediction and wait for it."""
        self._session.changed.disconnect(self._on_session)
        self._state.warmed.disconnect(self._device.reset_choices)
        self._state.warmed.disconnect(self._stack.refresh)
        self._runner.shutdown()
        self._batch.shutdown()

    @property
    def worker(self):
        """The running prediction worker, or None."""
        return self._runner.worker

    def _on_choice(self, choice: str) -> None:
        self._model_path.visible = choice == FILE

    def _on_image(self, layer) -> None:
        self._zarr_out.visible = layer is not None and is_lazy(layer)
        self._stack.show_for(layer)

    def _on_session(self, session) -> None:
        self._model_info.value = session.describe()
        if session.model is not None:  # a choice here or in another dock: it is in use
            self._model_choice.value = CURRENT

    def _settings(self) -> dict:
        """The model (a loader to call in the worker) and options the fields say.

        Raises ``NapariUnetError`` (a ``ValueError``) when no model can be had.
        """
        choice = self._model_choice.value
        load, source = model_loader(choice, self._model_path.value, self._session, copy=False)
        if choice != CURRENT:  # the model read for this run becomes the viewer's model in use
            load = self._adopting(load, source)
        return {
            "model": load,
            "source": source,
            "tile": self._tile.value or None,
            "device": self._device.value,
            "diameter": self._diameter.value or None,
            "tta": bool(self._tta.value),
            "precision": self._precision.value,
        }

    def _adopting(self, load: Any, source: str) -> Any:
        """``load``, which also keeps the model for :meth:`_adopt` once the run ends."""
        generation = self._session.generation
        read = self._read = []

        def load_and_keep() -> Any:
            model = load()
            read.append((model, source, generation))
            return model

        return load_and_keep

    def _adopt(self) -> None:
        """One model in use per viewer: the one a run read is now every dock's.

        It happens before the run's layers are shown, so they count as made by the
        model in use (Correct the mistakes trusts them).
        """
        read, self._read = self._read, []
        for model, source, generation in read:
            if self._session.generation == generation:  # nothing else was chosen meanwhile
                self._session.set_model(model, source)

    def segment(self) -> None:
        """Predict the chosen image in a thread worker."""
        if self._runner.running:
            return
        if self._batch.running:
            show_error("A batch is under way; wait for it or cancel it first.")
            return
        layer = self._image.value
        if layer is None:
            show_error("Choose an image layer to segment.")
            return
        try:
            settings = self._settings()
            load = settings["model"]
            tile, device, diameter = settings["tile"], settings["device"], settings["diameter"]
            tta, precision = settings["tta"], settings["precision"]
            stack = self._stack.options()
            if is_lazy(layer):
                if stack and stack.get("z_axis") is not None:
                    show_error(
                        "3D objects of an image not in memory need it as (Z, Y, X); "
                        "choose planes for this image."
                    )
                    return
                if diameter is not None:
                    show_error(
                        "Resizing for the object diameter needs the image in memory; "
                        "set the diameter to 0 (estimate) for this image."
                    )
                    return
                out = chosen_path(self._zarr_out.value)
                if out is None or out.suffix != ".zarr":
                    show_error("This image is not in memory: choose a .zarr output to write to.")
                    return
                self._runner.start_lazy(
                    layer, load, str(out), tile=tile, device=device, stack=stack, tta=tta,
                    precision=precision,
                )  # fmt: skip
            else:  # the model is read (and the diameter checked) in the worker
                self._runner.start(
                    layer, load, tile=tile, device=device, diameter=diameter, stack=stack, tta=tta,
                    precision=precision,
                )  # fmt: skip
        except ValueError as exc:
            show_error(str(exc))
            return
        self._segment.enabled = False
        self._cancel.enabled = True
        self._progress.value = 0
        how = " with test-time augmentation (8 passes per tile)" if tta else ""
        self._status.value = f"Segmenting {layer.name}{how}..."

    def cancel(self) -> None:
        """Stop the running prediction after the current batch of tiles."""
        self._runner.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        self._progress.max = max(total, 1)
        self._progress.value = done

    def _on_planned(self, message: str) -> None:
        self._status.value = message

    def _on_finished(self, message: str) -> None:
        self._read = []  # a failed or cancelled run changes no model in use
        self._status.value = message
        show_auto_ran(self._precision, message)
        self._segment.enabled = True
        self._cancel.enabled = False

    def copy_to_annotation(self) -> None:
        """Add a new annotation layer holding a copy of the image's segmentation."""
        layer = self._image.value
        seg = find_own_layer(self._viewer, "segmentation", layer.name) if layer else None
        if seg is None:
            show_error("Segment the image first; there is no segmentation to copy.")
            return
        from ..training.provenance import COPIED_KEY, cell_signatures

        data = np.array(seg.data, copy=True)
        copied = cell_signatures(data, np.unique(data))  # the model's cells, not human truth
        new = self._viewer.add_labels(
            data,
            name=f"{layer.name} annotation",
            metadata={
                OWNER_KEY: {"role": "annotation", "source": layer.name},
                COPIED_KEY: copied,
            },
        )
        new.mode = "paint"
        new.selected_label = free_id(new.data)
        self._viewer.layers.selection.active = new
        self._state.annotation.set(image=layer, labels=new)  # the docks now work on the copy
        show_info(f"Copied {int(new.data.max())} objects to '{new.name}'; correct them there.")
