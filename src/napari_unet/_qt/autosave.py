"""The delayed autosave of a project's entries, and copies of their images.

A change starts a 2-second timer (restarted by the next stroke, at most 10 s in
all), then one worker writes the entry (at most one write in flight per entry;
changes made meanwhile are written by the next one). Pending changes are written
when the viewer closes (:meth:`Autosave.flush`).

The GUI thread's part of an autosave is handing array references to the worker:
the worker copies the annotation. Copying a 4096 x 4096 uint32 annotation takes
about 19 ms on the GUI thread of an idle machine (more on a busy one), while in a
worker it costs the GUI thread under 10 ms, since numpy releases the GIL while
copying. A worker's copy can catch a stroke half-written (napari writes pixels on
the GUI thread), but every stroke ends with a paint event, which schedules the
next save: the file always catches up with the layer, and :meth:`Autosave.flush`
writes the final state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from ..errors import NapariUnetError
from ..training.provenance import COPIED_KEY
from .layers import history_lengths, layer_data
from .project_io import ImageInfo, Refused, image_info, region_of, store_images, write_entry
from .training_scope import COMPLETE_KEY
from .workers import UserProblem

__all__ = [
    "AUTO_KEEP_BYTES",
    "DEBOUNCE_MS",
    "MAX_WAIT_S",
    "Autosave",
    "AutosaveEntry",
]

# Autosave waits this long after the last change...
DEBOUNCE_MS = 2000
# ...but no longer than this after the first unsaved change, however long the painting goes on.
MAX_WAIT_S = 10.0
# an image that came from no file is copied into its project, unasked, up to this size
AUTO_KEEP_BYTES = 256 * 2**20


@dataclass(eq=False)
class AutosaveEntry:
    """An annotation (and region) being autosaved."""

    labels: Any
    image: Any
    region: Any = None
    name: str | None = None  # given by the project at the first save
    generation: int = 0  # changes seen
    saved: int = 0  # the generation last written
    worker: Any = None
    again: bool = False  # a save was asked for while one was in flight
    again_empty: bool = False  # ...and the user allowed it to be empty
    refused: bool = False  # empty, not written: waits for the user
    first_change: float = 0.0
    timer: QTimer = field(default_factory=QTimer)
    history: tuple[int, int] | None = None  # napari's undo/redo queue lengths
    told_size: bool = False  # an image from no file, too large to keep unasked: said once

    @property
    def dirty(self) -> bool:
        return self.generation != self.saved


class Autosave:
    """The autosave part of :class:`~napari_unet._qt.project_session.ProjectSession`.

    A mixin: the session sets up the entries, workers, project and lock it uses,
    and says things to the user (``_tell``, ``_say``).
    """

    # -- changes
    def _on_labels_change(self, event: Any) -> None:
        entry = self._find(event.source)
        if entry is not None:
            entry.history = history_lengths(entry.labels)
            self._changed(entry)

    def _on_set_data(self, event: Any) -> None:
        """Undo and redo write pixels without a paint event: seen as a change of napari's queues."""
        entry = self._find(event.source)
        if entry is not None:
            now = history_lengths(entry.labels)
            if now is None or now != entry.history:
                entry.history = now
                self._changed(entry)

    def _on_region_change(self, event: Any) -> None:
        for entry in self._entries:
            if entry.region is event.source:
                self._changed(entry)

    def _changed(self, entry: AutosaveEntry) -> None:
        entry.generation += 1
        now = time.monotonic()
        if not entry.timer.isActive():
            entry.first_change = now
        left_ms = (entry.first_change + MAX_WAIT_S - now) * 1000
        entry.timer.start(int(max(0.0, min(DEBOUNCE_MS, left_ms))))

    def save_now(self, name: str | None = None, *, allow_empty: bool = False) -> None:
        """Write entry ``name`` (every entry when None) now, in a worker.

        ``allow_empty`` lets an empty annotation replace a saved one (the user asked).
        """
        for entry in list(self._entries):
            if name is None or entry.name == name:
                entry.timer.stop()
                entry.generation += entry.generation == entry.saved
                self._save(entry, allow_empty=allow_empty)

    def _job(self, entry: AutosaveEntry, allow_empty: bool) -> tuple | None:
        """The arguments of an entry's write, gathered on the GUI thread (references only)."""
        try:
            project = self._project_for(entry.image if entry.image is not None else entry.labels)
        except NapariUnetError as exc:
            self._tell(str(exc), error=True)
            return None
        if entry.name is None:
            base = entry.image.name if entry.image is not None else entry.labels.name
            entry.name = project.unique_name(base)
        info = (
            image_info(entry.image)
            if entry.image is not None
            else ImageInfo(None, entry.labels.name, tuple(entry.labels.data.shape), "")
        )
        region = region_of(entry.region)
        lock = self._lock
        project.view = self._view()  # written with the manifest
        meta = entry.labels.metadata
        notes = {"copied": meta.get(COPIED_KEY) or {}, "complete": bool(meta.get(COMPLETE_KEY))}
        labels = layer_data(entry.labels)
        copy = self._copy_of(entry)
        return (project, lock, entry.name, info, labels, region, allow_empty, copy, notes)

    def _view(self) -> dict[str, Any]:
        """The order of the entries' layers (bottom to top) and the current entry's name."""
        parts = {}
        for entry in self._entries:
            if entry.name is None and entry.labels is not None:  # named by this very write
                continue
            for part in ("image", "labels", "region"):
                layer = getattr(entry, part)
                if layer is not None:
                    parts[id(layer)] = [entry.name, part]
        order = [parts[id(layer)] for layer in self._viewer.layers if id(layer) in parts]
        current = self._find(self._state.annotation.labels)
        return {"order": order, "current": current.name if current is not None else None}

    def _copy_of(self, entry: AutosaveEntry) -> np.ndarray | None:
        """The image to keep with the entry: one that came from no file, if it is small.

        Without a copy such an image (a sample, a pasted array) cannot come back when
        the project is reopened; a large one is said once, with its size, and kept
        when the user presses Keep copies of the images.
        """
        if entry.image is None or image_info(entry.image).path is not None:
            return None
        data = layer_data(entry.image)
        if not isinstance(data, np.ndarray):
            return None
        if data.nbytes <= AUTO_KEEP_BYTES:
            return data
        if not entry.told_size:
            entry.told_size = True
            self._tell(
                f"The image '{entry.image.name}' came from no file and takes "
                f"{data.nbytes / 1e6:,.0f} MB; press Keep copies of the images (Train dock) "
                "to keep it with the project, so that the project can open it again."
            )
        return None

    def _save(self, entry: AutosaveEntry, *, allow_empty: bool = False) -> None:
        if self._closed:
            return
        if entry.worker is not None:  # one write at a time per entry: the next one follows
            entry.again = True
            entry.again_empty |= allow_empty  # the user's "save it empty" is not forgotten
            return
        job = self._job(entry, allow_empty)
        if job is None:
            return
        started = entry.generation
        entry.worker = self._workers.start_function(
            write_entry,
            *job,
            returned=partial(self._on_written, entry, started),
            errored=lambda exc: self._say(f"Autosave failed: {exc}", "error"),
            finished=partial(self._on_finished, entry),
        )

    def _on_written(self, entry: AutosaveEntry, started: int, result: Any) -> None:
        if isinstance(result, Refused):
            if not entry.refused:
                entry.refused = True
                self._tell(result.message)
                self.refused.emit(entry.name)
            return
        if isinstance(result, UserProblem):
            self._tell(result.message, error=True)
            return
        entry.saved = max(entry.saved, started)
        entry.refused = False
        if result is not None:
            self.last_saved = result
            self.saved.emit(result)

    def _on_finished(self, entry: AutosaveEntry) -> None:
        entry.worker = None
        if entry.again:
            allow_empty = entry.again_empty
            entry.again = entry.again_empty = False
            self._save(entry, allow_empty=allow_empty)

    @property
    def pending(self) -> bool:
        """Whether a change is not written yet (or a write is under way)."""
        return any(e.dirty or e.worker is not None for e in self._entries)

    @property
    def refused_entries(self) -> list[str]:
        """Entries whose annotation became empty and was kept as saved, awaiting the user."""
        return [e.name for e in self._entries if e.refused and e.name is not None]

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every pending change now, on this thread, and wait; True when all is saved.

        Used when the viewer closes. Writes under way are waited for (up to
        ``timeout``), then what is still unsaved is written here.
        """
        deadline = time.monotonic() + timeout
        for entry in self._entries:
            entry.timer.stop()
        done = True
        for entry in list(self._entries):
            worker = entry.worker
            if worker is not None:
                if not worker.wait_until_ended(max(0.0, deadline - time.monotonic())):
                    done = False
                    continue  # never two writers on one file
                entry.worker = None
                entry.again = False
            if entry.dirty or worker is not None:
                job = self._job(entry, entry.again_empty)
                entry.again_empty = False
                if job is None:
                    done = False
                    continue
                started = entry.generation
                result = write_entry(*job)
                self._on_written(entry, started, result)
                done &= not isinstance(result, UserProblem)
        return done

    # -- copies of the images

    @property
    def unkept_images(self) -> bool:
        """Whether an image from no file was too large to keep unasked (and is not kept yet)."""
        return any(e.told_size for e in self._entries)

    def store_images(self) -> Any:
        """Keep a copy of each saved entry's image in the project (a worker writes them).

        For images that came from no file (a sample, a plugin's output) this is
        the only way the project can open them again; for the others it makes the
        project whole on another computer.
        """
        project = self.project
        images = [
            (e.name, layer_data(e.image))
            for e in self._entries
            if e.name is not None and e.image is not None and e.image in self._viewer.layers
        ]
        if project is None or not images:
            self._tell("No annotation is saved in a project yet: paint first, then keep copies.")
            return None
        return self._workers.start_function(store_images, project, images, returned=self._on_stored)

    def _on_stored(self, result: tuple[int, int] | UserProblem) -> None:
        if isinstance(result, UserProblem):
            self._tell(result.message, error=True)
            return
        n, size = result
        for entry in self._entries:
            entry.told_size = False
        message = (
            f"Copies of {n} image{'s' if n != 1 else ''} kept in the project "
            f"({size / 1e6:.1f} MB); it opens whole without them."
        )
        self.stored.emit(message)
        self._say(message)
