"""The Train dock's round history: every Fine-tune's scores, a plot of AP by round, undo."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from psygnal import Signal
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .loss_plot import draw_curve

if TYPE_CHECKING:
    from ..project.history import RoundHistory, RoundRecord

# the numbers that compare rounds first, so they show without scrolling
COLUMNS = (
    "Round",
    "AP@0.5",
    "Mean IoU",
    "Val. cells",
    "Cells (new)",
    "Steps",
    "Seconds",
    "Start model",
    "Objects",
    "Time",
    "Model file",
)
_NUMBERS = range(1, 7)
_AP = QColor(120, 220, 120)
_IOU = QColor(80, 170, 255)


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def row_texts(r: RoundRecord, current: int | None) -> tuple[str, ...]:
    """The table's texts for round ``r`` (the round in use is marked)."""
    return (
        f"{r.round}{' (in use)' if r.round == current else ''}",
        _score(r.ap50),
        _score(r.mean_iou),
        str(r.val_cells),
        f"{r.cells} (+{r.new_cells})",
        str(r.steps),
        f"{r.seconds:.0f}",
        r.start_model,
        r.objects,
        r.time.replace("T", " ")[5:16],
        r.model_file,
    )


class RoundPlot(QWidget):
    """Validation AP@0.5 (green) and mean IoU (blue) by round, on 0..1."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.rounds: list[int] = []
        self.ap: list[float | None] = []
        self.iou: list[float | None] = []

    def set_rounds(self, records: list[RoundRecord]) -> None:
        """Show these rounds."""
        self.rounds = [r.round for r in records]
        self.ap = [r.ap50 for r in records]
        self.iou = [r.mean_iou for r in records]
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(30, 8, -8, -18)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(area)
        scored = [a for a in self.ap if a is not None]
        if not scored:
            text = (
                "validation AP by round appears here"
                if not self.rounds
                else "no validation cells yet: annotate more cells"
            )
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, text)
            p.end()
            return
        x0, x1 = self.rounds[0], max(self.rounds[-1], self.rounds[0] + 1)

        def pt(k: int, v: float) -> QPointF:
            return QPointF(
                area.left() + (k - x0) / (x1 - x0) * area.width(),
                area.bottom() - v * area.height(),
            )

        for values, color in ((self.iou, _IOU), (self.ap, _AP)):
            pts = [
                pt(k, v) for k, v in zip(self.rounds, values) if v is not None and math.isfinite(v)
            ]
            draw_curve(p, pts, color, dot=3, dots=True)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.drawText(QRectF(0, area.top() - 6, 26, 14), Qt.AlignmentFlag.AlignRight, "1")
        p.drawText(QRectF(0, area.bottom() - 8, 26, 14), Qt.AlignmentFlag.AlignRight, "0")
        p.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), 16),
            Qt.AlignmentFlag.AlignLeft,
            self.legend(),
        )
        p.end()

    def legend(self) -> str:
        """The line under the plot."""
        last = next((a for a in reversed(self.ap) if a is not None), None)
        text = f"round {self.rounds[-1]}" if self.rounds else ""
        if last is not None:
            text += f"   AP50 {last:.2f} (green)   mean IoU (blue)"
        return text


class RoundHistoryPanel(QWidget):
    """The rounds of the project, a plot of their scores, and "Use this round's model"."""

    use_round = Signal(int)  # the user asks for round k's model

    def __init__(self) -> None:
        super().__init__()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(170)
        self.use_button = QPushButton("Use this round's model")
        self.use_button.setToolTip("Make the selected round's model the one in use again.")
        self.use_button.setEnabled(False)
        self.plot = RoundPlot()
        self.note = QLabel("No round yet: each Fine-tune is a round, kept in the project.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Rounds</b>"))
        layout.addWidget(self.table)
        layout.addWidget(self.use_button)
        layout.addWidget(self.plot)
        layout.addWidget(self.note)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.use_button.clicked.connect(self._on_use)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._on_use())
        self._records: list[RoundRecord] = []

    def show_history(self, history: RoundHistory | None) -> None:
        """Show ``history`` (None: no project yet)."""
        records = list(history.rounds) if history is not None else []
        current = history.current if history is not None else None
        self._records = records
        self.table.setRowCount(len(records))
        for row, r in enumerate(records):
            for col, text in enumerate(row_texts(r, current)):
                item = QTableWidgetItem(text)
                if col in _NUMBERS:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, col, item)
        self.plot.set_rounds(records)
        if records:
            last = records[-1]
            rests = (
                f"on {last.val_cells} held-out cells" if last.val_cells else "without validation"
            )
            self.note.setText(
                f"{len(records)} round(s); the latest is scored {rests}. Held-out cells stay "
                "held out in later rounds, so scores compare."
            )
        self._on_selection()

    def selected_round(self) -> int | None:
        """The round of the selected row, if any."""
        rows = {i.row() for i in self.table.selectedIndexes()}
        if len(rows) != 1:
            return None
        return self._records[rows.pop()].round

    def _on_selection(self) -> None:
        self.use_button.setEnabled(self.selected_round() is not None)

    def _on_use(self) -> None:
        k = self.selected_round()
        if k is not None:
            self.use_round.emit(k)

    def rows(self) -> list[tuple[str, ...]]:
        """The texts shown, row by row (for tests and screenshots)."""
        return [
            tuple(self.table.item(r, c).text() for c in range(self.table.columnCount()))
            for r in range(self.table.rowCount())
        ]
