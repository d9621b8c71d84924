"""The mouse wheel scrolls a dock; a field takes it only when the user clicked it for that.

A click-through scrolled the Train dock to reach Fine-tune: the time budget, given
focus by Tab after typing the steps, took the wheel once the form scrolled it under
the pointer (120 -> 90 s). Each test failed before the fix.
"""

import pytest
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit

DOCKS = ("Annotate", "Train", "Predict", "Model")
# the docks with a spin box or a choice enabled (the Model dock has none: tested below)
FIELD_DOCKS = ("Annotate", "Train", "Predict")


def _values(dock):
    """Every spin box's value and every choice's index in the dock."""
    form = dock.form.native
    spins = [s.value() for s in form.findChildren(QAbstractSpinBox) if hasattr(s, "value")]
    return spins, [c.currentIndex() for c in form.findChildren(QComboBox)]


def _wheel_at(point: QPoint, view=None, up: bool = False) -> bool:
    """One notch down (or up), sent to whatever widget is under ``point`` (global) now.

    A row or label under the pointer ignores the wheel and Qt hands it on to the
    scroll area (``view``, its viewport); sent from a test, it goes there directly.
    """
    target = QApplication.widgetAt(point)
    if target is None:
        return False
    fields = (QAbstractSpinBox, QComboBox, QLineEdit)
    if view is not None and not isinstance(target, fields):
        target = view
    local = QPointF(target.mapFromGlobal(point))
    event = QWheelEvent(
        local, QPointF(point), QPoint(0, 0), QPoint(0, 120 if up else -120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(target, event)
    QApplication.processEvents()
    return True


def _scroll_down(dock, x: int, notches: int = 60) -> None:
    """The wheel over one point near the top of the dock while the form scrolls under it."""
    view = dock._scroll.viewport()
    point = view.mapToGlobal(QPoint(x, 12))
    for _ in range(notches):
        assert _wheel_at(point, view)


def _shown(make_napari_viewer, qtbot, name):
    """The dock on its own window, shorter than its fields (it scrolls), active."""
    from importlib import import_module

    module = import_module(f"napari_unet._qt.{name.lower()}_widget")
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei")
    dock = getattr(module, f"{name}Widget")(viewer)
    dock.native.resize(420, 600)  # shorter than the Train dock's fields: it scrolls
    # pytest-qt's waits are context managers: called bare, they wait for nothing, and
    # under load the window was not yet active (no field had the focus; CI failed once)
    with qtbot.waitExposed(dock.native):
        dock.native.show()
    with qtbot.waitActive(dock.native):
        dock.native.activateWindow()
    return viewer, dock


def test_tab_focus_does_not_give_the_wheel_to_a_field_scrolled_under_the_pointer(
    make_napari_viewer, qtbot
):
    _, train = _shown(make_napari_viewer, qtbot, "Train")
    steps = train._steps.native
    train._scroll.ensureWidgetVisible(steps)
    steps.setFocus(Qt.FocusReason.MouseFocusReason)  # as a click gives it
    qtbot.waitUntil(steps.hasFocus)
    qtbot.keyClick(steps.lineEdit(), Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(steps.lineEdit(), "20")
    assert steps.hasFocus()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert train._time.native.hasFocus()  # the user's next field, as in the click-through
    before = _values(train)
    bar = train._scroll.verticalScrollBar()
    x = train._time.native.mapTo(train._scroll.viewport(), QPoint(20, 0)).x()
    _scroll_down(train, x)
    assert bar.value() == bar.maximum() > 0  # the dock scrolled to its end
    assert train._time.value == 120 and train._steps.value == 20
    assert _values(train) == before


def _wheel_fields(dock):
    form = dock.form.native
    fields = form.findChildren(QAbstractSpinBox) + form.findChildren(QComboBox)
    return [f for f in fields if f.isVisibleTo(form) and f.isEnabled()]


def test_the_model_dock_has_no_field_for_the_wheel(make_napari_viewer, qtbot):
    """If it gets one, it joins FIELD_DOCKS and the test below."""
    _, dock = _shown(make_napari_viewer, qtbot, "Model")
    assert _wheel_fields(dock) == []


@pytest.mark.parametrize("name", FIELD_DOCKS)
def test_a_clicked_field_loses_the_wheel_once_the_dock_scrolls(make_napari_viewer, qtbot, name):
    _, dock = _shown(make_napari_viewer, qtbot, name)
    view = dock._scroll.viewport()
    fields = _wheel_fields(dock)
    assert fields
    for field in fields:
        dock._scroll.ensureWidgetVisible(field)
        QApplication.processEvents()
        if isinstance(field, QComboBox):  # a click opens its list: the focus a click gives
            field.setFocus(Qt.FocusReason.MouseFocusReason)
        else:
            qtbot.mouseClick(field, Qt.MouseButton.LeftButton, pos=QPoint(4, field.height() // 2))
        QApplication.processEvents()
        assert field.hasFocus()
        before = _values(dock)
        # the dock scrolls (the wheel over a label), then the field comes under the pointer
        assert _wheel_at(view.mapToGlobal(QPoint(2, 2)), view)
        dock._scroll.ensureWidgetVisible(field)
        QApplication.processEvents()
        assert _wheel_at(field.mapToGlobal(field.rect().center()))
        assert _values(dock) == before, type(field).__name__
    # a click on a spin box gives it the wheel again
    spins = [f for f in fields if isinstance(f, QAbstractSpinBox)]
    if spins:
        spin = spins[-1]
        dock._scroll.ensureWidgetVisible(spin)
        qtbot.mouseClick(spin, Qt.MouseButton.LeftButton, pos=QPoint(4, spin.height() // 2))
        value = spin.value()
        centre = QPointF(spin.rect().center())
        up = value <= spin.minimum()  # a notch that can change it
        event = QWheelEvent(
            centre, QPointF(spin.mapToGlobal(QPoint(0, 0))) + centre, QPoint(0, 0),
            QPoint(0, 120 if up else -120), Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
        )  # fmt: skip
        QApplication.sendEvent(spin, event)
        assert spin.value() != value
