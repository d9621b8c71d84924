"""Train dock's live mode (issue 28): strokes join, previews show in view, a round at the end."""

import time

import numpy as np

from napari_unet._qt.live_panel import atom_boxes, camera_of, visible_box
from napari_unet._qt.session import session_for


def _train_dock(viewer, fast_config):
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._defaults = fast_config
    train._start.value = "scratch"
    train._refresh.value = False
    train.live.preview_every = 0.5
    return train


def _setup(make_napari_viewer, cells, paint, fast_config, n=4):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="mine")
    paint(ann, truth, list(range(1, n + 1)))
    train = _train_dock(viewer, fast_config)
    train._annotation.value = ann
    return viewer, ann, train


def _steps(train):
    live = train.live.live
    return 0 if live is None else live.trainer.step


def test_live_learns_while_painting_and_records_a_round(
    make_napari_viewer, qtbot, cells, paint, fast_config
):
    viewer, ann, train = _setup(make_napari_viewer, cells, paint, fast_config)
    _, truth = cells
    train.live.toggle.value = True
    assert train.live.running and not train._train.enabled
    qtbot.waitUntil(lambda: _steps(train) >= 2, timeout=60000)
    trainer = train.live.live.trainer
    # a stroke: only its box is sent; the cell joins without a restart
    coords = np.argwhere(truth == 5)
    ann.data_setitem(tuple(coords.T), 5)
    qtbot.waitUntil(lambda: train.live.live.live.cells == 5, timeout=30000)
    assert train.live.live.trainer is trainer
    np.testing.assert_array_equal(train.live.live.live.labels(0), ann.data)
    # undo: the same box again, read after napari restored it
    ann.undo()
    qtbot.waitUntil(lambda: train.live.live.live.cells == 4, timeout=30000)
    np.testing.assert_array_equal(train.live.live.live.labels(0), ann.data)
    # the field in view is previewed into the segmentation, without any action
    qtbot.waitUntil(lambda: "nuclei segmentation" in viewer.layers, timeout=30000)
    seg = viewer.layers["nuclei segmentation"]
    qtbot.waitUntil(lambda: seg.data.any(), timeout=30000)
    before = np.array(ann.data)
    train.live.toggle.value = False
    qtbot.waitUntil(lambda: not train.live.running, timeout=60000)
    session = session_for(viewer)
    assert session.model is not None and "steps" in session.source
    assert session.model.metadata["training"]["steps"] == train.live.last.step
    assert train._train.enabled and "Live training stopped" in train._status.value
    np.testing.assert_array_equal(ann.data, before)  # the annotation is never touched


def test_live_refuses_bad_situations_in_one_sentence(
    make_napari_viewer, qtbot, cells, paint, fast_config, tmp_path, monkeypatch
):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="mine")
    train = _train_dock(viewer, fast_config)
    shown = []
    import napari_unet._qt.live_panel as panel
    import napari_unet._qt.train_live as train_live

    monkeypatch.setattr(panel, "show_error", shown.append)
    monkeypatch.setattr(train_live, "show_error", shown.append)
    train._annotation.value = ann
    # no annotation yet
    train.live.toggle.value = True
    assert not train.live.running and not train.live.toggle.value
    assert shown[-1] == "Paint at least one cell before switching live training on."
    # a model napari-unet cannot train: a bioimage.io package without its weights
    paint(ann, truth, [1, 2, 3])
    package = tmp_path / "foreign.zip"
    import zipfile

    with zipfile.ZipFile(package, "w") as z:
        z.writestr("rdf.yaml", "format_version: 0.5.3\nname: x\n")
    train._start.value = "file"
    train._start_path.value = package
    train.live.toggle.value = True
    qtbot.waitUntil(lambda: not train.live.running, timeout=30000)
    assert "not a bioimage.io model package" in shown[-1] and shown[-1].count(". ") <= 1
    assert not train.live.toggle.value and session_for(viewer).model is None
    assert train._train.enabled
    # an annotation whose shape no longer fits the image
    train._start.value = "scratch"
    before = np.array(ann.data)
    ann.data = np.zeros((50, 60), np.int32)
    train.live.toggle.value = True
    assert not train.live.running and "shape" in shown[-1]
    ann.data = before
    np.testing.assert_array_equal(ann.data, before)


def test_deleting_the_annotation_mid_run_stops_and_keeps_the_model(
    make_napari_viewer, qtbot, cells, paint, fast_config
):
    viewer, ann, train = _setup(make_napari_viewer, cells, paint, fast_config)
    train.live.toggle.value = True
    qtbot.waitUntil(lambda: _steps(train) >= 2, timeout=60000)
    viewer.layers.remove(ann)
    qtbot.waitUntil(lambda: not train.live.running, timeout=60000)
    assert not train.live.toggle.value
    assert session_for(viewer).model is not None  # the run became the model in use


def test_closing_during_live_mode_keeps_the_model(
    make_napari_viewer, qtbot, cells, paint, fast_config
):
    viewer, ann, train = _setup(make_napari_viewer, cells, paint, fast_config)
    train.live.toggle.value = True
    qtbot.waitUntil(lambda: _steps(train) >= 2, timeout=60000)
    t0 = time.perf_counter()
    train.live.shutdown()
    assert time.perf_counter() - t0 < 30
    assert not train.live.running
    path = train.live.saved_on_close
    assert path is not None and path.exists()


def test_atom_boxes_and_visible_box(make_napari_viewer, cells):
    image, _ = cells
    viewer = make_napari_viewer()
    layer = viewer.add_image(image)
    ann = viewer.add_labels(np.zeros(image.shape, np.int32))
    ann.data_setitem((np.array([3, 9]), np.array([4, 20])), 2)
    (key,) = atom_boxes(ann._undo_history[-1], 2)
    assert key == (slice(3, 10), slice(4, 21))
    viewer.reset_view()
    z, box = visible_box(viewer, layer)
    assert z == 0 and box == (0, image.shape[0], 0, image.shape[1])  # all of it fits
    camera_of(viewer).zoom *= 8
    camera_of(viewer).center = (48, 64)
    _, (y0, y1, x0, x1) = visible_box(viewer, layer)
    assert 0 < y0 < 48 < y1 < 96 and 0 < x0 < 64 < x1 < 128


def test_region_drawn_during_live_joins_and_copies_stay_out_of_validation(
    make_napari_viewer, qtbot, cells, paint, fast_config, monkeypatch
):
    import napari_unet._qt.train_live as train_live
    from napari_unet._qt.layers import region_mask
    from napari_unet.training.provenance import COPIED_KEY, cell_signatures

    viewer, ann, train = _setup(make_napari_viewer, cells, paint, fast_config)
    ann.metadata[COPIED_KEY] = cell_signatures(ann.data, [1, 2])  # copied from a prediction
    said = []
    monkeypatch.setattr(train_live, "show_info", said.append)
    train.add_to_set()  # a training set: live says it trains on this image only
    train.live.toggle.value = True
    assert said == ["Live trains on 'nuclei' only, not on the training set (its image)."]
    qtbot.waitUntil(lambda: _steps(train) >= 1, timeout=60000)
    data = train.live.live.live
    np.testing.assert_array_equal(data._machine, [1, 2])  # trained on, never held out
    assert not data._regions
    known = data.data.summary[0]["region_pixels"]
    shapes = viewer.add_shapes([[[5, 5], [5, 60], [60, 60], [60, 5]]], name="region")
    train._region.value = shapes  # chosen in the dock mid-run
    qtbot.waitUntil(lambda: 0 in data._regions, timeout=30000)
    np.testing.assert_array_equal(data._regions[0], region_mask(shapes, ann.data.shape))
    qtbot.waitUntil(lambda: data.data.summary[0]["region_pixels"] > known, timeout=30000)
    shapes.add_rectangles([[70, 70], [100, 110]])  # a second shape drawn: joins too
    qtbot.waitUntil(
        lambda: data._regions[0].sum() == region_mask(shapes, ann.data.shape).sum(),
        timeout=30000,
    )
    train.scope.complete.setChecked(True)  # "completely annotated": the whole image
    qtbot.waitUntil(lambda: data._regions[0].all(), timeout=30000)
    train.live.toggle.value = False
    qtbot.waitUntil(lambda: not train.live.running, timeout=60000)
