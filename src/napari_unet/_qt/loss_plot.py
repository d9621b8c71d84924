"""A small live plot of the training loss and the validation scores."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

_LOSS = QColor(80, 170, 255)
_VAL_LOSS = QColor(255, 170, 60)
_AP = QColor(120, 220, 120)


class LossPlot(QWidget):
    """Training loss (blue, smoothed), validation loss (orange) and AP@0.5 (green, 0..1).

    The training loss is an exponential moving average over about the last ten
    steps; the legend quotes that smoothed value, the one the curve ends at.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.clear()

    def clear(self) -> None:
        """Forget all points (a new run starts)."""
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.val_ap: list[float] = []
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        """Append a training loss."""
        self.steps.append(step)
        self.losses.append(loss)
        self.update()

    def add_validation(self, step: int, loss: float, ap50: float) -> None:
        """Append a validation loss and AP@0.5."""
        self.val_steps.append(step)
        self.val_losses.append(loss)
        self.val_ap.append(ap50)
        self.update()

    def _smoothed(self) -> list[float]:
        """Exponential moving average of the losses (weight 0.1 on the newest)."""
        out, avg = [], None
        for v in self.losses:
            avg = v if avg is None else 0.9 * avg + 0.1 * v
            out.append(avg)
        return out

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(34, 8, -30, -18)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(area)
        if not self.steps:
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss and validation appear here")
            p.end()
            return
        x0, x1 = self.steps[0] - 1, max(self.steps[-1], self.steps[0])
        values = self._smoothed() + self.val_losses
        top = max(values) * 1.05 or 1.0

        def pt(step: float, value: float, scale: float) -> QPointF:
            fx = (step - x0) / max(x1 - x0, 1)
            return QPointF(
                area.left() + fx * area.width(), area.bottom() - value / scale * area.height()
            )

        self._line(p, self.steps, self._smoothed(), top, pt, _LOSS)
        self._line(p, self.val_steps, self.val_losses, top, pt, _VAL_LOSS)
        self._line(p, self.val_steps, self.val_ap, 1.0, pt, _AP)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.drawText(QRectF(0, area.top() - 6, 32, 14), Qt.AlignmentFlag.AlignRight, f"{top:.2g}")
        p.drawText(QRectF(0, area.bottom() - 8, 32, 14), Qt.AlignmentFlag.AlignRight, "0")
        p.setPen(QPen(_AP, 1))
        p.drawText(
            QRectF(area.right() + 3, area.top() - 6, 28, 14), Qt.AlignmentFlag.AlignLeft, "AP 1"
        )
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), 16),
            Qt.AlignmentFlag.AlignLeft,
            self.legend(),
        )
        p.end()

    def legend(self) -> str:
        """The line under the plot: the numbers the curves end at."""
        if not self.steps:
            return ""
        # the blue curve is smoothed: quote the value it ends at, and say so
        text = f"step {self.steps[-1]}   loss {self._smoothed()[-1]:.3f} (smoothed)"
        if self.val_ap:
            text += f"   val AP50 {self.val_ap[-1]:.2f}"
        return text

    @staticmethod
    def _line(p, xs, ys, scale, pt, color) -> None:
        draw_curve(p, [pt(x, y, scale) for x, y in zip(xs, ys) if math.isfinite(y)], color)


def draw_curve(
    p: QPainter, pts: list[QPointF], color: QColor, *, dot: float = 2.5, dots: bool = False
) -> None:
    """A 2-px polyline through ``pts``; a dot where it has one point (``dots``: at each)."""
    if not pts:
        return
    p.setPen(QPen(color, 2))
    for q in pts if dots or len(pts) == 1 else []:
        p.drawEllipse(q, dot, dot)
    if len(pts) > 1:
        path = QPainterPath(pts[0])
        for q in pts[1:]:
            path.lineTo(q)
        p.drawPath(path)
