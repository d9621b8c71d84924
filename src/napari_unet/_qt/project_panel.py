"""The project's few lines at the top of the Train dock: where it is, open another, last save."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from .dock import StatusLine
from .project_session import project_for

if TYPE_CHECKING:
    import napari

NO_PROJECT = "none yet: created when you annotate"


def saved_ago(seconds: float) -> str:
    """'Saved 3 s ago', 'Saved 4 min ago', 'Saved at 14:05'."""
    if seconds < 60:
        return f"Saved {max(0, int(seconds))} s ago"
    if seconds < 3600:
        return f"Saved {int(seconds // 60)} min ago"
    return "Saved at " + time.strftime("%H:%M", time.localtime(time.time() - seconds))


class ProjectPanel(Container):
    """Project folder, Choose folder..., Open project..., last autosave, problems.

    Embed its ``native`` widget in a dock. Problems (an unwritable folder, a
    moved image) are also napari notifications; a moved image can be located here.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._session = project_for(viewer)
        self._folder = StatusLine(2, label="Project", value=NO_PROJECT)
        self._choose = PushButton(text="Choose folder...")
        self._open = PushButton(text="Open project...")
        self._recent = ComboBox(
            label="Recent",
            choices=self._recent_choices,
            tooltip="Projects saved or opened lately; choose one to open it.",
        )
        self._saved = StatusLine(1, label="Autosave", value="nothing to save yet")
        self._message = StatusLine(2, label="", value="")
        self._keep_empty = PushButton(text="Save the empty annotation", visible=False)
        self._locate = PushButton(text="Locate moved image...", visible=False)
        self._note = ""
        self._store = PushButton(
            text="Keep copies of the images",
            tooltip="Store the images of the saved annotations in the project folder, so that "
            "it opens whole on another computer, and images that came from no file (a sample) "
            "come back.",
            visible=False,
        )
        buttons = Container(layout="horizontal", labels=False, widgets=[self._open, self._choose])
        buttons.margins = (0, 0, 0, 0)
        self.extend(
            [
                self._folder,
                buttons,
                self._recent,
                self._saved,
                self._message,
                self._keep_empty,
                self._locate,
                self._store,
            ]
        )
        for label in (self._folder, self._saved, self._message):
            label.native.setWordWrap(True)
        self._choose.changed.connect(self.choose_folder)
        self._open.changed.connect(self.open_project)
        self._recent.changed.connect(self._open_recent)
        self._keep_empty.changed.connect(self.keep_empty)
        self._locate.changed.connect(self.locate_image)
        self._store.changed.connect(lambda *_: self._session.store_images())
        session = self._session
        session.changed.connect(self._show)
        session.saved.connect(self._show)
        session.problem.connect(self._on_problem)
        session.refused.connect(self._show)
        session.opened.connect(self._show)
        session.opened.connect(self._refresh_recent)
        session.saved.connect(self._refresh_recent)
        session.stored.connect(self._on_stored)
        self._clock = QTimer(self.native)  # "Saved 3 s ago" keeps counting
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._show)
        self._clock.start()
        self.native.destroyed.connect(self._disconnect)
        self._show()

    def _disconnect(self, *_: Any) -> None:
        session = self._session
        for signal, slot in (
            (session.changed, self._show),
            (session.saved, self._show),
            (session.problem, self._on_problem),
            (session.refused, self._show),
            (session.opened, self._show),
            (session.opened, self._refresh_recent),
            (session.saved, self._refresh_recent),
            (session.stored, self._on_stored),
        ):
            signal.disconnect(slot)

    @staticmethod
    def _recent_choices(_widget: Any = None) -> list[tuple[str, str]]:
        from ..project import recent_projects

        return [("", "")] + [(p.name, str(p)) for p in recent_projects()]

    def _open_recent(self, folder: str) -> None:
        project = self._session.project
        if not folder or (project is not None and str(project.folder) == folder):
            return
        self._message.value = "Opening..."
        self._session.open(folder)

    def _show(self, *_: Any) -> None:
        session = self._session
        project = session.project
        if project is None:
            self._folder.value = NO_PROJECT
        elif not (project.folder / "manifest.json").is_file():
            self._folder.value = f"{project.folder} (made at the first save)"
        else:
            self._folder.value = str(project.folder)
        if session.last_saved is not None:
            self._saved.value = saved_ago(time.time() - session.last_saved)
        self._keep_empty.visible = bool(session.refused_entries)
        self._store.visible = session.unkept_images  # a large image from no file: on request
        self._locate.visible = bool(session.moved)
        if not session.problems and not self._note:
            self._message.value = ""

    def _refresh_recent(self, *_: Any) -> None:
        """The list follows the projects saved and opened; it shows no choice of its own."""
        with self._recent.changed.blocked():
            self._recent.reset_choices()
            self._recent.value = ""

    def _on_problem(self, message: str) -> None:
        self._note = ""
        self._message.value = message
        self._show()

    def _on_stored(self, message: str) -> None:
        self._note = message  # stays until a problem replaces it
        self._message.value = message

    # -- actions (the dialogs are methods, so tests can answer them)
    def _ask_folder(self, caption: str) -> str | None:
        start = self._start_folder()
        folder = QFileDialog.getExistingDirectory(
            self.native, caption, start, QFileDialog.Option.DontUseNativeDialog
        )
        return folder or None

    def _start_folder(self) -> str:
        """Where a folder dialog starts: beside the open project, else in the projects folder.

        (The default projects live in the user's data folder, hidden on Linux.)
        """
        from ..project import data_folder

        project = self._session.project
        if project is not None and project.folder.parent.is_dir():
            return str(project.folder.parent)
        projects = data_folder() / "projects"
        return str(projects if projects.is_dir() else Path.home())

    def _ask_file(self, caption: str, near: str | None = None) -> str | None:
        start = Path(near).parent if near else Path.home()
        while not start.is_dir() and start != start.parent:  # the nearest folder still there
            start = start.parent
        path, _ = QFileDialog.getOpenFileName(
            self.native, caption, str(start), options=QFileDialog.Option.DontUseNativeDialog
        )
        return path or None

    def choose_folder(self) -> None:
        """Ask for the folder the project lives in from now on."""
        folder = self._ask_folder("Folder for the napari-unet project")
        if folder:
            self._session.choose_folder(folder)
            self._show()

    def open_project(self) -> None:
        """Ask for a project folder and open it (layers, regions, model in use)."""
        folder = self._ask_folder("Open a napari-unet project folder")
        if folder:
            self._message.value = "Opening..."
            self._session.open(folder)

    def keep_empty(self) -> None:
        """The user asks: the empty annotation replaces the saved one (versions are kept)."""
        for name in self._session.refused_entries:
            self._session.save_now(name, allow_empty=True)
        self._keep_empty.visible = False

    def locate_image(self) -> None:
        """Ask where the first moved image is now."""
        if not self._session.moved:
            return
        name = self._session.moved[0]
        project = self._session.project
        was = project.entry(name).image if project is not None else None
        path = self._ask_file(f"Where is the image of '{name}' now?", was)
        if path:
            self._session.relocate(name, path)
