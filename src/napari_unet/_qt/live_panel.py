"""The Train dock's Live toggle: the model learns while the user paints.

A thread worker runs :class:`~napari_unet.training.live.LiveTrainer` from the
model in use. Every stroke (napari's paint event), undo and redo of the
annotation sends only its bounding box: the trainer reads those pixels of the
layer itself, between two steps, so the GUI thread never copies the layer. A
region drawn, moved or deleted in the dock's region layer (or "This image is
completely annotated" ticked) joins the same way. Cells copied from a prediction
are never held out for validation while unedited, as in Fine-tune. The field
in view (the canvas's extent at the current plane) is the preview box; its
previews are written into the "<image> probability" and "<image> segmentation"
layers in place. Switching Live off records one round as Fine-tune does; closing
napari meanwhile stops after the current step and keeps the model trained so far
(:func:`~napari_unet._qt.training_runner.recovery_folder`).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox
from napari.utils.notifications import show_error, show_info

from ..errors import NapariUnetError
from ..training.provenance import COPIED_KEY
from .layers import find_own_layer, history_lengths, region_mask, upsert_layer
from .training_runner import recovery_folder
from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    from ..training.live import LiveEvent, LiveTrainer

__all__ = ["LivePanel", "atom_boxes", "camera_of", "visible_box"]

Box = tuple[int, int, int, int]


def atom_boxes(atoms: Any, ndim: int) -> list[tuple[slice, ...]]:
    """The bounding boxes (slices over all axes) of napari history atoms."""
    boxes = []
    for atom in atoms:
        key = getattr(atom, "slice_key", None)
        if key is not None:  # napari's masked paint atom: its box is stored
            boxes.append(tuple(key))
            continue
        indices = atom[0]  # (indices, old values, new values)
        if not len(indices) or not np.size(indices[0]):
            continue
        boxes.append(tuple(slice(int(np.min(i)), int(np.max(i)) + 1) for i in indices))
    return [b for b in boxes if len(b) == ndim]


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def visible_box(viewer: Any, layer: Any) -> tuple[int, Box]:
    """The plane and the box of ``layer`` (data pixels) that the canvas shows now."""
    canvas = getattr(viewer, "canvas", None)
    h, w = canvas.size if canvas is not None else viewer._canvas_size
    camera = camera_of(viewer)
    zoom = max(float(camera.zoom), 1e-6)
    cy, cx = camera.center[-2:]
    point = list(viewer.dims.point)
    corners = []
    for dy, dx in ((-1, -1), (1, 1)):
        p = point.copy()
        p[-2], p[-1] = cy + dy * h / (2 * zoom), cx + dx * w / (2 * zoom)
        corners.append(np.asarray(layer.world_to_data(p[-layer.ndim :])))
    (y0, x0), (y1, x1) = corners[0][-2:], corners[1][-2:]
    shape = layer.data.shape
    z = int(np.clip(round(float(corners[0][0])), 0, shape[0] - 1)) if layer.ndim == 3 else 0
    H, W = shape[-2:]
    y0, y1 = int(np.clip(np.floor(y0), 0, H - 1)), int(np.clip(np.ceil(y1), 1, H))
    x0, x1 = int(np.clip(np.floor(x0), 0, W - 1)), int(np.clip(np.ceil(x1), 1, W))
    return z, (y0, max(y1, y0 + 1), x0, max(x1, x0 + 1))


class LivePanel:
    """Live mode of a Train dock (``dock``): the toggle, its worker and its layers."""

    def __init__(self, dock: Any) -> None:
        self._dock = dock
        self._viewer = dock._viewer
        self.toggle = CheckBox(text="Live: learn while I paint", value=False)
        self.toggle.tooltip = (
            "Train all the time from the model in use; every stroke joins the training "
            "within seconds and the field in view is predicted about every 10 s. "
            "Switching it off keeps the model as a round. Live trains on the image and "
            "annotation chosen above only, not on the training set."
        )
        self.toggle.changed.connect(self._on_toggle)
        self._workers = WorkerGroup()
        self.worker = None
        self.live: LiveTrainer | None = None
        self.last: LiveEvent | None = None
        self.saved_on_close = None
        self._layer = self._image = self._region = None
        self._shape: tuple[int, ...] = ()
        self._pending: list[tuple[int, Box]] = []
        self._history = None
        self._next_id = 0
        self._quiet = False  # the toggle set from code
        self._stopping = False
        self.preview_every = 10.0  # seconds between previews, at least

    @property
    def running(self) -> bool:
        """Whether live training is under way."""
        return self.worker is not None

    def _set(self, on: bool) -> None:
        self._quiet = True
        try:
            self.toggle.value = on
        finally:
            self._quiet = False

    def _on_toggle(self, on: bool) -> None:
        if self._quiet:
            return
        if on and self.worker is None:
            self.start()
        elif not on:
            self.stop()

    # -- start
    def start(self) -> None:
        """Switch live training on for the dock's image and annotation."""
        dock = self._dock
        try:
            if dock.runner.running:
                raise NapariUnetError("Fine-tune is running; stop it before going live.")
            image, labels, region, image_layer = dock._snapshot()
            if not labels.any():
                raise NapariUnetError("Paint at least one cell before switching live training on.")
            loader, source = dock._live_model()
            config = dock.config()
        except ValueError as exc:
            show_error(str(exc))
            self._set(False)
            return
        self._layer, self._image = dock._annotation.value, image_layer
        self._region = dock._region.value
        copied = dict(self._layer.metadata.get(COPIED_KEY) or {})
        self._shape = tuple(labels.shape)
        self._history = history_lengths(self._layer)
        self._pending = []
        self._stopping = False
        self._next_id = 0
        self.last = None
        self.live = None
        self._connect(True)
        dock._live_started(image_layer, source)
        self.worker = self._workers.start_generator(
            self._job(image, labels, loader, config, image_layer.name, (region, copied)),
            yielded=self._on_event,
            returned=self._on_returned,
            errored=lambda exc: self._failed(f"Live training failed: {exc}"),
            finished=self._on_finished,
        )

    def _job(self, image, labels, loader, config, name, extra=(None, None)):
        """The worker: read or copy the model, then train until stopped.

        ``extra``: the annotated region (or None) and the record of copied cells.
        """
        import torch

        from ..modelfile import resolve_model_arg
        from ..training.live import LiveTrainer

        model = resolve_model_arg(loader)
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads - 1))  # one core stays the GUI's
        try:
            live = LiveTrainer(
                model, image, labels, config=config, name=name, preview_every=self.preview_every,
                region=extra[0], copied=extra[1], memory=self._dock.first_sight,
            )  # fmt: skip
            if self._stopping:  # switched off (or napari closed) while the model loaded
                live.stop()
            self.live = live  # from now on the GUI hands strokes to it directly
            for z, box in self._pending:
                if z is None:
                    live.update_region(box)
                else:
                    live.update(z, box, self._pixels(z, box))
            model = yield from live.run()
        finally:
            torch.set_num_threads(threads)
        return model

    # -- the layers' events
    def _connect(self, on: bool) -> None:
        layer, viewer = self._layer, self._viewer
        pairs = [
            (layer.events.paint, self._on_paint),
            (layer.events.set_data, self._on_set_data),
            (layer.events.data, self._on_new_data),
            (viewer.layers.events.removed, self._on_removed),
            (camera_of(viewer).events.center, self._request_view),
            (camera_of(viewer).events.zoom, self._request_view),
            (viewer.dims.events.current_step, self._request_view),
        ]
        if self._region is not None:
            pairs.append((self._region.events.data, self._on_region))
        pairs.append((self._dock._region.changed, self._on_region_layer))
        pairs.append((self._dock.scope.complete.toggled, self._on_region))
        for signal, slot in pairs:
            if on:
                signal.connect(slot)
            else:
                try:
                    signal.disconnect(slot)
                except (TypeError, ValueError, RuntimeError):
                    pass

    def _on_region_layer(self, layer: Any = None) -> None:
        """Another region layer was chosen in the dock: follow it."""
        if self._region is not None:
            self._region.events.data.disconnect(self._on_region)
        self._region = layer
        if layer is not None:
            layer.events.data.connect(self._on_region)
        self._on_region()

    def _on_region(self, event: Any = None) -> None:
        """The annotated region changed: its mask joins the training data."""
        if str(getattr(event, "action", "")) in ("adding", "removing", "changing"):
            return  # napari says it again when done
        from .training_scope import is_complete

        shapes = self._region
        if is_complete(self._layer):
            region = np.ones(self._shape, bool)
        elif shapes is None or not len(shapes.data) or shapes not in self._viewer.layers:
            region = None
        else:
            region = region_mask(shapes, self._shape)
        live = self.live
        if live is None:
            self._pending.append((None, region))
        else:
            live.update_region(region)

    def _pixels(self, z: int, box: Box) -> np.ndarray:
        """A view of the annotation's pixels in ``box`` (read by the trainer, later)."""
        data = self._layer.data
        y0, y1, x0, x1 = box
        return data[z, y0:y1, x0:x1] if data.ndim == 3 else data[y0:y1, x0:x1]

    def _send(self, keys: list[tuple[slice, ...]]) -> None:
        for key in keys:
            y, x = key[-2], key[-1]
            box = (y.start or 0, y.stop, x.start or 0, x.stop)
            planes = range(key[0].start, key[0].stop) if len(key) == 3 else [0]
            for z in planes:
                live = self.live
                if live is None:
                    self._pending.append((z, box))
                else:
                    live.update(z, box, self._pixels(z, box))

    def _on_paint(self, event: Any) -> None:
        self._history = history_lengths(self._layer)
        self._send(atom_boxes(event.value, self._layer.ndim))

    def _on_set_data(self, event: Any = None) -> None:
        """Undo and redo write pixels without a paint event: the moved item's boxes."""
        now, before = history_lengths(self._layer), self._history
        if now is None or now == before:
            return  # a refresh: nothing new
        self._history = now
        layer = self._layer
        moved = layer._redo_history if before and now[1] > before[1] else layer._undo_history
        if moved:
            self._send(atom_boxes(moved[-1], layer.ndim))

    def _on_new_data(self, event: Any = None) -> None:
        """A new array in the annotation layer: all of it is sent (one box per plane)."""
        data = self._layer.data
        self._history = history_lengths(self._layer)
        if tuple(data.shape) != self._shape:
            show_info("The annotation changed shape: live training stops and keeps its model.")
            self.stop()
            return
        planes = range(data.shape[0]) if data.ndim == 3 else [0]
        h, w = data.shape[-2:]
        self._send([(slice(z, z + 1), slice(0, h), slice(0, w)) if data.ndim == 3
                    else (slice(0, h), slice(0, w)) for z in planes])  # fmt: skip

    def _on_removed(self, event: Any) -> None:
        if event.value is self._layer:
            show_info("The annotation layer was deleted: live training stops and keeps its model.")
            self.stop()

    def _request_view(self, *_: Any) -> None:
        live, image = self.live, self._image
        if live is None or image is None or image not in self._viewer.layers:
            return
        try:
            live.request_preview(*visible_box(self._viewer, image))
        except (ValueError, IndexError):  # a view outside the image: keep the last request
            return

    # -- results
    def _on_event(self, event: LiveEvent) -> None:
        from ..training.live import LiveState

        self.last = event
        if event.state is LiveState.STARTED:
            self._request_view()  # the view now; then whenever it moves
        self._dock._live_event(event)
        if event.state is LiveState.PREVIEW and self._image in self._viewer.layers:
            self._show(event.preview)

    def _show(self, preview: Any) -> None:
        """Write a preview into the probability and segmentation layers, in place."""
        layers = {role: self._result_layer(role) for role in ("probability", "segmentation")}
        shape = tuple(self._layer.data.shape)
        y0, y1, x0, x1 = preview.box
        where = (
            (preview.z, slice(y0, y1), slice(x0, x1)) if len(shape) == 3 else np.s_[y0:y1, x0:x1]
        )
        seg = layers["segmentation"]
        if self._next_id == 0:
            self._next_id = int(np.max(seg.data)) + 1  # once: ids stay unique over previews
        labels = preview.labels
        seg.data[where] = np.where(labels > 0, labels + self._next_id - 1, 0)
        self._next_id += int(labels.max(initial=0))
        layers["probability"].data[where] = 1.0 - preview.probabilities[0]
        for layer in layers.values():
            layer.refresh()

    def _result_layer(self, role: str) -> Any:
        """The image's probability or segmentation layer, made (empty) when missing."""
        image, viewer = self._image, self._viewer
        shape = tuple(self._layer.data.shape)
        layer = find_own_layer(viewer, role, image.name)
        if layer is not None and tuple(layer.data.shape) == shape:
            return layer
        if role == "probability":
            data = np.zeros(shape, np.float32)
            look = dict(colormap="magma", blending="additive", opacity=0.6,
                        contrast_limits=(0.0, 1.0))  # fmt: skip
        else:
            data, look = np.zeros(shape, np.int32), dict(opacity=0.5)
        kind = "image" if role == "probability" else "labels"
        return upsert_layer(
            viewer, data, kind=kind, role=role, source=image.name, name=f"{image.name} {role}",
            scale=image.scale[-len(shape) :], translate=image.translate[-len(shape) :], **look,
        )  # fmt: skip

    # -- stop
    def stop(self) -> None:
        """Switch live training off: it stops after the current step and records a round."""
        self._set(False)
        self._stopping = True
        if self.live is not None:
            self.live.stop()

    def _on_returned(self, model: Any) -> None:
        if isinstance(model, UserProblem):
            self._failed(model.message)
            return
        live = self.live
        if live is not None and self.last is not None:
            self._dock._live_done(model, self.last, live.trainer)

    def _failed(self, message: str) -> None:
        self._set(False)
        self._dock._live_failed(message)

    def _on_finished(self) -> None:
        if self._layer is not None:
            self._connect(False)
        self.worker = None

    def shutdown(self, timeout: float = 60.0) -> None:
        """Napari or the dock closes: stop after the current step, keep the model, wait."""
        running = self.worker is not None
        self._stopping = True
        live = self.live
        if live is not None:
            live.stop()
        self._workers.stop_all(timeout, interrupt=False)
        live = self.live  # it may have started meanwhile
        self._on_finished()
        if running and live is not None and live.trainer.step > 0:
            from ..modelfile import save_model

            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = recovery_folder() / f"{stamp}-live-{live.trainer.step}steps.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.saved_on_close = save_model(live.model, path)
            print(
                f"napari-unet: napari closed during live training; the model trained so far "
                f"({live.trainer.step} steps) is saved to {path}",
                file=sys.stderr,
            )
