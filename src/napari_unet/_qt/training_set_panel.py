"""The Train dock's training set: (image, annotation, region) entries trained on together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_warning
from psygnal import Signal
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import NapariUnetError
from ..layout import channel_count, check_same_channels
from .cell_counter import CellCounter
from .layers import spatial_shape
from .training_scope import is_complete
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

COLUMNS = ("Image", "Cells", "Planes", "Annotation", "Region")
# Annotated planes are counted again this long after the last change.
PLANES_DELAY_MS = 500


@dataclass
class SetEntry:
    """One entry of the training set: layers, and the live count of its cells."""

    image: Any
    labels: Any
    region: Any
    counter: CellCounter
    planes: tuple[int, int] = (0, 0)  # annotated planes, of how many (counted in a worker)

    @property
    def name(self) -> str:
        """The image's name: names the entry in the project and in the validation rule."""
        return self.image.name


class TrainingSetPanel(QWidget):
    """A list of training entries with Add and Remove; each row shows its annotated cells.

    With an empty list the dock's current choice is the training set, so the
    single-image use stays one click. ``region_mask(layer, shape)`` turns a
    region layer into a mask (the dock's function).
    """

    changed = Signal()  # entries added or removed, or their counts changed

    def __init__(self, viewer: napari.viewer.Viewer, region_mask: Any) -> None:
        super().__init__()
        self._viewer = viewer
        self._region_mask = region_mask
        self.entries: list[SetEntry] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMinimumHeight(96)
        self.table.setMaximumHeight(150)
        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("Add the image, annotation and region chosen above.")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected entry (its layers stay open).")
        self.summary = QLabel("Empty: training uses the image and annotation above.")
        self.summary.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Training set</b>")
        layout.addWidget(title)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)
        self.remove_button.clicked.connect(self.remove_selected)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self._workers = WorkerGroup()
        self._planes_timer = QTimer(self)
        self._planes_timer.setSingleShot(True)
        self._planes_timer.setInterval(PLANES_DELAY_MS)
        self._planes_timer.timeout.connect(self._count_planes)
        self._orphans: list[SetEntry] = []  # entries whose region layer was removed
        self._tell_timer = QTimer(self)
        self._tell_timer.setSingleShot(True)
        self._tell_timer.setInterval(0)
        self._tell_timer.timeout.connect(self._tell_orphans)

    # -- building the list
    def add(self, image: Any, labels: Any, region: Any = None) -> SetEntry:
        """Add an entry (refused in one sentence when it cannot train with the others)."""
        if image is None or labels is None:
            raise NapariUnetError("Choose an image and its annotation above, then Add.")
        if any(e.labels is labels for e in self.entries):
            raise NapariUnetError(f"The annotation '{labels.name}' is already in the training set.")
        if any(e.image is image for e in self.entries):
            raise NapariUnetError(
                f"The image '{image.name}' is already in the training set; one annotation "
                "per image (paint all its cells in one Labels layer)."
            )
        shape = spatial_shape(image)
        if tuple(labels.data.shape) != shape:
            raise NapariUnetError(
                f"The annotation '{labels.name}' has shape {tuple(labels.data.shape)} but the "
                f"image '{image.name}' has shape {shape}."
            )
        check_same_channels(
            [channel_count(layer.data, rgb=layer.rgb) for layer in [*self.images(), image]],
            [e.image.name for e in self.entries] + [image.name],
        )
        entry = SetEntry(image, labels, region, CellCounter(labels))
        entry.counter.changed.connect(lambda *_: self._on_count(entry))
        if region is not None:
            region.events.data.connect(self._schedule_planes)
        self.entries.append(entry)
        self._refresh()
        self._count_planes()
        self.changed.emit()
        return entry

    def _on_count(self, entry: SetEntry) -> None:
        self._refresh()
        self.changed.emit()
        if entry.labels.data.ndim == 3 and entry.region is None:  # a stack's planes may change
            self._schedule_planes()

    def _schedule_planes(self, *_: Any) -> None:
        self._planes_timer.start()

    def _count_planes(self) -> None:
        """Count the annotated planes of every entry, in a worker.

        A region's mask and a stack's planes take seconds on large images: never
        on the GUI thread.
        """
        entries = list(self.entries)
        self._workers.start_function(
            lambda: [self._planes(e) for e in entries],
            returned=lambda counts: self._on_planes(entries, counts),
        )

    def _on_planes(self, entries: list[SetEntry], counts: list[tuple[int, int]]) -> None:
        for e, c in zip(entries, counts):
            e.planes = c
        self._refresh()

    def remove_selected(self) -> None:
        """Remove the selected entry (its layers are not touched)."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.entries:
            show_error("Select an entry of the training set to remove.")
            return
        for row in rows:
            self._remove(row)

    def remove(self, entry: SetEntry) -> None:
        """Remove ``entry`` from the list (its layers are not touched)."""
        self._remove(self.entries.index(entry))

    def _remove(self, row: int) -> None:
        entry = self.entries.pop(row)
        entry.counter.close()
        if entry.region is not None:
            entry.region.events.data.disconnect(self._schedule_planes)
        self._refresh()
        self.changed.emit()

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        for row in reversed(range(len(self.entries))):
            e = self.entries[row]
            if layer is e.image or layer is e.labels:
                self._remove(row)
            elif layer is e.region:
                # without its region the entry would train on something else than the
                # user chose, so it leaves the set
                self._remove(row)
                self._orphans.append(e)
                self._tell_timer.start()  # told once napari is done removing layers

    def _tell_orphans(self) -> None:
        """Say which entries left with their region (not when napari removed every layer)."""
        orphans, self._orphans = self._orphans, []
        for e in orphans:
            if e.labels in self._viewer.layers:
                show_warning(
                    f"The region of '{e.name}' was removed, so '{e.name}' left the training "
                    "set; add it again (with a region, or none: then only the area around "
                    "its cells counts)."
                )

    # -- what is shown
    def _planes(self, entry: SetEntry) -> tuple[int, int]:
        try:
            region = self._region_mask(entry.region, spatial_shape(entry.image))
        except NapariUnetError:
            region = None
        from ..training.data import annotated_plane_count  # loads torch: in the worker

        return annotated_plane_count(entry.labels.data, region)

    def _refresh(self) -> None:
        self.table.setRowCount(len(self.entries))
        total = 0
        stacks = []
        for row, e in enumerate(self.entries):
            done, planes = e.planes
            if planes > 1:
                stacks.append(f"'{e.name}': {done} of {planes} planes annotated")
            values = (
                e.image.name,
                str(e.counter.cells),
                f"{done}/{planes}" if planes > 1 else "",
                e.labels.name,
                _region_text(e),
            )
            for col, text in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(text))
            total += e.counter.cells
        if not self.entries:
            self.summary.setText("Empty: training uses the image and annotation above.")
        else:
            n = len(self.entries)
            text = f"{n} image{'s' if n > 1 else ''}, {total} annotated cells"
            self.summary.setText("; ".join([text, *stacks]) + ".")

    def images(self) -> list[Any]:
        """The entries' image layers."""
        return [e.image for e in self.entries]

    def counts(self) -> list[int]:
        """Annotated cells of each entry (as counted live)."""
        return [e.counter.cells for e in self.entries]

    def close_counters(self) -> None:
        """Stop the entries' counters (the dock closes)."""
        self._viewer.layers.events.removed.disconnect(self._on_layer_removed)
        self._planes_timer.stop()
        self._tell_timer.stop()
        self._workers.stop_all()
        for e in self.entries:
            e.counter.close()


def _region_text(entry: SetEntry) -> str:
    """What counts as annotated in an entry (the Region column)."""
    if is_complete(entry.labels):
        return "whole image (complete)"
    if entry.region is not None:
        return entry.region.name
    return "around the cells"
