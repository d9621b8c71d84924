"""The Annotate dock: paint cells, mark where the annotation is complete, see the weight map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton
from napari.utils.notifications import show_error, show_info

from ..paper import SIGMA, W0
from .cell_counter import CellCounter
from .dock import ScrollingDock, StatusLine
from .layers import OWNER_KEY, image_of, layer_choices, spatial_shape
from .project_session import project_for
from .session import state_for
from .weightmap_overlay import WeightMapOverlay

REGION_TIP = (
    "Rectangles or polygons around the parts where you painted every cell. There, "
    "unpainted pixels teach the model 'background'; outside, nothing is learnt. "
    "Without a region only your cells and the background around them count (tick 'This "
    "image is completely annotated' in Train when every cell is painted)."
)

if TYPE_CHECKING:
    import napari


class AnnotateWidget(ScrollingDock):
    """Start an annotation, keep count of its cells, mark the annotated region, show weights.

    The annotation made or chosen here is the viewer's current annotation: the
    Train dock trains on it.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._state = state_for(viewer)
        project_for(viewer)  # the annotation is autosaved from the first stroke on
        self._overlay: WeightMapOverlay | None = None
        self._retired: list[WeightMapOverlay] = []  # switched off, maybe still computing
        self._counter: CellCounter | None = None
        self._first_count = False
        self.form.extend([*self._annotation_fields(viewer), *self._weight_fields()])
        self._new.changed.connect(self.new_annotation)
        self._new_region.changed.connect(self.new_region)
        self._annotation.changed.connect(self._on_annotation_choice)
        self._image.changed.connect(lambda _: self._annotation.reset_choices())
        self._region.changed.connect(lambda layer: self._state.annotation.set(region=layer))
        self._show_weights.changed.connect(self._toggle_weights)
        self._w0.changed.connect(self._params)
        self._sigma.changed.connect(self._params)
        self._carve.changed.connect(self.carve_gaps)
        self._state.annotation.changed.connect(self._follow)
        self.finish(self._state)
        self._state.warm_up()  # numba kernels and torch load off the GUI thread, now
        self._follow(self._state.annotation)
        self._watch(self._annotation.value)

    def _annotation_fields(self, viewer: napari.viewer.Viewer) -> list:
        """Which image and annotation, the cell count, the annotated region."""
        self._image = ComboBox(label="Image", choices=layer_choices(viewer, "Image"))
        self._new = PushButton(text="New annotation")
        self._annotation = ComboBox(
            label="Annotation",
            choices=layer_choices(viewer, "Labels", fits=lambda: self._image.value),
            nullable=True,
        )
        self._auto_id = CheckBox(
            text="New cell id after each stroke",
            value=True,
            tooltip="Each stroke paints a new cell; untick to keep painting the same cell.",
        )
        self._count = StatusLine(1, label="Cells annotated", value="0")
        self._new_region = PushButton(text="New annotated region")
        self._region = ComboBox(
            label="Annotated region",
            choices=layer_choices(viewer, "Shapes"),
            nullable=True,
            tooltip=REGION_TIP,
        )
        # Three lines fit it beside the field at the dock's width; the row keeps that height.
        self._region_help = StatusLine(
            3,
            value="Without a region only your cells and the background around them count.",
            label="",
        )
        return [
            self._image,
            self._new,
            self._annotation,
            self._auto_id,
            self._count,
            self._new_region,
            self._region,
            self._region_help,
        ]

    def _weight_fields(self) -> list:
        """The weight map (w0, sigma) and the gaps between touching cells."""
        self._show_weights = CheckBox(
            text="Show weight map",
            value=False,
            tooltip="Show where training pays extra attention: the thin gaps between touching "
            "cells are weighted most, so that the model learns to keep the cells apart.",
        )
        self._w0 = FloatSpinBox(
            label="w0",
            value=W0,
            min=0.0,
            max=100.0,
            step=1.0,
            tooltip="How much more a pixel in a gap between two cells counts in training "
            "(the U-Net paper uses 10). Raise it when touching cells come out merged.",
        )
        self._sigma = FloatSpinBox(
            label="sigma (px)",
            value=SIGMA,
            min=0.5,
            max=50.0,
            tooltip="How far from the gap between cells the extra weight reaches, in pixels "
            "(the paper uses 5). About half the usual gap between your cells.",
        )
        self._touching = StatusLine(2, label="", value="")
        self._carve = PushButton(text="Carve 1-pixel gaps between touching cells", visible=False)
        return [self._show_weights, self._w0, self._sigma, self._touching, self._carve]

    # -- the shared current annotation
    def _follow(self, choice: Any) -> None:
        """Show the viewer's current annotation (set here, or by another dock)."""
        for widget, layer in (
            (self._image, choice.image),
            (self._annotation, choice.labels),
            (self._region, choice.region),
        ):
            if layer is not None and layer in self._viewer.layers and widget.value is not layer:
                widget.reset_choices()
                if layer in widget.choices:  # an annotation of another shape is not offered
                    widget.value = layer

    def _on_annotation_choice(self, layer: Any) -> None:
        self._watch(layer)
        if layer is not None:
            image = image_of(self._viewer, layer) or self._image.value
            self._state.annotation.set(image=image, labels=layer)

    # -- annotation layer
    def new_annotation(self) -> None:
        """Add an empty Labels layer for the chosen image, in paint mode with id 1."""
        image = self._image.value
        if image is None:
            show_error("Open or choose an image first.")
            return
        shape = spatial_shape(image)
        layer = self._viewer.add_labels(
            np.zeros(shape, dtype=np.uint32),
            name=f"{image.name} annotation",
            scale=image.scale[-len(shape) :],
            translate=image.translate[-len(shape) :],
            metadata={OWNER_KEY: {"role": "annotation", "source": image.name}},
        )
        layer.brush_size = 5
        layer.mode = "paint"
        layer.selected_label = 1
        self._viewer.layers.selection.active = layer
        self._annotation.reset_choices()
        self._annotation.value = layer

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
        if self._counter is not None and self._counter.layer is layer:
            return
        self._unwatch()
        if layer is not None:
            self._counter = CellCounter(layer)
            self._first_count = True  # its first count sets the brush to a free id
            self._counter.changed.connect(self._show_count)
            self._counter.recounted.connect(self._after_recount)
            layer.events.paint.connect(self._on_paint)  # after the counter: it knows the id
        self._show_count()
        if self._show_weights.value:
            self._stop_overlay()
            if layer is None:  # the annotation went away (or napari is closing): nothing to show
                self._show_weights.value = False
            else:
                self._toggle_weights(True)

    def _unwatch(self, timeout: float = 5.0) -> None:
        if self._counter is not None:
            self._counter.layer.events.paint.disconnect(self._on_paint)
            self._counter.changed.disconnect(self._show_count)
            self._counter.recounted.disconnect(self._after_recount)
            self._counter.close(timeout)
            self._counter = None

    def _shutdown(self) -> None:
        """The dock or the viewer closes: stop listening, wait for work under way."""
        self._state.annotation.changed.disconnect(self._follow)
        self._unwatch()
        for overlay in self._retired:
            overlay.shutdown()
        self._retired = []
        if self._overlay is not None:  # the dock's own widgets may be being deleted: not them
            self._overlay.shutdown()
            self._overlay.close(remove_layer=False)
            self._overlay = None

    @property
    def counter(self) -> CellCounter | None:
        """The cell counter of the current annotation."""
        return self._counter

    def _on_paint(self, event: Any) -> None:  # a required argument: napari passes the event
        layer = self._annotation.value
        if (
            self._auto_id.value
            and layer is not None
            and layer.selected_label != 0
            and layer.mode == "paint"
        ):
            self._next_id(layer)

    def _next_id(self, layer: Any) -> None:
        """The next stroke paints a new cell: largest id + 1, like napari's "M" key."""
        counter = self._counter
        if counter is None or counter.layer is not layer:
            return
        new = counter.max_id + 1  # after a stroke the counter already holds its id
        dtype = np.dtype(layer.data.dtype)
        if np.issubdtype(dtype, np.integer) and new > np.iinfo(dtype).max:
            return  # a full id range: keep the id (napari would refuse a larger one)
        layer.selected_label = new

    def _show_count(self, *_: Any) -> None:
        self._count.value = str(self._counter.cells if self._counter is not None else 0)

    def _after_recount(self) -> None:
        """A full count arrived: the annotation just became current, or after an undo.

        The brush then never paints into an existing cell: it takes the largest id + 1
        (unless the user keeps painting one cell, with New cell id after each stroke off).
        """
        counter, layer = self._counter, self._annotation.value
        if counter is None or layer is not counter.layer:
            return
        first, self._first_count = self._first_count, False
        if first or self._auto_id.value or 0 < layer.selected_label <= counter.max_id:
            self._next_id(layer)

    # -- weight map overlay
    def _toggle_weights(self, on: bool) -> None:
        if not on:
            self._stop_overlay()
            return
        layer = self._annotation.value
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
            # a map still computing is waited for when the dock closes
            self._retired = [o for o in self._retired if o.busy] + [self._overlay]
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

        layer = self._annotation.value
        if layer is None:
            return
        before = np.asarray(layer.data)
        layer.data = carve_gaps(before)
        show_info(f"Carved gaps: {int((before != layer.data).sum())} pixels set to background.")
