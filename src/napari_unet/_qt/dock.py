"""The base of the plugin's docks: labelled fields that scroll when the screen is short."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFrame, QScrollArea

if TYPE_CHECKING:
    from .session import ViewerState


class ScrollingDock(Container):
    """A dock whose fields (:attr:`form`) sit in a vertical scroll area.

    napari docks a magicgui container's ``native`` widget, which drops the scroll
    area of ``Container(scrollable=True)``; so the scroll area is built here, and
    a dock's minimum height stays small enough for a 1366x768 laptop screen.
    """

    def __init__(self) -> None:
        super().__init__(labels=False)
        self.form = Container(labels=True)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setWidget(self.form.native)
        self.native.layout().addWidget(self._scroll)
        self.margins = (0, 0, 0, 0)

    def finish(self, state: ViewerState) -> None:
        """Once the fields are in: size the dock to them, and close with the viewer.

        The scroll area is as wide as the fields need (nothing is cut off at the
        right); :meth:`_shutdown` runs once, when this dock or the viewer closes.
        """
        for combo in self.form.native.findChildren(QComboBox):  # long layer names elide
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(self.form.native.minimumSizeHint().width() + bar)
        self._closed = False
        self._cancel_close_hook = state.on_close(self._close_once)
        self.native.destroyed.connect(lambda *_: self._close_once())

    def _close_once(self) -> None:
        if not self._closed:
            self._closed = True
            self._cancel_close_hook()
            self._shutdown()

    def _shutdown(self) -> None:
        """Stop listening and wait for the dock's workers (subclasses add theirs)."""

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.form.reset_choices()
