"""A viewer's project: annotations and regions saved as they are painted, and opened again.

Each viewer has one :class:`ProjectSession` (:func:`project_for`). It follows the
viewer's current annotation (the Annotate dock's choice) and any entry the Train
dock tracks, and autosaves them into the project folder: a change starts a
2-second timer (restarted by the next stroke, at most 10 s in all), then one
worker writes the entry (at most one write in flight per entry; changes made
meanwhile are written by the next one). Pending changes are written when the
viewer closes.

The GUI thread's part of an autosave is handing array references to the worker:
the worker copies the annotation. Copying a 4096 x 4096 uint32 annotation takes
about 19 ms on the GUI thread of an idle machine (more on a busy one), while in a
worker it costs the GUI thread under 10 ms, since numpy releases the GIL while
copying. A worker's copy can catch a stroke half-written (napari writes pixels on
the GUI thread), but every stroke ends with a paint event, which schedules the
next save: the file always catches up with the layer, and :meth:`flush` writes
the final state.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import QTimer

from ..errors import NapariUnetError
from ..training.provenance import COPIED_KEY
from .layers import OWNER_KEY, free_id, layer_data, spatial_shape
from .project_io import (
    ImageInfo,
    Loaded,
    Refused,
    image_info,
    load_project,
    region_of,
    store_images,
    write_entry,
)
from .session import state_for
from .training_scope import COMPLETE_KEY
from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    import napari

    from ..project import Project, ProjectLock

# Autosave waits this long after the last change...
DEBOUNCE_MS = 2000
# ...but no longer than this after the first unsaved change, however long the painting goes on.
MAX_WAIT_S = 10.0
# an image that came from no file is copied into its project, unasked, up to this size
AUTO_KEEP_BYTES = 256 * 2**20


class RestoredEntry(NamedTuple):
    """One entry of an opened project, as layers (the image is None when it cannot be found)."""

    name: str
    image: Any
    labels: Any
    region: Any


@dataclass(eq=False)
class _Entry:
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


class ProjectSession:
    """The project of one viewer, and the autosave of its annotations.

    Attributes
    ----------
    project : Project or None
        The open project; None until one is opened, chosen, or needed by a first save.
    last_saved : float or None
        When an autosave last wrote (``time.time()``).
    problems : list of str
        The sentences of the last problems (moved images, unwritable folder).
    moved : list of str
        Entries of the opened project whose image is not where it was.
    """

    changed = Signal(object)  # the project (opened, created, or its folder changed)
    saved = Signal(float)  # an autosave wrote, at this time
    problem = Signal(str)  # a sentence for the user
    refused = Signal(str)  # an entry's annotation became empty and was not written
    opened = Signal(list)  # the RestoredEntry list of a project just opened

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer_ref = weakref.ref(viewer)  # the session must not keep the viewer alive
        self._state = state_for(viewer)
        self.project: Project | None = None
        self.last_saved: float | None = None
        self.problems: list[str] = []
        self.moved: list[str] = []
        self._entries: list[_Entry] = []
        self._workers = WorkerGroup()
        self._closed = False
        self._lock: ProjectLock | None = None
        self._started = time.time()  # names the default project of an image not from disk
        # annotations saved in an earlier project of this window: (layer, its folder)
        self._left: list[tuple[weakref.ref, Path]] = []
        self._state.annotation.changed.connect(self._follow)
        viewer.layers.events.removed.connect(self._on_removed)
        self._cancel_close = self._state.on_close(self._close)
        self._follow(self._state.annotation)

    @property
    def _viewer(self) -> Any:
        return self._viewer_ref()

    # -- the project
    def ensure(self, image_layer: Any) -> Project:
        """The open project, or the default one for ``image_layer`` (made on disk now)."""
        project = self._project_for(image_layer)
        if not (project.folder / "manifest.json").is_file():
            self._lock.acquire()
            project.save()
        return project

    def _project_for(self, image_layer: Any) -> Project:
        """The open project, else the default one for the image (its folder made at first save)."""
        from ..project import Project, ProjectInUseError, ProjectLock, default_project_folder

        if self.project is not None:
            return self.project
        info = image_info(image_layer)
        folder = default_project_folder(info.path, info.layer_name, when=self._started)
        if info.path is not None and not os.access(folder.parent, os.W_OK):
            fallback = default_project_folder(None, info.layer_name, when=self._started)
            show_info(f"The folder {folder.parent} is not writable; the project is in {fallback}.")
            folder = fallback
        wanted, k = folder, 1
        while True:  # another window has it: a sibling, cells.napari-unet-2, ...
            lock = ProjectLock(folder)
            try:
                lock.acquire(create=False)
                break
            except ProjectInUseError:
                k += 1
                folder = wanted.with_name(f"{wanted.name}-{k}")
        if folder != wanted:
            self._tell(
                f"The project {wanted} is open in another napari window; "
                f"this window saves into {folder}."
            )
        try:
            if (folder / "manifest.json").is_file():
                project = Project.open(folder)
            elif folder.exists() and not folder.is_dir():
                raise NapariUnetError(f"{folder} is a file, not a folder for a project.")
            else:
                project = Project(folder)
        except NapariUnetError:
            lock.release()
            raise
        self._set_project(project, lock)
        return project

    def _set_project(self, project: Project, lock: ProjectLock) -> None:
        if self._lock is not None and self._lock is not lock:
            self._lock.release()
        self._lock = lock
        self.project = project
        self.changed.emit(project)

    def choose_folder(self, folder: str | os.PathLike) -> Project | None:
        """Keep the project in ``folder`` from now on; what is tracked is saved there now."""
        from ..project import Project

        lock = self._lock_for(folder)
        try:
            lock.acquire(create=False)  # refused before anything is made
            project = Project.create(folder)
            lock.acquire()
        except NapariUnetError as exc:
            if lock is not self._lock:
                lock.release()
            self._tell(str(exc), error=True)
            return None
        self._set_project(project, lock)
        for entry in self._entries:
            entry.name = None  # a name of the new project's
            entry.generation += 1
            self._save(entry)
        return project

    def _lock_for(self, folder: str | os.PathLike) -> ProjectLock:
        """The lock of ``folder``: the one held already when it is this session's project."""
        from ..project import ProjectLock

        lock = ProjectLock(folder)
        if self._lock is not None and self._lock.folder == lock.folder:
            return self._lock
        return lock

    # -- tracking layers
    def entry_name(self, labels_layer: Any) -> str | None:
        """The entry name under which ``labels_layer`` is saved (None before its first save)."""
        entry = self._find(labels_layer)
        return entry.name if entry is not None else None

    def track(
        self, name: str | None, image_layer: Any, labels_layer: Any, region_layer: Any = None
    ) -> None:
        """Autosave ``labels_layer`` (and ``region_layer``) as entry ``name`` of the project.

        ``name`` None lets the project name it after the image layer at its first save.
        """
        self._track(name, image_layer, labels_layer, region_layer, clean=False)

    def _track(
        self, name: str | None, image: Any, labels: Any, region: Any, *, clean: bool
    ) -> _Entry:
        # docks may hold napari's public-only proxies; events carry the layers themselves
        image, labels, region = (_unwrap(layer) for layer in (image, labels, region))
        entry = self._find(labels)
        if entry is None:
            entry = _Entry(labels=labels, image=image, name=name)
            entry.timer.setSingleShot(True)
            entry.timer.timeout.connect(partial(self._save, entry))
            entry.history = _history_lengths(labels)
            labels.events.paint.connect(self._on_labels_change)
            labels.events.data.connect(self._on_labels_change)
            labels.events.set_data.connect(self._on_set_data)
            self._entries.append(entry)
            self._tell_if_left(labels)
            if not clean:
                self._changed(entry)
        else:
            entry.image = image if image is not None else entry.image
            if name is not None and name != entry.name:
                entry.name = name
                self._changed(entry)
        if region is not entry.region:
            self._set_region(entry, region)
            if not clean:
                self._changed(entry)
        return entry

    def _tell_if_left(self, labels: Any) -> None:
        """An annotation saved in an earlier project is saved in this one from now on: say so."""
        for item in list(self._left):
            layer, folder = item[0](), item[1]
            if layer is None:
                self._left.remove(item)
            elif layer is labels:
                self._left.remove(item)
                if self.project is not None and folder != self.project.folder:
                    show_info(
                        f"'{labels.name}' is saved in the project {folder}; from now on it is "
                        f"also saved in the project {self.project.folder}."
                    )

    def _set_region(self, entry: _Entry, region: Any) -> None:
        if entry.region is not None:
            entry.region.events.data.disconnect(self._on_region_change)
        entry.region = region
        if region is not None:
            region.events.data.connect(self._on_region_change)

    def untrack(self, name: str) -> None:
        """Stop autosaving entry ``name`` (pending changes are written first)."""
        entry = next((e for e in self._entries if e.name == name), None)
        if entry is not None:
            self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        if entry.dirty and not self._closed:
            entry.timer.stop()
            self._save(entry)
        entry.timer.stop()
        for event in ("paint", "data"):
            getattr(entry.labels.events, event).disconnect(self._on_labels_change)
        entry.labels.events.set_data.disconnect(self._on_set_data)
        self._set_region(entry, None)
        self._entries.remove(entry)

    def _find(self, labels: Any) -> _Entry | None:
        labels = _unwrap(labels)
        return next((e for e in self._entries if e.labels is labels), None)

    def _follow(self, choice: Any, parts: Any = None) -> None:
        """The current annotation is always autosaved, even outside any training set."""
        if choice.labels is None or choice.image is None or self._closed:
            return
        if _unwrap(choice.labels) not in self._viewer.layers:
            return
        self._track(None, choice.image, choice.labels, choice.region, clean=False)

    def _on_removed(self, event: Any) -> None:
        layer = event.value
        for entry in list(self._entries):
            if entry.labels is layer:
                self._forget(entry)  # its last strokes are written
            elif entry.region is layer:
                self._set_region(entry, None)
                self._changed(entry)

    # -- changes and saves
    def _on_labels_change(self, event: Any) -> None:
        entry = self._find(event.source)
        if entry is not None:
            entry.history = _history_lengths(entry.labels)
            self._changed(entry)

    def _on_set_data(self, event: Any) -> None:
        """Undo and redo write pixels without a paint event: seen as a change of napari's queues."""
        entry = self._find(event.source)
        if entry is not None:
            now = _history_lengths(entry.labels)
            if now is None or now != entry.history:
                entry.history = now
                self._changed(entry)

    def _on_region_change(self, event: Any) -> None:
        for entry in self._entries:
            if entry.region is event.source:
                self._changed(entry)

    def _changed(self, entry: _Entry) -> None:
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

    def _job(self, entry: _Entry, allow_empty: bool) -> tuple | None:
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

    def _copy_of(self, entry: _Entry) -> np.ndarray | None:
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

    def _save(self, entry: _Entry, *, allow_empty: bool = False) -> None:
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
            errored=lambda exc: show_error(f"Autosave failed: {exc}"),
            finished=partial(self._on_finished, entry),
        )

    def _on_written(self, entry: _Entry, started: int, result: Any) -> None:
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

    def _on_finished(self, entry: _Entry) -> None:
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

    def _close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._state.annotation.changed.disconnect(self._follow)
        viewer = self._viewer
        if viewer is not None:
            viewer.layers.events.removed.disconnect(self._on_removed)
        for entry in list(self._entries):
            self._forget(entry)
        self._workers.stop_all(5.0)
        if self._lock is not None:
            self._lock.release()

    def _tell(self, message: str, *, error: bool = False) -> None:
        self.problems = [message]
        self.problem.emit(message)
        (show_error if error else show_warning)(message)

    stored = Signal(str)  # copies of the images were kept: the sentence that says so

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
        show_info(message)

    # -- opening a project
    def open(self, folder: str | os.PathLike) -> Any:
        """Open the project in ``folder``: its layers, regions and model in use come back.

        Reading runs in a worker; the :attr:`opened` signal then carries the list of
        :class:`RestoredEntry`. An image that moved or changed is one sentence
        (:attr:`problems`), and the rest opens.
        """
        return self._workers.start_function(
            load_project,
            Path(folder),
            returned=self._restore,
            errored=lambda exc: show_error(f"The project could not be opened: {exc}"),
        )

    def _restore(self, loaded: Loaded | UserProblem) -> list[RestoredEntry]:
        if isinstance(loaded, UserProblem):
            self._tell(loaded.message, error=True)
            return []
        lock = self._lock_for(loaded.project.folder)
        try:
            lock.acquire()
        except NapariUnetError as exc:
            self._tell(str(exc), error=True)
            return []
        # the previous project keeps what was painted: written there now, before switching
        self.flush()
        unsaved = [e.labels.name for e in self._entries if e.dirty and not e.refused]
        if unsaved:
            if lock is not self._lock:
                lock.release()
            self._tell(
                f"The project was not opened: '{unsaved[0]}' could not be saved first "
                f"in {self.project.folder}.",
                error=True,
            )
            return []
        previous = self.project.folder if self.project is not None else None
        for entry in list(self._entries):
            if previous is not None and entry.name is not None:
                self._left.append((weakref.ref(entry.labels), previous))
            self._forget(entry)
        self._set_project(loaded.project, lock)
        viewer = self._viewer
        restored = []
        for record, image, labels, region, notes in loaded.items:
            image_layer = self._image_layer(record, image)
            if image_layer is None and record.image is None:
                loaded.problems.append(
                    f"The image of '{record.name}' was not read from a file, so the project "
                    "cannot open it; its annotation opens alone (Keep copies of the images, "
                    "in the Train dock's project, stores such images)."
                )
            place = {}
            if image_layer is not None:
                place = {"scale": image_layer.scale[-labels.ndim :]}
            labels_layer = viewer.add_labels(
                labels,
                name=f"{record.layer_name} annotation",
                metadata={
                    OWNER_KEY: {"role": "annotation", "source": record.layer_name},
                    COPIED_KEY: dict(notes.get("copied") or {}),
                    COMPLETE_KEY: bool(notes.get("complete")),
                },
                **place,
            )
            labels_layer.selected_label = free_id(labels)  # the first stroke is a new cell
            region_layer = None
            if region is not None:
                region_layer = self._region_layer(record.layer_name, region, place)
            self._track(record.name, image_layer, labels_layer, region_layer, clean=True)
            restored.append(RestoredEntry(record.name, image_layer, labels_layer, region_layer))
        if loaded.model is not None:
            self._state.model.set_model(loaded.model, loaded.model_source)
        self.moved = list(loaded.moved)
        self.problems = list(loaded.problems)
        saved = [r.saved_at for r in loaded.project.entries if r.saved_at]
        self.last_saved = max(saved) if saved else None
        for sentence in loaded.problems:
            self.problem.emit(sentence)
            show_warning(sentence)
        self._restore_order(loaded.project.view.get("order") or [], restored)
        last = next((r for r in reversed(restored) if r.image is not None), None)
        current = loaded.project.view.get("current")
        last = next((r for r in restored if r.name == current and r.image), last)
        if last is not None:
            self._state.annotation.set(image=last.image, labels=last.labels, region=last.region)
        else:  # the current annotation stays current: it is saved in this project from now on
            self._follow(self._state.annotation)
        self.opened.emit(restored)
        return restored

    def _restore_order(self, order: list, restored: list[RestoredEntry]) -> None:
        """Stack the restored layers as they were saved (an annotation above its image).

        Without a saved order each annotation and region goes just above its image.
        """
        by_part = {
            (r.name, part): getattr(r, part)
            for r in restored
            for part in ("image", "labels", "region")
            if getattr(r, part) is not None
        }
        wanted = [by_part.pop(tuple(item)) for item in order if tuple(item) in by_part]
        for r in restored:  # the rest, in the natural order
            for part in ("image", "labels", "region"):
                if (r.name, part) in by_part:
                    wanted.append(by_part.pop((r.name, part)))
        layers = self._viewer.layers
        slots = sorted(layers.index(layer) for layer in wanted)
        for slot, layer in zip(slots, wanted):  # bottom to top, each into its slot
            src = layers.index(layer)
            layers.move(src, slot + 1 if src < slot else slot)  # (move inserts before dest)

    def _image_layer(self, record: Any, image: np.ndarray | None) -> Any:
        """The image layer of ``record``: one already open with its name and shape, or a new one."""
        from napari.layers import Image

        for layer in self._viewer.layers:
            if (
                isinstance(layer, Image)
                and layer.name == record.layer_name
                and tuple(spatial_shape(layer)) == tuple(record.shape)
            ):
                return layer
        if image is None:
            return None
        return self._viewer.add_image(image, name=record.layer_name)

    def _region_layer(self, source: str, region: Any, place: dict) -> Any:
        from ..project import RegionShapes, mask_to_shapes

        shapes = region if isinstance(region, RegionShapes) else mask_to_shapes(region)
        return self._viewer.add_shapes(
            [np.asarray(d) for d in shapes.data],
            shape_type=list(shapes.shape_types),
            ndim=shapes.ndim,
            name=f"{source} annotated region",
            face_color="transparent",
            edge_color="yellow",
            edge_width=2,
            metadata={OWNER_KEY: {"role": "region", "source": source}},
            **{k: v[-shapes.ndim :] for k, v in place.items()},
        )

    def relocate(self, name: str, image_path: str | os.PathLike) -> Any:
        """Point entry ``name`` at its moved image: the manifest is updated, the image opens."""
        from ..fileio import read_image

        if self.project is None:
            return None
        project = self.project

        def work() -> tuple | UserProblem:
            try:
                record = project.relocate(name, image_path)
                return record, read_image(record.image)
            except NapariUnetError as exc:
                return UserProblem(exc)

        return self._workers.start_function(work, returned=self._relocated)

    def _relocated(self, result: Any) -> None:
        if isinstance(result, UserProblem):
            self._tell(result.message, error=True)
            return
        record, image = result
        layer = self._image_layer(record, image)
        layers = self._viewer.layers
        for entry in self._entries:  # the image goes under its annotation, not over it
            if entry.name == record.name and entry.labels in layers:
                below = layers.index(entry.labels)
                if layers.index(layer) > below:
                    layers.move(layers.index(layer), below)
        self.moved = [n for n in self.moved if n != record.name]
        self.problems = [p for p in self.problems if f"'{record.name}'" not in p]
        for entry in self._entries:
            if entry.name == record.name:
                entry.image = layer
                self._state.annotation.set(image=layer, labels=entry.labels, region=entry.region)
        self.changed.emit(self.project)


def _unwrap(layer: Any) -> Any:
    """The layer behind a napari PublicOnlyProxy (what its events carry as their source)."""
    return getattr(layer, "__wrapped__", layer)


def _history_lengths(layer: Any) -> tuple[int, int] | None:
    try:
        return len(layer._undo_history), len(layer._redo_history)
    except (AttributeError, TypeError):
        return None


_SESSIONS: weakref.WeakKeyDictionary[Any, ProjectSession] = weakref.WeakKeyDictionary()


def project_for(viewer: napari.viewer.Viewer) -> ProjectSession:
    """The :class:`ProjectSession` of ``viewer`` (made, and autosave started, on first use)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get a PublicOnlyProxy
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = ProjectSession(viewer)
    return session
