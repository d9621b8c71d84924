"""How many cells an annotation holds, kept up to date from its strokes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QTimer

from .layers import history_lengths
from .workers import WorkerGroup

if TYPE_CHECKING:
    from collections.abc import Iterable


def pixel_counts(labels: np.ndarray) -> dict[int, int]:
    """Pixels per id of ``labels`` (a full scan: run it in a worker)."""
    flat = np.ravel(np.asarray(labels))  # a lazy (dask) array is read here, in the worker
    if flat.size == 0:
        return {}
    low, high = int(flat.min()), int(flat.max())
    if low >= 0 and high < 2**22:  # bincount is several times faster than a sort
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=high + 1)
        ids = np.flatnonzero(counts)
        return dict(zip(ids.tolist(), counts[ids].tolist()))
    ids, counts = np.unique(flat, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def _atom_changes(atom: Any) -> Iterable[tuple[np.ndarray, Any]]:
    """(old values of the changed pixels, new value or values) of one napari history atom."""
    if hasattr(atom, "new_value"):  # napari's masked paint atom
        return [(np.ravel(atom.old_values), atom.new_value)]
    _, old, new = atom  # (indices, values before, value(s) after)
    return [(np.ravel(old), new)]


class CellCounter:
    """Cells (non-zero ids) of a Labels layer and its largest id.

    A stroke updates the counts from napari's paint event, which carries the
    values it replaced: painting costs nothing, however large the image. Changes
    that come without one (undo and redo, seen as a change of napari's history
    queues at the next refresh; a new array) recount in a worker, which reads the
    layer's array as it is; a stroke made meanwhile makes that count doubtful, so it
    is dropped (the counts kept from the strokes stand) and made again.
    """

    changed = Signal(int)  # number of cells
    recounted = Signal()  # a full count arrived

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._counts: dict[int, int] = {}
        self._workers = WorkerGroup()
        self._since_snapshot: list[Any] | None = None  # strokes during a recount
        self._history = history_lengths(self.layer)
        self._again = False
        self._deferred = False
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_set_data)
        layer.events.data.connect(self._on_new_data)
        self.recount()

    @property
    def cells(self) -> int:
        """Number of distinct non-zero ids."""
        return sum(1 for i, n in self._counts.items() if i != 0 and n > 0)

    @property
    def max_id(self) -> int:
        """The largest id in use (0 when there is none)."""
        return max((i for i, n in self._counts.items() if n > 0), default=0)

    @property
    def busy(self) -> bool:
        """Whether a recount is under way."""
        return self._since_snapshot is not None

    def _apply(self, atoms: Iterable[Any]) -> None:
        for atom in atoms:
            for old, new in _atom_changes(atom):
                ids, n = np.unique(old, return_counts=True)
                for i, k in zip(ids.tolist(), n.tolist()):
                    self._counts[i] = self._counts.get(i, 0) - k
                if np.ndim(new) == 0:
                    self._counts[int(new)] = self._counts.get(int(new), 0) + old.size
                else:
                    ids, n = np.unique(np.ravel(new), return_counts=True)
                    for i, k in zip(ids.tolist(), n.tolist()):
                        self._counts[i] = self._counts.get(i, 0) + k

    def _missed_history(self, now: tuple[int, int] | None) -> bool:
        """Whether an undo or redo happened unseen since the last stroke.

        A stroke adds one item to the undo queue (or keeps it full); anything else
        means the queue moved without us (an undo while the layer was hidden).
        """
        before = self._history
        if before is None or now is None:
            return False
        full = getattr(self.layer._undo_history, "maxlen", None)
        expected = before[0] if full is not None and before[0] >= full else before[0] + 1
        return now[0] != expected

    def _on_paint(self, event: Any) -> None:
        atoms = list(event.value)
        now = history_lengths(self.layer)
        missed = self._missed_history(now)
        self._history = now
        if self._since_snapshot is not None:
            self._since_snapshot.extend(atoms)
        self._apply(atoms)
        self.changed.emit(self.cells)
        if missed or self._deferred:
            # after this event: napari may write the stroke's pixels only once it returns
            QTimer.singleShot(0, self.recount)

    def _on_set_data(self, event: Any = None) -> None:
        history = history_lengths(self.layer)
        if history is not None and history == self._history:  # a refresh: nothing new
            return
        self._history = history
        self.recount()  # undo or redo (they write pixels without a paint event)

    def _on_new_data(self, event: Any = None) -> None:
        self._history = history_lengths(self.layer)
        self.recount()

    def _mid_stroke(self) -> bool:
        """Whether a brush stroke is under way (pixels written, its paint event to come)."""
        return bool(getattr(self.layer, "_block_history", False)) or bool(
            getattr(self.layer, "_staged_history", None)
        )

    def recount(self) -> None:
        """Count all ids again, in a worker (one at a time)."""
        if self._workers.closed:
            return
        if self._since_snapshot is not None:
            self._again = True
            return
        if self._mid_stroke():  # a snapshot now would hold half a stroke: after it
            self._deferred = True
            return
        self._deferred = False
        self._since_snapshot = []
        # the worker reads the live array (no copy on the GUI thread: 40-250 ms at 4096^2);
        # a stroke during the read is seen when the counts arrive, and the count is redone
        self._workers.start_function(
            pixel_counts, self.layer.data, returned=self._on_counts, finished=self._on_recounted
        )

    def _on_counts(self, counts: dict[int, int]) -> None:
        if self._since_snapshot or self._mid_stroke():
            # painted while the worker read: the counts kept from the strokes stand, and
            # the count is redone once the stroke is over
            if self._mid_stroke():
                self._deferred = True
            else:
                self._again = True
            return
        self._counts = counts
        self.changed.emit(self.cells)
        self.recounted.emit()

    def _on_recounted(self) -> None:
        self._since_snapshot = None
        if self._again:
            self._again = False
            self.recount()

    def close(self, timeout: float = 5.0) -> None:
        """Stop following the layer and wait for a recount under way."""
        for name, slot in (
            ("paint", self._on_paint),
            ("set_data", self._on_set_data),
            ("data", self._on_new_data),
        ):
            getattr(self.layer.events, name).disconnect(slot)
        self._workers.stop_all(timeout)
