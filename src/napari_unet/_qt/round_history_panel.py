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
    "Start AP",
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
_NUMBERS = range(1, 8)
# Why a score is blank (the AP cells' tooltip).
NO_HUMAN_CELLS = (
    "No score: no human-painted cell is held out yet (cells copied from a prediction and "
    "not edited never count). Paint more cells."
)
_AP = QColor(120, 220, 120)
_IOU = QColor(80, 170, 255)


def _rounds(n: int) -> str:
    return "1 round" if n == 1 else f"{n} rounds"


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def row_texts(r: RoundRecord, current: int | None) -> tuple[str, ...]:
    """The table's texts for round ``r`` (the round in use, and one the guard kept out, marked)."""
    mark = " (in use)" if r.round == current else "" if r.put_in_use else " (worse)"
    return (
        f"{r.round}{mark}",
        _score(r.ap50),
        _score(r.start_ap50),
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
        self.setMinimumHeight(140)
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
        area = QRectF(self.rect()).adjusted(30, 22, -8, -30)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(area)
        self._draw_legend(p, QRectF(area.left(), 2, area.width(), 16))
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

        def x_of(k: int) -> float:
            return area.left() + (k - x0) / (x1 - x0) * area.width()

        def pt(k: int, v: float) -> QPointF:
            return QPointF(x_of(k), area.bottom() - v * area.height())

        for values, color in ((self.iou, _IOU), (self.ap, _AP)):
            pts = [
                pt(k, v) for k, v in zip(self.rounds, values) if v is not None and math.isfinite(v)
            ]
            draw_curve(p, pts, color, dot=3, dots=True)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.drawText(QRectF(0, area.top() - 6, 26, 14), Qt.AlignmentFlag.AlignRight, "1")
        p.drawText(QRectF(0, area.bottom() - 8, 26, 14), Qt.AlignmentFlag.AlignRight, "0")
        step = max(1, math.ceil(len(self.rounds) / 8))  # at most about 8 round numbers
        for k in self.rounds[::step]:
            p.drawText(
                QRectF(x_of(k) - 15, area.bottom() + 1, 30, 14),
                Qt.AlignmentFlag.AlignHCenter,
                str(k),
            )
        p.drawText(
            QRectF(area.left(), area.bottom() + 14, area.width(), 14),
            Qt.AlignmentFlag.AlignHCenter,
            "round",
        )
        p.end()

    def _draw_legend(self, p: QPainter, box: QRectF) -> None:
        """Coloured marks with their names and the latest values."""
        x = box.left()
        for (name, value), color in zip(self.legend_items(), (_AP, _IOU)):
            p.fillRect(QRectF(x, box.top() + 5, 10, 6), color)
            text = name if value is None else f"{name} {value:.2f}"
            p.setPen(QPen(QColor(200, 200, 200), 1))
            p.drawText(
                QRectF(x + 14, box.top(), 140, box.height()), Qt.AlignmentFlag.AlignLeft, text
            )
            x += 14 + p.fontMetrics().horizontalAdvance(text) + 16

    def legend_items(self) -> list[tuple[str, float | None]]:
        """The curves' names and their latest values (None before the first score)."""
        last_ap = next((a for a in reversed(self.ap) if a is not None), None)
        last_iou = next((a for a in reversed(self.iou) if a is not None), None)
        return [("AP@0.5", last_ap), ("mean IoU", last_iou)]

    def legend(self) -> str:
        """The legend's text, for tests and screen readers."""
        return "   ".join(n if v is None else f"{n} {v:.2f}" for n, v in self.legend_items())


class FittingTable(QTableWidget):
    """A table whose columns always fit its width: no sideways scrolling.

    Columns get the width of their content when all fit; otherwise each gives up
    width in proportion (not below a few characters), its texts are elided and
    shown whole as tooltips. Works for any number of columns.
    """

    def __init__(self, rows: int, columns: int) -> None:
        super().__init__(rows, columns)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setTextElideMode(Qt.TextElideMode.ElideRight)
        header.setMinimumSectionSize(8)

    def fit_columns(self) -> None:
        """Share the viewport's width among the columns (call after the contents change)."""
        n = self.columnCount()
        if n == 0:
            return
        header = self.horizontalHeader()
        wanted = [
            max(self.sizeHintForColumn(c), header.sectionSizeHint(c))
            if self.rowCount()
            else header.sectionSizeHint(c)
            for c in range(n)
        ]
        room = max(self.viewport().width(), n)
        floor = min(self.fontMetrics().horizontalAdvance("000"), room // n)
        widths = list(wanted)
        if sum(wanted) > room:  # each gives up width in proportion to what it has over floor
            extra = [max(w - floor, 0) for w in wanted]
            cut = sum(wanted) - room
            widths = [w - cut * e / max(sum(extra), 1) for w, e in zip(wanted, extra)]
        widths = [int(w) for w in widths]
        widths[-1] += room - sum(widths)  # rounding, or the room left: to the last column
        for c, w in enumerate(widths):
            header.resizeSection(c, max(w, 1))
        for r in range(self.rowCount()):
            for c in range(n):
                item = self.item(r, c)
                if item is not None:  # a cell's own reason stays; else the elided text
                    reason = item.data(Qt.ItemDataRole.UserRole)
                    item.setToolTip(reason or (item.text() if widths[c] < wanted[c] else ""))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self.fit_columns()


class RoundHistoryPanel(QWidget):
    """The rounds of the project, a plot of their scores, and "Use this round's model"."""

    use_round = Signal(int)  # the user asks for round k's model

    def __init__(self) -> None:
        super().__init__()
        self.table = FittingTable(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
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
                if col in (1, 2) and r.ap50 is None:
                    item.setData(Qt.ItemDataRole.UserRole, NO_HUMAN_CELLS)
                    item.setToolTip(NO_HUMAN_CELLS)
                self.table.setItem(row, col, item)
        self.table.fit_columns()
        self.plot.set_rounds(records)
        if records:
            last = records[-1]
            rests = (
                f"on {last.val_cells} held-out human cells"
                if last.val_cells
                else "without validation (no human-painted cell is held out yet)"
            )
            self.note.setText(
                f"{_rounds(len(records))}; the latest is scored {rests}. Held-out cells stay "
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
