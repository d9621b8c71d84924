"""The Train dock's training set, its rounds, and going back to an earlier round."""

import re

import numpy as np
import torch

from napari_unet._qt import train_rounds, train_widget, training_set_panel
from napari_unet._qt.session import session_for
from napari_unet.synthetic import make_cells


def _train_dock(viewer):
    return viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]


def _annotated(viewer, name, shape, seed, ids, paint):
    image, truth = make_cells(shape, diameter=(10, 18), seed=seed)
    layer = viewer.add_image(image, name=name)
    ann = viewer.add_labels(np.zeros_like(truth), name=f"{name} annotation")
    paint(ann, truth, ids)
    return layer, ann, truth


def _fine_tune(train, qtbot):
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=90000)
    qtbot.waitUntil(lambda: not train._workers.pending, timeout=30000)  # the round is saved


def test_a_set_of_two_images_trains_in_rounds_and_goes_back(
    make_napari_viewer, qtbot, paint, fast_config, tmp_path
):
    viewer = make_napari_viewer()
    a, ann_a, truth_a = _annotated(viewer, "a", (96, 128), 3, range(1, 9), paint)
    b, ann_b, truth_b = _annotated(viewer, "b", (120, 100), 4, range(1, 7), paint)
    train = _train_dock(viewer)
    # nothing held out: the guard has nothing to compare, so every round is put in use
    # (the guard has its own tests in test_sparse_train.py)
    train._defaults = fast_config.replace(validation_fraction=0.0)
    train._refresh.value = False
    train._start.value = "scratch"
    train._steps.value = 4
    train._time.value = 0
    for image, ann in ((a, ann_a), (b, ann_b)):
        train._image.value, train._annotation.value = image, ann
        train.add_to_set()
    panel = train.training_set
    qtbot.waitUntil(lambda: panel.counts() == [8, 6], timeout=10000)
    assert panel.table.rowCount() == 2 and panel.table.item(1, 1).text() == "6"
    assert "2 images, 14 annotated cells" in panel.summary.text()
    _fine_tune(train, qtbot)
    data = train.runner.trainer.data
    assert [s["shape"] for s in data.summary] == [[96, 128], [120, 100]]
    assert data.summary[0]["cells"] + data.summary[1]["cells"] == 14
    project = train._project.project
    assert project is not None and project.history.rounds[0].cells == 14
    assert train.history.table.rowCount() == 1
    assert train._start.value == "current"  # the next round starts from this one
    round1 = [t.clone() for t in session_for(viewer).model.state_dict().values()]
    # round 2: more cells in b
    for cell in (7, 8, 9):  # new cells with new ids
        ann_b.data_setitem(tuple(np.argwhere(truth_b == cell).T), cell)
    qtbot.waitUntil(lambda: panel.counts() == [8, 9], timeout=10000)
    _fine_tune(train, qtbot)
    rows = train.history.rows()
    assert len(rows) == 2 and rows[1][5] == "17 (+3)" and "(in use)" in rows[1][0]
    assert rows[1][8] == "round 1"  # it started from round 1's model
    # the round's calibrated rule, in plain words
    assert rows[1][9].startswith("objects: ")
    assert re.search(r"(calibrated on|kept after a check on) \d+ of your", rows[1][9])
    now = list(session_for(viewer).model.state_dict().values())
    assert any(not torch.equal(x, y) for x, y in zip(round1, now))
    # one click makes round 1's model the one in use again
    train.history.table.selectRow(0)
    train.history.use_button.click()
    qtbot.waitUntil(lambda: session_for(viewer).source == "round 1 of the project", timeout=30000)
    back = list(session_for(viewer).model.state_dict().values())
    assert all(torch.equal(x, y) for x, y in zip(round1, back))
    assert "(in use)" in train.history.rows()[0][0] and project.history.current == 1
    # removing a layer removes its entry; the other stays
    viewer.layers.remove(ann_a)
    assert [e.name for e in panel.entries] == ["b"]


def test_stacks_say_how_many_planes_are_annotated(make_napari_viewer, qtbot, paint):
    viewer = make_napari_viewer()
    pairs = [make_cells((64, 64), diameter=(10, 16), seed=s) for s in range(6)]
    stack = np.stack([p[0] for p in pairs])
    truth = np.stack([p[1] for p in pairs])
    image = viewer.add_image(stack, name="stack")
    ann = viewer.add_labels(np.zeros_like(truth), name="stack annotation")
    for z in (1, 4):
        coords = np.argwhere(truth[z] == 1)
        ann.data_setitem((np.full(len(coords), z), *coords.T), 1)
    train = _train_dock(viewer)
    train._image.value, train._annotation.value = image, ann
    train.add_to_set()
    panel = train.training_set
    qtbot.waitUntil(lambda: "'stack': 2 of 6 planes annotated" in panel.summary.text())
    assert panel.table.item(0, 2).text() == "2/6"
    # painting a third plane: counted again off the GUI thread, shortly after
    coords = np.argwhere(truth[2] == 1)
    ann.data_setitem((np.full(len(coords), 2), *coords.T), 2)
    qtbot.waitUntil(lambda: panel.table.item(0, 2).text() == "3/6", timeout=5000)


def test_bad_entries_are_refused_in_one_sentence(make_napari_viewer, paint, monkeypatch):
    errors = []
    monkeypatch.setattr(train_widget, "show_error", errors.append)
    monkeypatch.setattr(training_set_panel, "show_error", errors.append)
    viewer = make_napari_viewer()
    grey, ann, _ = _annotated(viewer, "grey", (64, 64), 1, [1], paint)
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="colour", rgb=True)
    rgb_ann = viewer.add_labels(np.zeros((64, 64), np.int32), name="colour annotation")
    train = _train_dock(viewer)
    train._image.value, train._annotation.value = grey, ann
    train.add_to_set()
    train.add_to_set()
    assert errors[-1] == "The annotation 'grey annotation' is already in the training set."
    train._image.value, train._annotation.value = rgb, rgb_ann
    train.add_to_set()
    assert errors[-1].startswith("'colour' has 3 channel(s) but 'grey' has 1")
    assert len(train.training_set.entries) == 1
    train.training_set.table.clearSelection()
    train.training_set.remove_selected()
    assert errors[-1] == "Select an entry of the training set to remove."


def test_removing_a_region_layer_takes_its_entry_out(make_napari_viewer, qtbot, paint, monkeypatch):
    warnings = []
    monkeypatch.setattr(training_set_panel, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    image, ann, _ = _annotated(viewer, "a", (64, 64), 1, [1, 2], paint)
    region = viewer.add_shapes([np.array([[0, 0], [0, 40], [40, 40], [40, 0]])], name="r")
    train = _train_dock(viewer)
    train._image.value, train._annotation.value, train._region.value = image, ann, region
    train.add_to_set()
    assert train.training_set.entries[0].region is region
    viewer.layers.remove(region)
    assert train.training_set.entries == []
    qtbot.waitUntil(lambda: bool(warnings), timeout=2000)
    assert "left the training set" in warnings[-1]
    # napari removing every layer (closing) is not a mistake to warn about
    train._region.value = None
    train.add_to_set()
    region2 = viewer.add_shapes([np.array([[0, 0], [0, 40], [40, 40], [40, 0]])], name="r2")
    train.training_set.entries[0].region = region2
    viewer.layers.clear()
    qtbot.wait(50)
    assert len(warnings) == 1


def test_the_dock_reads_top_down(make_napari_viewer):
    """Project, what to train on, the budget and Fine-tune (all without scrolling at
    1366x768); then the training set, the augmentation; plots last."""
    viewer = make_napari_viewer()
    train = _train_dock(viewer)
    layout = train.form.native.layout()

    def row(widget):
        for i in range(layout.count()):
            w = layout.itemAt(i).widget()
            if w is not None and (w is widget or w.isAncestorOf(widget)):
                return i
        raise AssertionError("not in the form")

    order = [
        train.project_panel.native,
        train._image.native,
        train._start.native,
        train._train.native,
        train.training_set,
        train._elastic.native,
        train._offer_derived.native,
        train.plot,
        train.history,
        train.correction.native,
    ]
    rows = [row(w) for w in order]
    assert rows == sorted(rows) and rows[0] == 0
    # the set sits right under the Fine-tune block (which fits the screen above it)
    assert rows[4] == row(train._refresh.native) + 1


def test_a_damaged_history_is_one_sentence(make_napari_viewer, tmp_path, monkeypatch):
    from napari_unet._qt.project_session import project_for

    errors = []
    monkeypatch.setattr(train_rounds, "show_error", errors.append)
    viewer = make_napari_viewer()
    train = _train_dock(viewer)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "history.json").write_text("{not json")
    project_for(viewer).choose_folder(tmp_path / "proj")
    assert errors and "damaged" in errors[-1]
    assert train.history.table.rowCount() == 0
