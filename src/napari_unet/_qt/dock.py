"""The base of the plugin's docks: labelled fields that scroll when the screen is short."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, Label
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QFrame,
    QLabel,
    QLineEdit,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QWidget,
)

if TYPE_CHECKING:
    from .session import ViewerState


# The slots connected by when_destroyed, until they have run: held here, not only by
# the widget, so the garbage collector never clears one that Qt is about to call
_waiting: set[Callable[..., None]] = set()


def when_destroyed(native: QObject, method: Callable[[], Any]) -> None:
    """Call the bound ``method`` when Qt destroys ``native``, if its owner still lives.

    Held weakly: when the garbage collector frees the owner and its widget together,
    the owner is half torn down by the time ``destroyed`` comes, and calling into it
    then can crash the interpreter; the collector has cleared the weak reference first.
    The slot itself is held by a module-level set until it runs: held only by the
    widget's connection, the collector cleared it with the widget, and Qt then called
    the cleared function as it destroyed the widget (a segfault in a test teardown).
    """
    ref = weakref.WeakMethod(method)

    def call(*_: Any) -> None:
        _waiting.discard(call)
        bound = ref()
        if bound is not None:
            bound()

    _waiting.add(call)
    native.destroyed.connect(call)


class _KeepWide(QObject):
    """Keeps a scroll area as wide as its content's minimum (which grows once styled)."""

    def __init__(self, scroll: QScrollArea, content: QWidget) -> None:
        super().__init__(scroll)
        self._scroll, self._content = scroll, content
        content.installEventFilter(self)
        self._fit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kinds = (QEvent.Type.LayoutRequest, QEvent.Type.Show, QEvent.Type.StyleChange)
        if event.type() in kinds:
            self._fit()
        return False

    def _fit(self) -> None:
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(self._content.minimumSizeHint().width() + bar)


class _WheelScrollsTheDock(QObject):
    """A wheel over a field scrolls the dock unless the user clicked that field for it.

    Without it, scrolling a long dock past a spin box or a choice silently edits
    it (the learning rate, the budget...). A field takes the wheel only when it
    has focus from a click, and only until the dock scrolls again: a field that
    got focus from Tab, or was clicked before the form scrolled it under the
    pointer, leaves the wheel to the dock (a click-through changed the time
    budget that way, 120 -> 90 s).
    """

    def __init__(self, parent: QWidget, scroll: QScrollArea) -> None:
        super().__init__(parent)
        self._bar = scroll.verticalScrollBar()
        self._armed: QWidget | None = None  # the field clicked since the dock last scrolled
        self._fields: dict[QObject, QWidget] = {}  # field or its line edit -> the field
        for kind in (QAbstractSpinBox, QComboBox, QAbstractSlider):
            for field in parent.findChildren(kind):
                field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
                for part in (field, *field.findChildren(QLineEdit)):
                    self._fields[part] = field
                    part.installEventFilter(self)
        scroll.viewport().installEventFilter(self)  # wheels over labels scroll it directly

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kind = event.type()
        field = self._fields.get(obj)
        if field is None:  # the viewport: the dock scrolls, no field keeps the wheel
            if kind == QEvent.Type.Wheel:
                self._armed = None
            return False
        if kind == QEvent.Type.MouseButtonPress or (
            kind == QEvent.Type.FocusIn and event.reason() == Qt.FocusReason.MouseFocusReason
        ):
            self._armed = field
        elif kind == QEvent.Type.Wheel and obj is field:
            if field is self._armed and field.hasFocus():
                return False
            self._armed = None
            QApplication.sendEvent(self._bar, event)
            return True
        return False


class _WatchRemoval(QObject):
    """Calls ``on_removed`` when napari takes the dock out of its window.

    napari's close button (``remove_dock_widget``) unparents the dock's widget
    and deletes only the frame around it, so the widget's ``destroyed`` never comes.
    Once docked, the dock joins the plugin's other docks as a tab (:func:`tabify`).
    """

    def __init__(self, widget: QWidget, on_removed: Callable[[], None]) -> None:
        super().__init__(widget)
        self._on_removed = on_removed
        self._docked = False
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.ParentChange:
            if obj.parent() is not None:
                if not self._docked:  # after napari has placed the frame in its window
                    QTimer.singleShot(0, lambda: _tabify_if_alive(obj))
                self._docked = True
            elif self._docked:
                self._on_removed()
        return False


def _tabify_if_alive(content: QWidget) -> None:
    try:
        tabify(content)
    except RuntimeError:  # closed before the event loop came round: nothing to place
        pass


_OURS = "napari_unet_dock"  # a property on the plugin's dock contents


def tabify(content: QWidget) -> None:
    """Put the dock holding ``content`` in a tab beside the plugin's other open docks.

    With four docks stacked in one column each got 120-200 px at 1366x768; as tabs
    each has the whole height. The new tab is brought to the front.
    """
    frame = content.parentWidget()
    while frame is not None and not isinstance(frame, QDockWidget):
        frame = frame.parentWidget()
    window = frame.parentWidget() if frame is not None else None
    if not isinstance(window, QMainWindow) or frame.isFloating():
        return
    area = window.dockWidgetArea(frame)
    for other in window.findChildren(QDockWidget):
        if (
            other is not frame
            and other.isVisible()
            and not other.isFloating()
            and window.dockWidgetArea(other) == area
            and other.widget() is not None
            and _is_ours(other.widget())
        ):
            window.tabifyDockWidget(other, frame)
            break
    frame.show()
    frame.raise_()


def _is_ours(widget: QWidget) -> bool:
    return bool(widget.property(_OURS)) or any(
        bool(child.property(_OURS)) for child in widget.findChildren(QWidget)
    )


class _OnRestyle(QObject):
    """Calls ``then`` when the widget's style or font changes."""

    def __init__(self, widget: QWidget, then: Callable[[], None]) -> None:
        super().__init__(widget)
        self._then = then
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.FontChange, QEvent.Type.Resize):
            self._then()
        return False


class StatusLine(Label):
    """A text that changes (a status, the model in use) in a place of fixed height.

    It wraps over at most ``lines`` lines and never grows or shrinks, so nothing
    below it moves under the mouse while the user works; a longer text is cut
    there and shown whole as the tooltip.
    """

    def __init__(self, lines: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lines = lines
        self.native.setWordWrap(True)
        self.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self._fix_height()
        self._restyled = _OnRestyle(self.native, self._refit)  # napari's font comes later

    def _refit(self) -> None:
        self._fix_height()
        self._align()

    def _fix_height(self) -> None:
        metrics = self.native.fontMetrics()
        margins = self.native.contentsMargins()
        self.native.setFixedHeight(
            metrics.lineSpacing() * self._lines + margins.top() + margins.bottom() + 8
        )

    @property
    def value(self) -> str:
        """The text shown."""
        return Label.value.fget(self)

    @value.setter
    def value(self, text: Any) -> None:
        Label.value.fset(self, text)
        self.native.setToolTip(str(text))
        self._align()

    def _align(self) -> None:
        """Centred beside its row's name; from the top when cut (the first lines show)."""
        label = self.native
        cut = label.width() > 0 and label.heightForWidth(label.width()) > label.height()
        vertical = Qt.AlignmentFlag.AlignTop if cut else Qt.AlignmentFlag.AlignVCenter
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | vertical)


def _texts(container: Container) -> list[QLabel]:
    """The Qt labels of every magicgui Label in ``container`` and the panels inside it."""
    found = []
    for widget in container:
        if isinstance(widget, Label):
            found.append(widget.native)
        elif isinstance(widget, Container):
            found.extend(_texts(widget))
    return found


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
        self.native.setProperty(_OURS, True)  # its frame joins the others' tabs
        self.margins = (0, 0, 0, 0)

    def finish(self, state: ViewerState) -> None:
        """Once the fields are in: size the dock to them, and close with the viewer.

        The scroll area is as wide as the fields need (nothing is cut off at the
        right); :meth:`_shutdown` runs once, when this dock or the viewer closes.
        """
        for label in _texts(self.form):  # texts that change (status, model in use) wrap, and
            label.setWordWrap(True)  # never widen the dock (a long path once made it 630 px)
            label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            label.setSizePolicy(policy)
        self.form.native.layout().addStretch(1)  # fields stay together at the top
        for combo in self.form.native.findChildren(QComboBox):  # long layer names elide
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)
        self._width_keeper = _KeepWide(self._scroll, self.form.native)
        self._wheel_guard = _WheelScrollsTheDock(self.form.native, self._scroll)
        self._closed = False
        self._cancel_close_hook = state.on_close(self._close_once, first=self._ask_to_stop)
        when_destroyed(self.native, self._close_once)
        self._removal = _WatchRemoval(self.native, self._close_once)

    def place(self, native: QWidget, *, after: Any = None) -> None:
        """Put a plain Qt widget in the form: first, or right after the row of ``after``.

        (magicgui places its own widgets by its own count, so Qt widgets added with
        ``addWidget`` drift; call this once all fields are in.)
        """
        layout = self.form.native.layout()
        layout.removeWidget(native)
        index = 0
        if after is not None:
            for i in range(layout.count()):
                row = layout.itemAt(i).widget()
                if row is not None and (row is after.native or row.isAncestorOf(after.native)):
                    index = i + 1
                    break
        layout.insertWidget(index, native)

    def _close_once(self) -> None:
        # a collected dock's attributes may already be cleared when Qt destroys its widget
        if not self.__dict__.get("_closed", True):
            self._closed = True
            self._cancel_close_hook()
            self._shutdown()

    def _ask_to_stop(self) -> None:
        """The viewer closes: ask long work to stop, without waiting (subclasses)."""

    def _shutdown(self) -> None:
        """Stop listening and wait for the dock's workers (subclasses add theirs)."""

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.form.reset_choices()
