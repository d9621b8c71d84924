"""The model a viewer is working with, shared by the plugin's docks.

Each viewer gets its own :class:`ModelSession` (kept in a weak mapping, so it
goes away with the viewer): the Train dock puts the model it trained there, the
Predict and Model docks use and replace it. Nothing is shared between viewers.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
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
    """

    changed = Signal(object)

    def __init__(self) -> None:
        self.model: UNet | None = None
        self.source: str = ""

    def set_model(self, model: UNet, source: str) -> None:
        """Make ``model`` current and tell the docks."""
        self.model = model
        self.source = source
        self.changed.emit(self)

    def describe(self) -> str:
        """One line for the docks: which model is in use."""
        if self.model is None:
            return "none yet: train one, load a file, or use the bundled model"
        c = self.model.config
        return f"{self.source} (width {c['base_channels']}, depth {c['depth']})"


_SESSIONS: weakref.WeakKeyDictionary[Any, ModelSession] = weakref.WeakKeyDictionary()


def session_for(viewer: napari.viewer.Viewer) -> ModelSession:
    """The :class:`ModelSession` of ``viewer`` (created on first use)."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = ModelSession()
    return session
