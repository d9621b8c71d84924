"""What the plugin's docks share within one viewer, and what happens when it closes.

Each viewer gets one :class:`ViewerState` (kept in a weak mapping, so it goes
away with the viewer): the model in use (:class:`ModelSession`), the current
annotation (:class:`AnnotationChoice`), the one-time warm-up, and the docks'
close hooks. Nothing is shared between viewers.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from typing import TYPE_CHECKING, Any

from psygnal import Signal
from qtpy.QtCore import QEvent, QObject

from .workers import WorkerGroup, warm_up_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari

    from ..model import UNet


class ModelSession:
    """The current model of one viewer and where it came from.

    Attributes
    ----------
    model : UNet or None
        ``None`` until a model is trained or loaded; then the Predict dock uses it.
    source : str
        A short description shown to the user ("trained here", a file name, ...).
    generation : int
        Counts the models made current; a result stamped with it is known to
        come from the model still in use.
    """

    changed = Signal(object)

    def __init__(self) -> None:
        self.model: UNet | None = None
        self.source: str = ""
        self.generation = 0

    def set_model(self, model: UNet, source: str) -> None:
        """Make ``model`` current and tell the docks."""
        self.model = model
        self.source = source
        self.generation += 1
        self.changed.emit(self)

    def describe(self) -> str:
        """One line for the docks: which model is in use."""
        if self.model is None:
            return "none yet: train one, load a file, or use the bundled model"
        c = self.model.config
        return f"{self.source} (width {c['base_channels']}, depth {c['depth']})"


class AnnotationChoice:
    """The annotation the docks work on: the one the Annotate dock made or chose.

    The Annotate dock (New annotation, its Annotation and region choices) and the
    Predict dock (Copy segmentation to annotation) set it; the Train dock follows it.
    """

    changed = Signal(object, object)  # the choice, and the names of the parts that changed

    def __init__(self) -> None:
        self.image: Any = None
        self.labels: Any = None
        self.region: Any = None

    def set(self, **parts: Any) -> None:
        """Change some of ``image``, ``labels`` and ``region`` and tell the docks."""
        changed = set()
        for key, value in parts.items():
            if getattr(self, key) is not value:
                setattr(self, key, value)
                changed.add(key)
        if changed:
            self.changed.emit(self, frozenset(changed))


class _CloseWatcher(QObject):
    """Runs the close hooks once napari's window is really closing."""

    def __init__(self, state: ViewerState) -> None:
        super().__init__()
        self._state = weakref.ref(state)
        self._asked = False

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kind = event.type()
        if kind == QEvent.Type.Show:  # a close the user declined is forgotten
            self._asked = False
        elif kind == QEvent.Type.Close:
            if event.spontaneous():  # napari may still ask to confirm: wait for the hide
                self._asked = True
            else:
                self._close()
        elif kind == QEvent.Type.Hide and self._asked and not event.spontaneous():
            self._close()
        return False

    def _close(self) -> None:
        state = self._state()
        if state is not None:
            state.close()


class ViewerState:
    """Per-viewer state of the plugin; see the module docstring."""

    warmed = Signal()  # the one-time loading is done (torch is imported)

    def __init__(self) -> None:
        self.model = ModelSession()
        self.annotation = AnnotationChoice()
        self.closed = False
        self._warm_up = WorkerGroup()
        self._warmed = False
        self.is_warm = False
        self._hooks: list[Callable[[], None]] = []
        self._first: list[Callable[[], None]] = []  # ask everything to stop, then wait
        self._watcher: _CloseWatcher | None = None

    def warm_up(self) -> None:
        """Start the one-time loading in a worker (once per viewer)."""
        if not self._warmed:
            self._warmed = True
            self._warm_up.start_generator(warm_up_steps(), returned=self._on_warm)

    def _on_warm(self, _result: object) -> None:
        self.is_warm = True
        self.warmed.emit()

    def on_close(
        self, hook: Callable[[], None], *, first: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """Run ``hook`` when the viewer closes; returns a function that cancels it.

        ``first`` runs before every hook: it asks work to stop without waiting,
        so that the waits of several docks overlap instead of adding up.
        """
        self._hooks.append(hook)
        if first is not None:
            self._first.append(first)

        def cancel() -> None:
            with contextlib.suppress(ValueError):
                self._hooks.remove(hook)
            with contextlib.suppress(ValueError):
                self._first.remove(first)

        return cancel

    def close(self, timeout: float = 10.0) -> None:
        """The viewer closes: stop every worker the plugin started and wait for it."""
        if self.closed:
            return
        self.closed = True
        for ask in list(self._first):
            ask()
        for hook in list(self._hooks):
            hook()
        self._warm_up.stop_all(timeout)

    def _watch(self, viewer: Any) -> None:
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if window is not None:
            self._watcher = _CloseWatcher(self)
            window.installEventFilter(self._watcher)


_STATES: weakref.WeakKeyDictionary[Any, ViewerState] = weakref.WeakKeyDictionary()


def state_for(viewer: napari.viewer.Viewer) -> ViewerState:
    """The :class:`ViewerState` of ``viewer`` (created, and its close watched, on first use)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get a PublicOnlyProxy
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = ViewerState()
        state._watch(viewer)
    return state


def session_for(viewer: napari.viewer.Viewer) -> ModelSession:
    """The :class:`ModelSession` of ``viewer``."""
    return state_for(viewer).model


@atexit.register
def _close_all() -> None:
    """At interpreter exit, before Qt objects go away, stop what still runs."""
    for state in list(_STATES.values()):
        with contextlib.suppress(Exception):
            state.close(timeout=5.0)
