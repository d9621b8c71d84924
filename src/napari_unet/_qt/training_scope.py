"""What a round will learn from: one line before Fine-tune, a faint overlay, "complete".

Unpainted pixels are unknown unless the user says the image is completely
annotated (:mod:`napari_unet.training.known`). The Train dock shows, before
Fine-tune, how many painted cells it will train on and where (the overlay), and
offers the one click that makes every unpainted pixel background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..errors import NapariUnetError
from .cell_counter import CellCounter
from .layers import find_own_layer, region_mask, spatial_shape, upsert_layer
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

# The Labels layer's metadata key that says its image is completely annotated.
COMPLETE_KEY = "napari_unet_complete"
# The overlay is computed again this long after the last change.
OVERLAY_DELAY_MS = 400
ROLE = "training area"


def is_complete(labels_layer: Any) -> bool:
    """Whether the user marked this annotation's image as completely annotated."""
    return labels_layer is not None and bool(labels_layer.metadata.get(COMPLETE_KEY, False))


def scope_sentence(
    cells: int, complete: bool, region: bool, images: int = 1, partial: int = 0
) -> str:
    """The line shown before Fine-tune (``partial``: how many cells look partly painted)."""
    where = f" in {images} images" if images > 1 else ""
    around = "around them"
    if partial:  # their ring lies inside the nucleus: the background moves out (partial.py)
        which = "the one" if partial == 1 else f"the {partial}"
        around = f"around them, farther out for {which} partly painted"
    s = "" if cells == 1 else "s"
    if cells == 0:
        return "No painted cell yet: paint cells in the annotation (Annotate dock)."
    if complete:
        return (
            f"Training on {cells} painted cell{s}{where}; the image is marked complete, so "
            "every unpainted pixel is taught as background."
        )
    if region:
        return (
            f"Training on {cells} painted cell{s}{where} and the annotated region (background "
            f"only there and {around.replace('them', 'the cells', 1)}; the rest of the image is "
            "not used)."
        )
    if partial:  # the advice is the partial sentence's, below: the line keeps its three lines
        return (
            f"Training on {cells} painted cell{s}{where} (background only {around}; the rest "
            "of the image is not used)."
        )
    return (
        f"Training on {cells} painted cell{s}{where} (background only {around}; the rest "
        "of the image is not used). Paint more cells, or mark the image complete, to learn more."
    )


def training_area(
    labels: np.ndarray, region: np.ndarray | None, sigma: float, partial: Any = None
) -> np.ndarray:
    """The pixels the loss will look at, plane by plane (uint8, 1 where trained on).

    ``partial``: ids of the cells found partly painted (their surroundings are not).
    """
    from ..training.known import known_area  # numba's weight map: loaded in the worker

    labels = np.asarray(labels)
    if labels.ndim == 2:
        return known_area(labels, sigma, region, partial=partial).astype(np.uint8)
    planes = [
        known_area(p, sigma, None if region is None else region[z], partial=partial)
        for z, p in enumerate(labels)
    ]
    return np.stack(planes).astype(np.uint8)


class TrainingScope(QWidget):
    """The "completely annotated" box, the line before Fine-tune, and the area overlay.

    The dock calls :meth:`set_target` with its image, annotation and region
    layers, and :meth:`set_entries` with the training set's count.
    """

    def __init__(self, viewer: napari.viewer.Viewer, sigma: float) -> None:
        super().__init__()
        self._viewer = viewer
        self._sigma = sigma
        self._image = self._labels = self._region = None
        self._counter: CellCounter | None = None
        self._set_cells: int | None = None  # cells of a non-empty training set
        self._set_images = 0
        self._partial_ids: tuple[int, ...] = ()  # the last run's finding
        self.complete = QCheckBox("This image is completely annotated")
        self.complete.setToolTip(
            "Every cell of the image is painted: unpainted pixels are background "
            "(otherwise they are unknown and only the area around your cells is used)."
        )
        self.show_area = QCheckBox("Show the area trained on")
        self.show_area.setChecked(True)
        self.line = QLabel("")
        self.line.setWordWrap(True)
        # which cells look partly painted (the last Fine-tune's or live mode's finding)
        self.partial = QLabel("")
        self.partial.setWordWrap(True)
        self.partial.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.complete)
        layout.addWidget(self.show_area)
        layout.addWidget(self.line)
        layout.addWidget(self.partial)
        self._workers = WorkerGroup()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(OVERLAY_DELAY_MS)
        self._timer.timeout.connect(self._compute)
        self._again = False
        self._busy = False
        self.complete.toggled.connect(self._on_complete)
        self.show_area.toggled.connect(lambda *_: self.refresh())

    # -- what it looks at
    def set_target(self, image: Any, labels: Any, region: Any) -> None:
        """Follow this image, annotation and region layer."""
        if labels is not self._labels:
            if self._labels is not None:
                self._labels.events.data.disconnect(self._schedule)
            if self._counter is not None:
                self._counter.close()
            self._counter = None
            if labels is not None:
                self._counter = CellCounter(labels)
                self._counter.changed.connect(lambda *_: self.refresh())
                labels.events.data.connect(self._schedule)  # strokes and undo change the area
            self.complete.blockSignals(True)
            self.complete.setChecked(is_complete(labels))
            self.complete.blockSignals(False)
        if region is not self._region:
            if self._region is not None:
                self._region.events.data.disconnect(self._schedule)
            if region is not None:
                region.events.data.connect(self._schedule)
        self._image, self._labels, self._region = image, labels, region
        self.refresh()

    def set_entries(self, cells: int | None, images: int = 0) -> None:
        """The training set's cells (None: the set is empty, the choice above is trained)."""
        self._set_cells, self._set_images = cells, images
        self.refresh()

    def _on_complete(self, checked: bool) -> None:
        if self._labels is not None:
            self._labels.metadata[COMPLETE_KEY] = bool(checked)  # metadata only, not the data
        self.refresh()

    def set_partial(self, sentence: str, ids: Any = ()) -> None:
        """Show the sentence about partly painted cells ("" hides it); the overlay follows."""
        ids = tuple(int(i) for i in ids)
        if ids != self._partial_ids:
            self._partial_ids = ids
            self.refresh()  # the line says how many; the overlay follows
        if sentence != self.partial.text():
            self.partial.setText(sentence)
        self.partial.setVisible(bool(sentence))

    @property
    def cells(self) -> int:
        """Painted cells of the annotation chosen above."""
        return self._counter.cells if self._counter is not None else 0

    def refresh(self) -> None:
        """Update the line now and the overlay shortly."""
        complete = self.complete.isChecked()
        region = self._region is not None and len(self._region.data) > 0
        partial = len(self._partial_ids)
        if self._set_cells is not None:
            images = max(self._set_images, 1)
            self.line.setText(scope_sentence(self._set_cells, complete, region, images, partial))
        else:
            self.line.setText(scope_sentence(self.cells, complete, region, partial=partial))
        self._schedule()

    # -- the overlay
    def _schedule(self, *_: Any) -> None:
        self._timer.start()

    def _compute(self) -> None:
        image, labels = self._image, self._labels
        layers = self._viewer.layers
        if image is None or labels is None or image not in layers or labels not in layers:
            return
        if not self.show_area.isChecked() or self.complete.isChecked():
            self._hide(image.name)  # complete: the whole image, nothing to point out
            return
        if self._busy:
            self._again = True
            return
        shape = spatial_shape(image)
        data = np.array(labels.data, copy=True)
        if data.shape != shape:
            return
        try:
            region = region_mask(self._region, shape) if self._region is not None else None
        except NapariUnetError:
            region = None
        self._busy = True
        self._workers.start_function(
            training_area,
            data,
            region,
            self._sigma,
            np.asarray(self._partial_ids, np.int64),
            returned=lambda area: self._show(image, labels, area),
            finished=self._on_finished,
        )

    def _on_finished(self) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self._schedule()

    def _show(self, image: Any, labels: Any, area: Any) -> None:
        if not isinstance(area, np.ndarray) or image is not self._image:
            return
        if image not in self._viewer.layers:
            return
        if not area.any():
            self._hide(image.name)
            return
        layer = upsert_layer(
            self._viewer,
            area,
            kind="image",
            role=ROLE,
            source=image.name,
            name=f"{image.name} area trained on",
            colormap="cyan",
            blending="additive",
            opacity=0.25,
            contrast_limits=(0, 1),
            scale=labels.scale,
            translate=labels.translate,
        )
        layer.visible = True

    def _hide(self, source: str) -> None:
        layer = find_own_layer(self._viewer, ROLE, source)
        if layer is not None:
            layer.visible = False

    def close_scope(self) -> None:
        """Stop following layers and wait for the overlay's worker (the dock closes)."""
        self._timer.stop()
        self.set_target(None, None, None)
        self._workers.stop_all()
