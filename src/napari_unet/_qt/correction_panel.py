"""The "Correct the mistakes" panel: start the next round of annotation from the prediction.

One click copies the predicted cells into the annotation where the user has not
painted (one undoable step) and lists the copied cells the model is least sure
of, so the user checks those first. The Train dock embeds the panel and tells it
what it trains on with :meth:`CorrectionPanel.set_target`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, PushButton
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from ..training.provenance import COPIED_KEY
from .dock import StatusLine, when_destroyed
from .layers import OWNER_KEY, find_own_layer, region_mask, spatial_shape, upsert_layer
from .prediction import PredictionRunner
from .session import state_for
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

    from ..correction import UncertainCell

# Below this certainty a cell counts as one the model is unsure of (marked in the viewer).
UNSURE = 0.5
# Rows the list shows at most: nobody reviews more in one sitting.
LIST_LIMIT = 200
# Going to a cell zooms in until a cell (at least 10 px across) spans this many screen pixels.
CELL_ON_SCREEN = 40.0


class CorrectionPanel(Container):
    """A "Correct the mistakes" button and the ranked list of the least-sure cells.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers and model (``state_for(viewer).model``) it uses.

    Notes
    -----
    The segmentation and probability layers of the target image are the plugin's
    own ("<image> segmentation", "<image> probability"). When they are missing,
    of another size, or not made by the model in use, the panel predicts the
    image again with that model (in a worker) before merging. The panel stops its
    work when the viewer closes; an owner that closes earlier calls :meth:`shutdown`.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._state = state_for(viewer)
        self._image: Any = None
        self._labels: Any = None
        self._region: Any = None
        self._runner = PredictionRunner(viewer)
        self._workers = WorkerGroup()
        self._merge_worker = None
        self._pending = False  # a click waits for its prediction
        self.cells: list[UncertainCell] = []
        self._button = PushButton(
            text="Correct the mistakes",
            tooltip="Copy the predicted cells into the annotation where you have not painted "
            "(your cells are never changed; one Ctrl+Z undoes it), and list first the cells "
            "the model is least sure of.",
        )
        self._status = StatusLine(2, value="")
        self.extend([self._button, self._status])
        self.list = QListWidget()
        self.list.setToolTip("Click a cell to go to it and pick its label for painting.")
        self.list.setMinimumHeight(120)
        self.native.layout().addWidget(self.list)
        self._button.changed.connect(self.correct)
        self.list.currentRowChanged.connect(self.go_to)
        self.list.itemClicked.connect(lambda item: self.go_to(self.list.row(item)))
        self._runner.finished.connect(self._on_predicted)
        self._runner.progressed.connect(self._on_progress)
        self._closed = False
        self._cancel_close_hook = self._state.on_close(self.shutdown, first=self._runner.cancel)
        when_destroyed(self.native, self.shutdown)

    @property
    def busy(self) -> bool:
        """Whether a prediction or a merge is under way."""
        return self._runner.running or self._merge_worker is not None

    def set_target(self, image_layer: Any, labels_layer: Any, region_layer: Any = None) -> None:
        """Work on ``labels_layer`` (the annotation) of ``image_layer`` from now on.

        Inside ``region_layer`` (a Shapes layer: where the annotation is complete)
        no predicted cell is added: unpainted pixels there are background.
        """
        self._region = region_layer
        if image_layer is not self._image or labels_layer is not self._labels:
            self._image, self._labels = image_layer, labels_layer
            self._show([])

    # -- the click
    def correct(self) -> None:
        """Merge the model's segmentation into the annotation and rank what was added.

        Predicts the image first when there is no up-to-date segmentation.
        """
        if self.busy:
            return
        image, labels = self._image, self._labels
        layers = self._viewer.layers
        if image is None or labels is None or image not in layers or labels not in layers:
            show_error("Choose an image and its annotation first.")
            return
        shape = spatial_shape(image)
        if np.shape(labels.data) != shape:
            show_error(
                f"The annotation '{labels.name}' has shape {np.shape(labels.data)} but the "
                f"image '{image.name}' has shape {shape}."
            )
            return
        if self._fresh_prediction() is not None:
            self._merge()
            return
        model = self._state.model.model
        if model is None:
            show_error(
                "There is no model in use yet: train one, load one, or segment the image "
                "with the bundled model first."
            )
            return
        self._pending = True
        self._button.enabled = False
        self._status.value = f"Segmenting {image.name} with the model in use..."
        try:
            self._runner.start(image, model, rescale=1.0)  # the scale it is corrected at
        except ValueError as exc:
            self._pending = False
            self._button.enabled = True
            show_error(str(exc))

    def _on_progress(self, done: int, total: int) -> None:
        if self._pending and total:
            self._status.value = (
                f"Segmenting {self._image.name} with the model in use: "
                f"{100 * done // total}% ({done} of {total} tiles)..."
            )

    def _fresh_prediction(self) -> tuple[Any, Any] | None:
        """The (segmentation, probability) layers to merge, or None when they must be redone.

        Up to date means: both there, of the annotation's shape, and made by the
        model in use. With no model in use, any segmentation of the right shape
        will do (there is nothing to redo it with).
        """
        source = self._image.name
        seg = find_own_layer(self._viewer, "segmentation", source)
        prob = find_own_layer(self._viewer, "probability", source)
        if seg is None or prob is None:
            return None
        shape = np.shape(self._labels.data)
        if np.shape(seg.data) != shape or np.shape(prob.data) != shape:
            return None
        session = self._state.model
        if session.model is None:
            return seg, prob
        made_by = [layer.metadata[OWNER_KEY].get("model") for layer in (seg, prob)]
        return (seg, prob) if made_by == [session.generation] * 2 else None

    def _on_predicted(self, message: str) -> None:
        if not self._pending:
            return
        self._pending = False
        self._button.enabled = True
        if self._image is None or self._labels is None:
            return
        if self._fresh_prediction() is None:  # failed or cancelled: the runner said why
            self._status.value = message
            return
        self._merge()

    def _merge(self) -> None:
        """Merge and rank in a worker, on copies taken now."""
        from ..correction import merge_prediction, rank_uncertain
        from ..training.provenance import cell_signatures

        seg, prob = self._fresh_prediction()
        labels = self._labels
        before = np.array(labels.data, copy=True)
        # copies: the user may paint in the segmentation layer while the worker reads it
        segmentation = np.array(seg.data, copy=True)
        probability = np.array(prob.data, copy=True)

        region_layer = self._region
        # a stack: only the plane on screen, the one the user reviews (the others would
        # count as annotated without anyone having looked at them)
        plane = int(self._viewer.dims.current_step[0]) if before.ndim == 3 else None

        def job():
            yield "finding the predicted cells you have not painted (step 1 of 3)"
            allowed = np.ones(before.shape, bool)
            if region_layer is not None and len(region_layer.data):
                allowed &= ~region_mask(region_layer, before.shape)
            if plane is not None:
                allowed[np.arange(len(allowed)) != plane] = False
            merged, added = merge_prediction(before, segmentation, region=allowed)
            yield f"ranking the {len(added)} added cells by how sure the model is (step 2 of 3)"
            cells = rank_uncertain(probability, merged, ids=list(added.values()))
            yield "writing them into the annotation (step 3 of 3)"
            signatures = cell_signatures(merged, added.values())  # copies are not human truth
            return merged, added, cells, np.nonzero(merged != before), signatures

        self._button.enabled = False
        self._status.value = "Copying the predicted cells..."
        self._merge_worker = self._workers.start_generator(
            job(),
            yielded=self._on_step,
            returned=lambda result: self._apply(labels, before, *result),
            errored=lambda exc: show_error(f"Correcting failed: {exc}"),
            finished=self._on_merged,
        )

    def _on_step(self, step: str) -> None:
        self._status.value = f"Copying the predicted cells: {step}..."

    def _on_merged(self) -> None:
        self._merge_worker = None
        self._button.enabled = True

    def _apply(
        self, labels: Any, before: np.ndarray, merged, added, cells, where, signatures=None
    ) -> None:
        """Write the copied cells into the annotation as one undoable step.

        Their signatures go into the layer's metadata: until the user edits one,
        a copied cell is trained on but never held out for validation.
        """
        if labels is not self._labels or labels not in self._viewer.layers:
            return  # the target changed meanwhile: the user moved on
        name = labels.name
        if not added:
            self._show([])
            self._status.value = "No predicted cell to add: every one touches a painted cell."
            show_info(f"No predicted cell to add to '{name}': every one touches a painted cell.")
            return
        dtype = np.asarray(labels.data).dtype
        if max(added.values()) > np.iinfo(dtype).max:
            show_error(
                f"The annotation '{name}' stores ids as {dtype} and cannot hold "
                f"{len(added)} more cells; convert it to a wider type first."
            )
            return
        if np.any(np.asarray(labels.data)[where] != before[where]):
            show_warning(f"'{name}' was painted while the cells were copied; click again.")
            return
        labels.data_setitem(where, merged[where])  # one call: one step to undo
        record = dict(labels.metadata.get(COPIED_KEY) or {})
        labels.metadata[COPIED_KEY] = {**record, **(signatures or {})}
        self._show(cells)
        unsure = sum(c.certainty < UNSURE for c in cells)
        self._mark(cells[:unsure])
        said = (
            f"{unsure} cells the model is least sure of are listed first."
            if unsure
            else "the model is fairly sure of all of them; the least sure are listed first."
        )
        message = f"Added {len(added)} predicted cells to '{name}'; {said}"
        self._status.value = message
        show_info(message)

    # -- the list
    def _show(self, cells: list[UncertainCell]) -> None:
        self.cells = cells[:LIST_LIMIT]
        self.list.blockSignals(True)  # filling the list is not the user choosing a row
        self.list.clear()
        for rank, cell in enumerate(self.cells, start=1):
            where = "" if cell.plane is None else f", plane {cell.plane}"
            sure = f"certainty {cell.certainty:.2f} of 1"  # what the number is
            text = f"{rank}. cell {cell.label}{where}: {cell.reason} ({sure})"
            item = QListWidgetItem(text)
            item.setToolTip(
                f"certainty {cell.certainty:.2f}; {cell.area} pixels; centre at "
                f"y {cell.centroid[0]:.0f}, x {cell.centroid[1]:.0f}"
            )
            self.list.addItem(item)
        self.list.blockSignals(False)

    def _mark(self, cells: list[UncertainCell]) -> None:
        """The "<image> least sure cells" points, each with its rank."""
        labels, source = self._labels, self._image.name
        nd = labels.ndim
        points = np.array(
            [(*([c.plane] if c.plane is not None else []), *c.centroid) for c in cells],
            dtype=float,
        ).reshape(-1, nd)
        features = {"rank": np.arange(1, len(cells) + 1)}
        layer = find_own_layer(self._viewer, "review", source)
        if layer is None and not cells:
            return  # nothing to point at: no empty layer
        if layer is not None and layer._type_string == "points":
            layer.data = points
            layer.features = features
            layer.refresh()
            return
        upsert_layer(
            self._viewer,
            points,
            kind="points",
            role="review",
            source=source,
            name=f"{source} least sure cells",
            features=features,
            text={"string": "{rank}", "color": "yellow", "size": 12, "anchor": "upper_left"},
            size=12,
            symbol="ring",
            face_color="transparent",
            border_color="yellow",
            scale=labels.scale,
            translate=labels.translate,
        )

    def go_to(self, row: int) -> None:
        """Centre the view on the cell of ``row`` and pick its label for painting."""
        if not 0 <= row < len(self.cells) or self._labels not in self._viewer.layers:
            return
        cell, labels = self.cells[row], self._labels
        if not _still_there(labels, cell):  # undone (Ctrl+Z) or erased since it was listed
            self._forget_gone(cell)
            return
        coords = (*([cell.plane] if cell.plane is not None else []), *cell.centroid)
        world = np.asarray(labels.data_to_world(coords), dtype=float)
        ndim = self._viewer.dims.ndim
        axes = list(range(ndim - len(world), ndim))  # the layer's axes among the viewer's
        if cell.plane is not None:
            self._viewer.dims.set_point(axes[0], world[0])
        # napari 0.9 moved the camera to viewer.scene; older versions have viewer.camera
        camera = getattr(self._viewer, "scene", self._viewer).camera
        camera.center = tuple(world[-2:])
        across = max(np.sqrt(cell.area), 10.0) * float(np.max(np.abs(labels.scale[-2:])))
        camera.zoom = max(camera.zoom, CELL_ON_SCREEN / across)  # zoom in, never out
        labels.selected_label = cell.label
        self._viewer.layers.selection.active = labels

    def _forget_gone(self, clicked: UncertainCell) -> None:
        """Take the cells no longer in the annotation off the list and the points."""
        labels = self._labels
        kept = [c for c in self.cells if _still_there(labels, c)]
        gone = len(self.cells) - len(kept)
        self._show(kept)
        unsure = sum(c.certainty < UNSURE for c in kept)
        self._mark(kept[:unsure])
        message = (
            f"Cell {clicked.label} is no longer in '{labels.name}' (undone or erased); "
            f"{gone} such cell{'s' if gone != 1 else ''} taken off the list."
        )
        self._status.value = message
        show_info(message)

    # -- closing
    def shutdown(self) -> None:
        """Stop the prediction and the merge and wait for them (the owner or viewer closes)."""
        # a collected panel's attributes may already be cleared when Qt destroys its widget
        if self.__dict__.get("_closed", True):
            return
        self._closed = True
        self._cancel_close_hook()
        self._runner.shutdown()
        self._workers.stop_all()


def _still_there(labels: Any, cell: UncertainCell) -> bool:
    """Whether ``cell`` still has pixels near where it was listed (a small window: cheap)."""
    data = labels.data
    half = int(max(8.0, np.sqrt(cell.area)))
    y, x = (round(c) for c in cell.centroid)
    window = (
        *(() if cell.plane is None else (cell.plane,)),
        slice(max(0, y - half), y + half + 1),
        slice(max(0, x - half), x + half + 1),
    )
    return bool(np.any(np.asarray(data[window]) == cell.label))
