"""The base of the plugin's docks: labelled fields that scroll when the screen is short."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea


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

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.form.reset_choices()
