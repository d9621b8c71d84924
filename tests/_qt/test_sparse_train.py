"""Issue 29 in the Train dock: a few painted cells, the line and overlay, the guard, honesty."""

import numpy as np

from napari_unet import instance_scores
from napari_unet._qt.layers import find_own_layer, upsert_layer
from napari_unet._qt.round_history_panel import NO_HUMAN_CELLS
from napari_unet._qt.scope_judge import training_area
from napari_unet._qt.session import session_for
from napari_unet._qt.training_scope import COMPLETE_KEY
from napari_unet.training import Trainer, Validation, split_cells
from napari_unet.training.provenance import COPIED_KEY

PAINTED = 7
LINE = (
    "Training on 7 painted cells (background only around them; the rest of the image is "
    "not used). Paint more cells, or mark the image complete, to learn more."
)


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-unet", name)[1]


def _fine_tune(train, qtbot):
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=120000)
    qtbot.waitUntil(lambda: not train._workers.pending, timeout=30000)  # the round is saved


def _ap(truth, layer):
    return instance_scores(truth, np.asarray(layer.data)).ap50


def test_seven_cells_of_the_sample_never_make_the_bundled_model_worse(
    make_napari_viewer, qtbot, paint
):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei")
    image = viewer.layers[0]
    truth = np.asarray(next(ly for ly in viewer.layers if ly.name.endswith("labels")).data)
    viewer.layers[1].visible = False
    # the bundled model's score on the sample, through the Predict dock
    predict = _dock(viewer, "Predict")
    predict._image.value = image
    predict.segment()
    seg_name = f"{image.name} segmentation"
    qtbot.waitUntil(lambda: seg_name in viewer.layers, timeout=60000)
    qtbot.waitUntil(lambda: not predict._runner.running, timeout=60000)
    start = _ap(truth, viewer.layers[seg_name])
    annotate = _dock(viewer, "Annotate")
    annotate._image.value = image
    annotate.new_annotation()
    ann = viewer.layers[f"{image.name} annotation"]
    ids = np.random.default_rng(0).choice(np.unique(truth)[1:], PAINTED, replace=False)
    paint(ann, truth, ids)
    train = _dock(viewer, "Train")
    assert train._annotation.value is ann and train._region.value is None
    qtbot.waitUntil(lambda: train.scope.cells == PAINTED, timeout=10000)
    assert train.scope.line.text() == LINE
    # the faint overlay: exactly the area the loss will look at
    qtbot.waitUntil(
        lambda: find_own_layer(viewer, "training area", image.name) is not None, timeout=30000
    )
    overlay = find_own_layer(viewer, "training area", image.name)
    qtbot.waitUntil(lambda: overlay.data.sum() > 0, timeout=30000)
    sigma = train._defaults.sigma
    np.testing.assert_array_equal(overlay.data, training_area(np.asarray(ann.data), None, sigma))
    assert 0 < overlay.data.mean() < 0.2  # most of the image is not trained on
    train.add_to_set()
    qtbot.waitUntil(lambda: train.training_set.counts() == [PAINTED], timeout=10000)
    assert train.scope.line.text() == LINE
    # a short budget: a few steps on small tiles (the click-through used 45 s)
    train._defaults = train._defaults.replace(tile_size=220)
    train._steps.value, train._time.value = 6, 0
    assert train._start.value == "bundled"
    _fine_tune(train, qtbot)
    assert train.runner.trainer.data.summary[0]["complete"] is False
    qtbot.waitUntil(lambda: not train.predictor.running, timeout=60000)
    assert _ap(truth, viewer.layers[seg_name]) >= start


def test_marking_the_image_complete_is_the_dense_rule(make_napari_viewer, qtbot, cells, paint):
    image, truth = cells
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="nuclei annotation")
    paint(ann, truth, [1, 2, 3])
    train = _dock(viewer, "Train")
    train._image.value, train._annotation.value = layer, ann
    qtbot.waitUntil(lambda: train.scope.cells == 3, timeout=10000)
    train.scope.complete.setChecked(True)
    assert ann.metadata[COMPLETE_KEY] is True
    assert "marked complete" in train.scope.line.text()
    _, _, region, _ = train._snapshot()
    assert region.all()  # every unpainted pixel is background
    train.scope.complete.setChecked(False)
    assert train._snapshot()[2] is None


def _guarded_dock(viewer, cells, paint, fast_config, monkeypatch):
    image, truth = cells
    layer = viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="nuclei annotation")
    paint(ann, truth, range(1, 12))
    train = _dock(viewer, "Train")
    train._image.value, train._annotation.value = layer, ann
    train._defaults = fast_config.replace(validation_fraction=0.4)
    train._refresh.value = False
    train._start.value = "bundled"  # a trained start model (scratch is never "in use")
    train._steps.value, train._time.value = 2, 0
    # the start model scores 0.74 on the held-out cells, the trained one 0.61
    scores = iter([0.74] + [0.61] * 20)
    monkeypatch.setattr(
        Trainer,
        "validate",
        lambda self, cached=None: Validation(
            loss=0.3, mean_iou=0.5, ap50=next(scores), n_true=2, n_pred=2
        ),
    )
    return train


def test_a_worse_round_is_kept_but_not_put_in_use(
    make_napari_viewer, qtbot, cells, paint, fast_config, monkeypatch
):
    viewer = make_napari_viewer()
    train = _guarded_dock(viewer, cells, paint, fast_config, monkeypatch)
    session = session_for(viewer)
    before = session.model
    _fine_tune(train, qtbot)
    history = train._project.project.history
    assert len(history.rounds) == 1 and history.rounds[0].put_in_use is False
    assert history.current is None and session.model is before  # the old model stays
    sentence = (
        "Round 1 scored 0.61 against 0.74 for the model it started from "
        "(AP@0.5 on 2 held-out cells); kept the earlier model in use."
    )
    assert train._status.value == sentence
    assert train.guard.isVisibleTo(train.native) and train.guard.round == 1
    assert train.guard.text.text() == f"{sentence} Use round 1 anyway?"
    row = train.history.rows()[0]
    assert row[0] == "1 (worse)" and row[1] == "0.610" and row[2] == "0.740"
    assert train._start.value == "bundled"  # the next round does not start from it
    train.guard.button.click()  # "Use round 1 anyway"
    qtbot.waitUntil(lambda: session.source == "round 1 of the project", timeout=30000)
    assert train._project.project.history.current == 1  # read again from the project
    assert "(in use)" in train.history.rows()[0][0]
    assert not train.guard.isVisibleTo(train.native)


def test_cells_copied_from_a_prediction_never_validate(
    make_napari_viewer, qtbot, cells, fast_config
):
    image, truth = cells
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    upsert_layer(
        viewer, truth.copy(), kind="labels", role="segmentation", source="nuclei",
        name="nuclei segmentation",
    )  # fmt: skip
    predict = _dock(viewer, "Predict")
    predict._image.value = layer
    predict.copy_to_annotation()
    ann = viewer.layers["nuclei annotation"]
    assert len(ann.metadata[COPIED_KEY]) == len(np.unique(truth)) - 1
    train = _dock(viewer, "Train")
    train._image.value, train._annotation.value = layer, ann
    fraction = 0.4
    train._defaults = fast_config.replace(validation_fraction=fraction, complete=True)
    train._refresh.value = False
    train._start.value = "scratch"
    train._steps.value, train._time.value = 2, 0
    _fine_tune(train, qtbot)
    assert train.runner.trainer.data.validation_cells == 0  # only the model's own cells
    row = train.history.rows()[0]
    assert row[1] == "" and row[4] == "0"
    assert train.history.table.item(0, 1).toolTip() == NO_HUMAN_CELLS
    assert "no human-painted cell" in train.history.note.text()
    # the user touches up a cell the rule holds out: from now on it is human truth
    held = split_cells([np.asarray(ann.data)], ["nuclei:0"], fraction).validation[0]
    cell = int(held[0])
    ys, xs = np.nonzero(np.asarray(ann.data) == cell)
    ann.data_setitem((ys[:1], xs[:1]), 0)
    _fine_tune(train, qtbot)
    assert train.runner.trainer.data.validation_cells == 1
    assert train.history.rows()[1][4] == "1"


def test_copies_and_complete_are_kept_in_the_project(make_napari_viewer, qtbot, tmp_path):
    import tifffile

    from napari_unet._qt.project_session import project_for
    from napari_unet._qt.session import state_for

    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (50, 60), dtype=np.uint8))
    viewer = make_napari_viewer()
    image = viewer.open(str(path))[0]
    labels = viewer.add_labels(np.zeros((50, 60), np.int32), name="cells annotation")
    session = project_for(viewer)
    folder = session.choose_folder(tmp_path / "p").folder
    labels.metadata[COPIED_KEY] = {"1": "12:abc"}
    labels.metadata[COMPLETE_KEY] = True
    labels.data_setitem((np.array([3, 4]), np.array([5, 5])), 1)
    session.track(None, image, labels)
    assert session.flush()
    state_for(viewer).close()
    other = make_napari_viewer()
    reopened = project_for(other)
    with qtbot.waitSignal(reopened.opened, timeout=20000) as opened:
        reopened.open(folder)
    back = opened.args[0][0].labels
    assert back.metadata[COPIED_KEY] == {"1": "12:abc"} and back.metadata[COMPLETE_KEY] is True
