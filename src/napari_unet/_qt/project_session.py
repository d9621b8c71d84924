"""A viewer's project: its folder and lock, and the annotations it follows.

Each viewer has one :class:`ProjectSession` (:func:`project_for`). It follows the
viewer's current annotation (the Annotate dock's choice) and any entry the Train
dock tracks, and autosaves them into the project folder. The session is
assembled from its jobs:

- here: the project folder and its lock, and which layers are tracked;
- :mod:`.autosave`: the delayed autosave (:class:`~.autosave.Autosave`) and
  copies of the images;
- :mod:`.project_restore`: opening a project again (:class:`~.project_restore.ProjectRestore`).

Everything the session says to the user goes through :meth:`ProjectSession._tell`
(a problem, recorded and signalled) or :meth:`ProjectSession._say` (a notification).
"""

from __future__ import annotations

import os
import time
import weakref
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal

from ..errors import NapariUnetError
from .autosave import (
    AUTO_KEEP_BYTES,
    DEBOUNCE_MS,
    MAX_WAIT_S,
    Autosave,
    AutosaveEntry,
)
from .layers import history_lengths
from .project_io import image_info
from .project_restore import ProjectRestore, RestoredEntry
from .session import state_for
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

    from ..project import Project, ProjectLock

__all__ = [
    "AUTO_KEEP_BYTES",
    "DEBOUNCE_MS",
    "MAX_WAIT_S",
    "ProjectSession",
    "RestoredEntry",
    "project_for",
]


class ProjectSession(Autosave, ProjectRestore):
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
    stored = Signal(str)  # copies of the images were kept: the sentence that says so

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer_ref = weakref.ref(viewer)  # the session must not keep the viewer alive
        self._state = state_for(viewer)
        self.project: Project | None = None
        self.last_saved: float | None = None
        self.problems: list[str] = []
        self.moved: list[str] = []
        self._entries: list[AutosaveEntry] = []
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
    ) -> AutosaveEntry:
        # docks may hold napari's public-only proxies; events carry the layers themselves
        image, labels, region = (_unwrap(layer) for layer in (image, labels, region))
        entry = self._find(labels)
        if entry is None:
            entry = AutosaveEntry(labels=labels, image=image, name=name)
            entry.timer.setSingleShot(True)
            entry.timer.timeout.connect(partial(self._save, entry))
            entry.history = history_lengths(labels)
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

    def _set_region(self, entry: AutosaveEntry, region: Any) -> None:
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

    def _forget(self, entry: AutosaveEntry) -> None:
        if entry.dirty and not self._closed:
            entry.timer.stop()
            self._save(entry)
        entry.timer.stop()
        for event in ("paint", "data"):
            getattr(entry.labels.events, event).disconnect(self._on_labels_change)
        entry.labels.events.set_data.disconnect(self._on_set_data)
        self._set_region(entry, None)
        self._entries.remove(entry)

    def _find(self, labels: Any) -> AutosaveEntry | None:
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

    def _say(self, message: str, kind: str = "info") -> None:
        """A napari notification (``kind``: info, warning or error), not recorded as a problem."""
        {"info": show_info, "warning": show_warning, "error": show_error}[kind](message)


def _unwrap(layer: Any) -> Any:
    """The layer behind a napari PublicOnlyProxy (what its events carry as their source)."""
    return getattr(layer, "__wrapped__", layer)


_SESSIONS: weakref.WeakKeyDictionary[Any, ProjectSession] = weakref.WeakKeyDictionary()


def project_for(viewer: napari.viewer.Viewer) -> ProjectSession:
    """The :class:`ProjectSession` of ``viewer`` (made, and autosave started, on first use)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get a PublicOnlyProxy
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = ProjectSession(viewer)
    return session
