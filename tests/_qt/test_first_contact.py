"""What a new user meets in the first ten minutes (issue: first contact).

Each test here failed before the fix it names.
"""

import numpy as np
from magicgui.widgets.bases import ButtonWidget

from napari_unet._qt.layers import OWNER_KEY
from napari_unet._qt.loss_plot import LossPlot
from napari_unet._qt.session import state_for

DOCKS = ("Annotate", "Train", "Predict", "Model")


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-unet", name)[1]


def _annotating(make_napari_viewer, cells):
    """A viewer with the cells image, the Annotate dock and a new, empty annotation."""
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    annotate = _dock(viewer, "Annotate")
    annotate.new_annotation()
    return viewer, annotate, viewer.layers["nuclei annotation"], truth


def _sample(viewer):
    """The sample as `make run` opens it: image, and its true labels hidden."""
    viewer.open_sample("napari-unet", "nuclei")
    truth = next(layer for layer in viewer.layers if layer.name.endswith("labels"))
    truth.visible = False
    return viewer.layers[0], truth


def test_train_dock_trains_on_the_annotation_painted_not_the_hidden_truth(
    make_napari_viewer, qtbot, paint
):
    viewer = make_napari_viewer()
    image, truth = _sample(viewer)
    annotate = _dock(viewer, "Annotate")
    annotate._image.value = image
    annotate.new_annotation()
    ann = viewer.layers[f"{image.name} annotation"]
    paint(ann, np.asarray(truth.data), list(range(1, 11)))
    annotate.new_region()
    region = viewer.layers[f"{image.name} annotated region"]
    region.add_rectangles(np.array([[0, 0], [100, 120]]))
    train = _dock(viewer, "Train")
    assert train._annotation.value is ann
    assert train._image.value is image
    assert train._region.value is region
    # a Train dock already open follows a new annotation made later
    annotate.new_annotation()
    assert train._annotation.value is viewer.layers[-1]


def test_train_dock_alone_takes_the_selected_labels_layer(make_napari_viewer, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    other = viewer.add_labels(truth, name="old")
    mine = viewer.add_labels(np.zeros_like(truth), name="mine")
    viewer.layers.selection.active = mine
    train = _dock(viewer, "Train")
    assert train._annotation.value is mine and train._annotation.value is not other


def test_derived_layers_are_not_offered_unless_asked(make_napari_viewer, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    viewer.add_labels(truth, name="mine")
    for role, kind in (
        ("segmentation", "labels"),
        ("probability", "image"),
        ("weight map", "image"),
    ):
        add = getattr(viewer, f"add_{kind}")
        add(
            np.zeros(image.shape, np.int32 if kind == "labels" else np.float32),
            name=f"nuclei {role}",
            metadata={OWNER_KEY: {"role": role, "source": "nuclei"}},
        )
    train = _dock(viewer, "Train")
    names = lambda combo: [c.name for c in combo.choices if c is not None]  # noqa: E731
    assert names(train._image) + names(train._annotation) == ["nuclei", "mine"]
    train._offer_derived.value = True
    assert "nuclei segmentation" in names(train._annotation)
    assert "nuclei probability" in names(train._image)
    annotate, predict = _dock(viewer, "Annotate"), _dock(viewer, "Predict")
    assert names(annotate._image) == names(predict._image) == ["nuclei"]


def test_every_field_has_its_label_however_the_dock_is_opened(make_napari_viewer):
    for first in DOCKS:
        viewer = make_napari_viewer()  # a plain napari: no layers at all
        widget = _dock(viewer, first)
        unlabelled = [
            w.label
            for w in widget.form
            if not isinstance(w, ButtonWidget) and w.label and w._labeled_widget() is None
        ]
        assert unlabelled == [], f"{first} opened first shows bare fields: {unlabelled}"


def test_weight_map_keeps_the_annotation_active_and_hides_a_flat_map(
    make_napari_viewer, qtbot, cells, paint
):
    viewer, w, ann, truth = _annotating(make_napari_viewer, cells)
    w._show_weights.value = True
    qtbot.waitUntil(lambda: not w.overlay.busy, timeout=20000)
    assert "nuclei annotation weight map" not in viewer.layers  # empty: a flat field
    paint(ann, truth, [1, 2])
    qtbot.waitUntil(lambda: "nuclei annotation weight map" in viewer.layers, timeout=20000)
    qtbot.waitUntil(lambda: not w.overlay.busy, timeout=20000)
    wm = viewer.layers["nuclei annotation weight map"]
    assert viewer.layers.selection.active is ann and ann.mode == "paint"
    assert wm.contrast_limits[0] == float(wm.data.min())  # the commonest weight is invisible
    # New annotation while the map is on: the new one is active, in paint mode, no map yet
    w.new_annotation()
    new = viewer.layers.selection.active
    assert new is not ann and new.mode == "paint"
    qtbot.waitUntil(lambda: not w.overlay.busy, timeout=20000)
    assert viewer.layers.selection.active is new
    assert f"{new.name} weight map" not in viewer.layers
    assert "nuclei annotation weight map" not in viewer.layers  # the old map went with it


def test_counter_follows_undo_and_the_copied_annotation(
    make_napari_viewer, qtbot, cells, paint, tiny_model
):
    viewer, annotate, ann, truth = _annotating(make_napari_viewer, cells)
    paint(ann, truth, [1, 2, 3])
    qtbot.waitUntil(lambda: annotate._count.value == "3", timeout=5000)
    ann.undo()
    qtbot.waitUntil(lambda: annotate._count.value == "2", timeout=5000)
    ann.redo()
    qtbot.waitUntil(lambda: annotate._count.value == "3", timeout=5000)
    # Copy segmentation to annotation: the Annotate dock now counts the copy
    predict = _dock(viewer, "Predict")
    state_for(viewer).model.set_model(tiny_model, "tiny")
    seg = np.zeros(ann.data.shape, np.int32)
    seg[5:15, 5:15], seg[30:40, 30:40] = 1, 2
    viewer.add_labels(
        seg,
        name="nuclei segmentation",
        metadata={OWNER_KEY: {"role": "segmentation", "source": "nuclei"}},
    )
    predict._image.value = viewer.layers["nuclei"]
    predict.copy_to_annotation()
    copy = viewer.layers.selection.active
    assert copy is not ann and annotate._annotation.value is copy
    qtbot.waitUntil(lambda: annotate._count.value == "2", timeout=5000)
    copy.paint((60, 100), copy.selected_label)
    qtbot.waitUntil(lambda: annotate._count.value == "3", timeout=5000)


def test_counting_a_stroke_does_not_scan_the_image(make_napari_viewer, qtbot, monkeypatch):
    import napari_unet._qt.cell_counter as cc

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((512, 512), np.uint8), name="big")
    annotate = _dock(viewer, "Annotate")
    annotate.new_annotation()
    ann = viewer.layers["big annotation"]
    qtbot.waitUntil(lambda: not annotate.counter.busy, timeout=5000)
    scans = []
    monkeypatch.setattr(cc, "pixel_counts", lambda a: scans.append(a) or {})
    for i in range(5):
        ann.paint((50 * i + 20, 50), ann.selected_label)
    qtbot.wait(100)
    assert annotate._count.value == "5" and ann.selected_label == 6
    assert scans == []  # strokes are counted from the stroke itself


def test_an_object_diameter_the_model_cannot_reach_is_refused(
    make_napari_viewer, qtbot, tiny_model
):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="img")
    predict = _dock(viewer, "Predict")
    tiny_model.metadata["object_diameter"] = {"min": 8.0, "max": 40.0}
    state_for(viewer).model.set_model(tiny_model, "tiny")
    predict._diameter.value = 1.0
    predict.segment()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=30000)
    assert "img segmentation" not in viewer.layers
    assert "8-40 px this model knows" in predict._status.value
    # a resize it can make is announced with its cost before the run
    planned = []
    predict._runner.planned.connect(planned.append)
    predict._diameter.value = 4.0
    predict.segment()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60000)
    # 4 px objects are enlarged to 1.5x the smallest diameter the model knows (12 px)
    assert len(planned) == 1 and "x3 " in planned[0] and "9x the work" in planned[0]
    assert "img segmentation" in viewer.layers


def test_loss_legend_quotes_the_curve(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    for step, loss in enumerate([1.2, 1.1, 1.15, 1.05, 0.47], start=1):
        plot.add_loss(step, loss)
    assert "loss 0.471" not in plot.legend()
    assert f"loss {plot._smoothed()[-1]:.3f} (smoothed)" in plot.legend()


def test_model_load_error_stays_in_the_dock(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    model = _dock(viewer, "Model")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    model._load_path.value = bad
    model.load()
    qtbot.waitUntil(lambda: not model.busy, timeout=30000)
    assert model._status.value.startswith("Error: broken.safetensors could not be loaded")


PRIMARY = {
    "Annotate": ["_new"],
    "Train": ["_train"],
    "Predict": ["_segment"],
    "Model": ["_load", "_export"],
}


def test_docks_fit_a_laptop_screen(make_napari_viewer, qtbot):
    """All four docks open at 1366x768: the window fits, and as tabs of one dock area
    every primary button shows without scrolling."""
    from qtpy.QtCore import QPoint

    from napari_unet._qt.demo import fit_to_screen

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    screen = window.screen().geometry()
    assert (screen.width(), screen.height()) == (1366, 768)  # pytest-xvfb, pyproject.toml
    fit_to_screen(window)
    docks = {name: viewer.window.add_plugin_dock_widget("napari-unet", name) for name in DOCKS}
    qtbot.wait(200)
    assert window.frameGeometry().width() <= 1366 and window.frameGeometry().height() <= 768
    frames = [frame for frame, _ in docks.values()]
    assert all(window.tabifiedDockWidgets(f) for f in frames)  # one dock area, four tabs
    for name, (frame, widget) in docks.items():
        frame.raise_()
        qtbot.wait(50)
        assert frame.width() >= 250, name
        viewport = widget._scroll.viewport()
        for attr in PRIMARY[name]:
            button = getattr(widget, attr).native
            assert button.isVisible(), (name, attr)
            top = button.mapTo(viewport, QPoint(0, 0)).y()
            assert 0 <= top and top + button.height() <= viewport.height(), (name, attr, top)
        assert widget._scroll.verticalScrollBar().value() == 0


def test_one_name_everywhere(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    get_app_model().commands.execute_command("napari-unet.make_train_widget").result()
    viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    titles = sorted(viewer.window._wrapped_dock_widgets)
    assert titles == ["Predict (napari-unet)", "Train (napari-unet)"]


def test_model_dock_offers_the_model_kept_when_napari_closed(
    make_napari_viewer, tmp_path, monkeypatch, tiny_model
):
    from napari_unet import save_model

    monkeypatch.setenv("NAPARI_UNET_DATA_DIR", str(tmp_path))
    (tmp_path / "interrupted").mkdir()
    kept = save_model(tiny_model, tmp_path / "interrupted" / "x-5steps.safetensors")
    model = _dock(make_napari_viewer(), "Model")
    assert str(model._load_path.value) == str(kept)
    assert str(kept) in model._status.value


def test_closing_a_dock_alone_stops_its_work(make_napari_viewer, qtbot, cells, fast_config):
    """napari's close button unparents the dock (never deletes it): its work stops anyway."""
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    viewer.add_labels(truth, name="mine")
    state = state_for(viewer)
    dock, train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
    train._defaults = fast_config
    train._start.value = "scratch"
    train._steps.value = 100000
    train.fine_tune()
    qtbot.waitUntil(lambda: train.runner.trainer is not None, timeout=30000)
    viewer.window.remove_dock_widget(dock)
    assert not train.runner.running  # stopped after its step, and waited for
    assert train.runner.trainer.step < 100000
    # nothing of the dock is left behind for the viewer's close (the viewer's project stays)
    owners = {type(getattr(h, "__self__", h)).__name__ for h in state._hooks}
    assert owners == {"ProjectSession"}


def test_counter_sees_an_undo_made_while_the_layer_was_hidden(
    make_napari_viewer, qtbot, cells, paint
):
    viewer, annotate, ann, truth = _annotating(make_napari_viewer, cells)
    paint(ann, truth, [1, 2, 3])
    qtbot.waitUntil(lambda: annotate._count.value == "3", timeout=5000)
    ann.visible = False
    ann.undo()  # no refresh while hidden: no event says the pixels changed
    ann.paint((60, 100), 9)
    ann.visible = True
    truth_count = len(np.unique(ann.data)) - 1
    qtbot.waitUntil(lambda: annotate._count.value == str(truth_count), timeout=5000)


def test_train_keeps_its_own_choice_when_only_the_region_changes(make_napari_viewer, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    annotate, train = _dock(viewer, "Annotate"), _dock(viewer, "Train")
    annotate.new_annotation()
    mine = viewer.add_labels(truth, name="chosen in Train")
    train._annotation.value = mine  # the user's explicit choice in the Train dock
    annotate.new_region()
    assert train._annotation.value is mine
    assert train._region.value is viewer.layers["nuclei annotated region"]
    annotate._region.value = None  # "none" in Annotate: Train trains on everything again
    assert train._region.value is None


def test_next_id_never_reuses_a_cell_of_an_existing_annotation(make_napari_viewer, qtbot, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    old = viewer.add_labels(truth.copy(), name="yesterday's")
    old.selected_label, old.mode = 1, "paint"
    annotate = _dock(viewer, "Annotate")
    annotate._annotation.value = old
    qtbot.waitUntil(lambda: not annotate.counter.busy, timeout=5000)
    assert old.selected_label == int(truth.max()) + 1


def test_the_wheel_scrolls_the_dock_not_the_field_under_it(make_napari_viewer, qtbot):
    from qtpy.QtCore import QPoint, QPointF, Qt
    from qtpy.QtGui import QWheelEvent
    from qtpy.QtWidgets import QApplication, QDoubleSpinBox

    from napari_unet._qt.train_widget import TrainWidget

    viewer = make_napari_viewer()
    dock = TrainWidget(viewer)
    dock.native.resize(420, 300)  # shorter than its fields: the dock scrolls
    with qtbot.waitExposed(dock.native):
        dock.native.show()
    spin = dock.form.native.findChildren(QDoubleSpinBox)[0]
    before = spin.value()
    bar = dock._scroll.verticalScrollBar()
    assert bar.maximum() > 0

    def wheel():
        centre = QPointF(spin.rect().center())
        event = QWheelEvent(
            centre, QPointF(spin.mapToGlobal(QPoint(0, 0))) + centre, QPoint(0, 0),
            QPoint(0, -120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase, False,
        )  # fmt: skip
        QApplication.sendEvent(spin, event)

    wheel()
    assert spin.value() == before  # the value the user set is left alone
    assert bar.value() > 0  # and the dock scrolled instead
    with qtbot.waitActive(dock.native):
        dock.native.activateWindow()
    qtbot.mouseClick(spin, Qt.MouseButton.LeftButton, pos=QPoint(4, spin.height() // 2))
    qtbot.waitUntil(spin.hasFocus)
    wheel()
    assert spin.value() != before  # a field the user clicked takes the wheel
