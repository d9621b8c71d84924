"""Docks that hold still: long messages wrap, widths stay, nothing jumps under the mouse."""

from magicgui.widgets import Container, Label
from qtpy.QtWidgets import QApplication

DOCKS = ("Annotate", "Train", "Predict", "Model")
BUTTONS = {
    "Annotate": ["_new", "_new_region"],
    "Train": ["_train", "_stop"],
    "Predict": ["_segment", "_cancel", "_copy"],
    "Model": ["_save", "_load", "_bundled", "_export"],
}


def _places(docks):
    """Where each button sits in its dock's form."""
    from qtpy.QtCore import QPoint

    return {
        (name, attr): getattr(widget, attr).native.mapTo(widget.form.native, QPoint(0, 0)).y()
        for name, (_, widget) in docks.items()
        for attr in BUTTONS[name]
    }


LONG = (
    "Error: The project could not be opened: /home/a-biologist/.local/share/napari-unet/"
    "projects/2026-12-06_nuclei_of_the_second_wave_with_a_very_long_name.napari-unet/"
    "entries/nuclei_stack_channel_1/labels.tif is not readable (permission denied)."
)


def _labels(container):
    """Every magicgui Label in ``container`` and the panels inside it."""
    for widget in container:
        if isinstance(widget, Label):
            yield widget
        elif isinstance(widget, Container):
            yield from _labels(widget)


def _all_docks(viewer):
    window = viewer.window._qt_window
    window.resize(1366, 768)
    docks = {}
    for name in DOCKS:
        frame, widget = viewer.window.add_plugin_dock_widget("napari-unet", name)
        docks[name] = (frame, widget)
    QApplication.processEvents()
    return docks


def test_long_messages_wrap_and_docks_keep_their_width(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    docks = _all_docks(viewer)
    qtbot.wait(50)
    canvas = viewer.window._qt_viewer.canvas.native
    before = {name: frame.width() for name, (frame, _) in docks.items()}
    canvas_before = canvas.width()
    labels = [label for _, widget in docks.values() for label in _labels(widget.form)]
    assert len(labels) >= 10
    places = _places(docks)
    for label in labels:
        label.value = LONG
    QApplication.processEvents()
    qtbot.wait(50)
    assert _places(docks) == places  # no status line above a button changed its height
    for name, (frame, widget) in docks.items():
        assert frame.width() <= before[name] + 1, name
        assert widget.native.minimumSizeHint().width() < 450, name
    assert canvas.width() >= canvas_before - 1
    for label in labels:  # each message is all there, on several lines
        if label.native.isVisible():
            assert label.native.width() <= label.native.parentWidget().width()
            lines = label.native.height() // label.native.fontMetrics().lineSpacing()
            assert lines >= 2 or label.native.maximumHeight() < 10000  # wrapped, or held
            if label.native.maximumHeight() < 10000:  # cut to its place, whole in the tooltip
                assert label.native.toolTip() == LONG


def test_rounds_table_fits_its_width_and_the_plot_says_round(qtbot, tmp_path):
    from napari_unet import UNet
    from napari_unet._qt.round_history_panel import RoundHistoryPanel
    from napari_unet.project import Project

    history = Project.create(tmp_path / "p").history
    panel = RoundHistoryPanel()
    qtbot.addWidget(panel)
    panel.resize(300, 500)
    panel.show()
    for k, ap in enumerate([0.5, 0.7, 0.8], start=1):
        history.add_round(
            UNet(base_channels=2, depth=2), start_model="napari-unet nuclei (fine-tuned)",
            cells=10 * k, steps=200, seconds=31.5, ap50=ap, mean_iou=ap - 0.1, val_cells=12,
            entries=["a"],
        )  # fmt: skip
        panel.show_history(history)
        qtbot.wait(20)
        table = panel.table
        widths = sum(table.columnWidth(c) for c in range(table.columnCount()))
        assert widths <= table.viewport().width()  # no sideways scrolling
        assert table.horizontalScrollBar().maximum() == 0
    assert panel.plot.legend() == "AP@0.5 0.80   mean IoU 0.70"
    assert panel.note.text().startswith("3 rounds;")
    cut = [
        table.item(0, c)
        for c in range(table.columnCount())
        if table.columnWidth(c) < table.sizeHintForColumn(c)
    ]
    assert all(item.toolTip() == item.text() for item in cut)  # elided texts shown whole
