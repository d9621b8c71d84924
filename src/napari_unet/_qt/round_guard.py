"""The guard's message: a round scored worse than its start model and was not put in use."""

from __future__ import annotations

from psygnal import Signal
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class RoundGuardNote(QWidget):
    """One sentence and a "Use round k anyway" button; hidden until a round is kept out."""

    use_anyway = Signal(int)  # round k

    def __init__(self) -> None:
        super().__init__()
        self.round: int | None = None
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.button = QPushButton("Use it anyway")
        self.button.setToolTip("Put this round's model in use although it scored lower.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        layout.addWidget(self.button)
        self.button.clicked.connect(self._on_click)
        self.setVisible(False)

    def offer(self, k: int, sentence: str) -> None:
        """Say why round ``k`` is not in use and offer it."""
        self.round = k
        self.text.setText(f"{sentence} Use round {k} anyway?")
        self.button.setText(f"Use round {k} anyway")
        self.setVisible(True)

    def clear(self) -> None:
        """Nothing to offer (a new round, or the offer was taken)."""
        self.round = None
        self.setVisible(False)

    def _on_click(self) -> None:
        if self.round is not None:
            k = self.round
            self.clear()
            self.use_anyway.emit(k)
