"""The Annotate dock: paint cells, mark where the annotation is complete, see the weight map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    create_widget,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from .layers import OWNER_KEY
from .prediction import warm_up_worker
from .weightmap_overlay import DEBOUNCE_MS, WeightMapOverlay

if TYPE_CHECKING:
    import napari


def spatial_shape(layer: Any) -> tuple[int, ...]:
    """Shape of an image layer without its colour axis."""
    shape = layer.data[0].shape if getattr(layer, "multiscale", False) else layer.data.shape
    return tuple(shape[:-1]) if layer.rgb else tuple(shape)


def count_cells(labels: np.ndarray) -> int:
    """Number of distinct non-zero ids."""
    ids = np.unique(labels)
    return int((ids != 0).sum())


class AnnotateWidget(Container):
    """Start an annotation, keep count of its cells, mark the annotated region, show weights."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        from ..weightmap import unet_weight_map

        defaults = unet_weight_map.__defaults__  # (w0, sigma, ...) of the core function
        self._viewer = viewer
        self._overlay: WeightMapOverlay | None = None
        self._image = create_widget(label="Image", annotation="napari.layers.Image")
        self._new = PushButton(text="New annotation")
        self._labels = create_widget(
            label="Annotation", annotation="napari.layers.Labels", options={"nullable": True}
        )
        self._auto_id = CheckBox(
            text="New cell id after each stroke", value=True,
            tooltip="Each stroke paints a new cell; untick to keep painting the same cell.",
        )  # fmt: skip
        self._count = Label(label="Cells annotated", value="0")
        self._new_region = PushButton(text="New annotated region")
        self._region = create_widget(
            label="Annotated region", annotation="napari.layers.Shapes", options={"nullable": True}
        )
        self._region_help = Label(
            value="Without a region the whole image counts as annotated.", label=""
        )
        self._show_weights = CheckBox(text="Show weight map", value=False)
        self._w0 = FloatSpinBox(label="w0", value=defaults[0], min=0.0, max=100.0, step=1.0)
        self._sigma = FloatSpinBox(label="sigma (px)", value=defaults[1], min=0.5, max=50.0)
        self._touching = Label(label="", value="")
        self._touching.native.setWordWrap(True)
        self._carve = PushButton(text="Carve 1-pixel gaps between touching cells", visible=False)
        self.extend([
            self._image, self._new, self._labels, self._auto_id, self._count,
            self._new_region, self._region, self._region_help,
            self._show_weights, self._w0, self._sigma, self._touching, self._carve,
        ])  # fmt: skip
        self._count_timer = QTimer(self.native)  # dies with the dock, never fires after it
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(DEBOUNCE_MS)
        self._count_timer.timeout.connect(self._update_count)
        self._watched = None
        self._new.changed.connect(self.new_annotation)
        self._new_region.changed.connect(self.new_region)
        self._labels.changed.connect(self._watch)
        self._show_weights.changed.connect(self._toggle_weights)
        self._w0.changed.connect(self._params)
        self._sigma.changed.connect(self._params)
        self._carve.changed.connect(self.carve_gaps)
        self._warm_up = warm_up_worker()  # numba kernels load off the GUI thread, now
        self.native.destroyed.connect(lambda *_: self._teardown())
        self._watch(self._labels.value)

    # -- annotation layer
    def new_annotation(self) -> None:
        """Add an empty Labels layer for the chosen image, in paint mode with id 1."""
        image = self._image.value
        if image is None:
            show_error("Open or choose an image first.")
            return
        layer = self._viewer.add_labels(
            np.zeros(spatial_shape(image), dtype=np.uint32),
            name=f"{image.name} annotation",
            scale=image.scale[-len(spatial_shape(image)) :],
            translate=image.translate[-len(spatial_shape(image)) :],
            metadata={OWNER_KEY: {"role": "annotation", "source": image.name}},
        )
        layer.brush_size = 5
        layer.mode = "paint"
        layer.selected_label = 1
        self._viewer.layers.selection.active = layer
        self._labels.reset_choices()
        self._labels.value = layer

    def new_region(self) -> None:
        """Add a Shapes layer to draw rectangles/polygons where the annotation is complete."""
        image = self._image.value
        if image is None:
            show_error("Open or choose an image first.")
            return
        layer = self._viewer.add_shapes(
            name=f"{image.name} annotated region",
            ndim=2,
            face_color="transparent",
            edge_color="yellow",
            edge_width=2,
            scale=image.scale[-2:],
            translate=image.translate[-2:],
            metadata={OWNER_KEY: {"role": "region", "source": image.name}},
        )
        layer.mode = "add_rectangle"
        self._viewer.layers.selection.active = layer
        self._region.reset_choices()
        self._region.value = layer
        show_info("Draw rectangles or polygons around the parts you annotated completely.")

    def _watch(self, layer: Any) -> None:
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_paint)
            self._watched.events.data.disconnect(self._on_data)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_paint)
            layer.events.data.connect(self._on_data)
        self._update_count()
        if self._show_weights.value:
            self._stop_overlay()
            self._toggle_weights(True)

    def _teardown(self) -> None:
        """The dock is gone: stop listening to the layer (it may outlive the dock)."""
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_paint)
            self._watched.events.data.disconnect(self._on_data)
            self._watched = None
        if self._overlay is not None:  # the dock's own widgets are being deleted: not them
            self._overlay.close()
            self._overlay = None

    def _on_paint(self, event: Any) -> None:  # a required argument: napari passes the event
        layer = self._watched
        if (
            self._auto_id.value
            and layer is not None
            and layer.selected_label != 0
            and layer.mode == "paint"
        ):
            # the next stroke paints a new cell (largest id + 1, like napari's "M" key);
            # the event comes before the pixels are written, so count the id just used
            layer.selected_label = max(int(np.max(layer.data)), layer.selected_label) + 1
        self._count_timer.start()

    def _on_data(self, event: Any) -> None:
        self._count_timer.start()

    def _update_count(self) -> None:
        layer = self._labels.value
        self._count.value = "0" if layer is None else str(count_cells(np.asarray(layer.data)))

    # -- weight map overlay
    def _toggle_weights(self, on: bool) -> None:
        if not on:
            self._stop_overlay()
            return
        layer = self._labels.value
        if layer is None:
            show_error("Choose or create an annotation first.")
            self._show_weights.value = False
            return
        if self._overlay is None:
            self._overlay = WeightMapOverlay(self._viewer, layer, self._w0.value, self._sigma.value)
            self._overlay.touching.connect(self._on_touching)

    def _params(self, *_: Any) -> None:
        if self._overlay is not None:
            self._overlay.set_params(self._w0.value, self._sigma.value)

    def _stop_overlay(self) -> None:
        if self._overlay is not None:
            self._overlay.close()
            self._overlay = None
        self._touching.value = ""
        self._carve.visible = False

    @property
    def overlay(self) -> WeightMapOverlay | None:
        """The live weight map, when shown."""
        return self._overlay

    def _on_touching(self, n: int) -> None:
        if n:
            self._touching.value = (
                f"Warning: {n} pair(s) of cells touch with no background between them; "
                "the weight map cannot separate them there."
            )
        else:
            self._touching.value = ""
        self._carve.visible = bool(n)

    def carve_gaps(self) -> None:
        """Explicit user action: cut a 1-pixel gap wherever two cells touch."""
        from ..weightmap import carve_gaps

        layer = self._labels.value
        if layer is None:
            return
        before = np.asarray(layer.data)
        layer.data = carve_gaps(before)
        show_info(f"Carved gaps: {int((before != layer.data).sum())} pixels set to background.")
