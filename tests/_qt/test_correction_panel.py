import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_unet._qt.correction_panel as cp
from napari_unet._qt.correction_panel import CorrectionPanel
from napari_unet._qt.layers import OWNER_KEY, find_own_layer, is_derived
from napari_unet._qt.session import session_for


@pytest.fixture
def said(monkeypatch):
    """The panel's notifications, by kind."""
    messages = {"info": [], "error": [], "warning": []}
    for kind in messages:
        monkeypatch.setattr(cp, f"show_{kind}", messages[kind].append)
    return messages


def _prediction(viewer, image, truth, prob, model=None):
    """Segmentation and probability layers as the plugin makes them."""
    for data, role, add in ((truth, "segmentation", viewer.add_labels), (prob, "probability",
                            viewer.add_image)):  # fmt: skip
        add(
            data,
            name=f"{image.name} {role}",
            metadata={OWNER_KEY: {"role": role, "source": image.name, "model": model}},
        )


def _setup(make_napari_viewer, cells, paint, ambiguous=None):
    image_data, truth = cells
    viewer = make_napari_viewer()
    image = viewer.add_image(image_data, name="cells")
    annotation = viewer.add_labels(np.zeros(truth.shape, np.int32), name="annotation")
    paint(annotation, truth, [3, 7])  # the user painted two cells (ids 1 and 2)
    prob = np.where(truth > 0, 0.97, 0.02).astype(np.float32)
    if ambiguous is not None:
        prob[truth == ambiguous] = 0.55
    _prediction(viewer, image, truth, prob)
    panel = CorrectionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="correct")
    panel.set_target(image, annotation)
    return viewer, image, annotation, truth, panel


def _centre(viewer):
    """(y, x) the camera looks at (napari 0.9 keeps the camera in viewer.scene)."""
    return tuple(getattr(viewer, "scene", viewer).camera.center[-2:])


def _click(qtbot, panel):
    qtbot.mouseClick(panel._button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)


def test_merge_keeps_paint_lists_the_unsure_first_and_undoes_in_one_step(
    make_napari_viewer, qtbot, cells, paint, said
):
    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint, 12)
    before = annotation.data.copy()
    _click(qtbot, panel)
    after = annotation.data
    painted = before > 0
    np.testing.assert_array_equal(after[painted], before[painted])
    n_cells = int(truth.max())
    assert len(np.unique(after[after > 0])) == n_cells  # 2 painted + all the others
    assert said["info"][-1].startswith(f"Added {n_cells - 2} predicted cells to 'annotation'; ")
    # the copies are recorded (not human truth until edited); the painted cells 1, 2 are not
    from napari_unet.training.provenance import COPIED_KEY, unedited_copies

    copied = np.setdiff1d(np.unique(after), [0, 1, 2])
    np.testing.assert_array_equal(unedited_copies(after, annotation.metadata[COPIED_KEY]), copied)
    unsure = sum(c.certainty < cp.UNSURE for c in panel.cells)
    assert unsure >= 1
    assert f"; {unsure} cells the model is least sure of are listed first." in said["info"][-1]
    # the ambiguous cell is among the unsure ones, under its new id in the annotation
    rank = next(i for i, c in enumerate(panel.cells) if c.reason == "probability near 0.5")
    assert rank < unsure
    assert set(np.unique(truth[after == panel.cells[rank].label])) == {12}
    assert [c.certainty for c in panel.cells] == sorted(c.certainty for c in panel.cells)
    assert panel.list.count() == n_cells - 2
    first = panel.cells[0]
    assert panel.list.item(0).text().startswith(f"1. cell {first.label}: {first.reason}")
    points = find_own_layer(viewer, "review", "cells")
    assert points.name == "cells least sure cells" and is_derived(points)
    assert len(points.data) == unsure
    assert list(points.features["rank"]) == list(range(1, unsure + 1))
    np.testing.assert_allclose(points.data[0], first.centroid)
    listed = list(panel.cells)
    annotation.undo()  # one Ctrl+Z
    np.testing.assert_array_equal(annotation.data, before)
    # a row of an undone cell: nothing to go to, and the list no longer offers the cells
    centre = _centre(viewer)
    panel.list.setCurrentRow(1)
    assert _centre(viewer) == centre
    assert panel.list.count() == 0 and panel.cells == []
    assert said["info"][-1] == (
        f"Cell {listed[1].label} is no longer in 'annotation' (undone or erased); "
        f"{len(listed)} such cells taken off the list."
    )
    assert len(points.data) == 0
    # again: the cells are added once more, the points layer is updated, not duplicated
    _click(qtbot, panel)
    assert len([lyr for lyr in viewer.layers if lyr.name.endswith("least sure cells")]) == 1


def test_clicking_a_row_centres_the_cell_and_picks_its_label(
    make_napari_viewer, qtbot, cells, paint, said
):
    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint, 12)
    viewer.layers.selection.active = image
    _click(qtbot, panel)
    cell = panel.cells[3]
    rect = panel.list.visualItemRect(panel.list.item(3))
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert _centre(viewer) == pytest.approx(cell.centroid)
    assert annotation.selected_label == cell.label
    assert viewer.layers.selection.active is annotation
    # zoomed in so that the cell spans at least CELL_ON_SCREEN screen pixels
    camera = getattr(viewer, "scene", viewer).camera
    assert camera.zoom * max(cell.area**0.5, 10) >= cp.CELL_ON_SCREEN - 1e-6
    zoom = camera.zoom * 3  # the user zoomed in further: going to a cell keeps it
    camera.zoom = zoom
    panel.list.setCurrentRow(0)
    assert camera.zoom == pytest.approx(zoom)


def test_stacks_go_to_the_cell_s_plane(make_napari_viewer, qtbot, said):
    from skimage.draw import disk

    truth = np.zeros((4, 60, 60), np.int32)
    for z in range(4):
        truth[z][disk((15, 15), 6)] = 2 * z + 1
        truth[z][disk((40, 42), 6)] = 2 * z + 2
    prob = np.where(truth > 0, 0.98, 0.01).astype(np.float32)
    prob[2][truth[2] == 6] = 0.5
    viewer = make_napari_viewer()
    image = viewer.add_image(prob, name="stack")
    annotation = viewer.add_labels(np.zeros_like(truth), name="annotation")
    _prediction(viewer, image, truth, prob)
    panel = CorrectionPanel(viewer)
    panel.set_target(image, annotation)
    viewer.dims.set_point(0, 2)  # the plane the user reviews
    _click(qtbot, panel)
    # only that plane gets cells: the others were not looked at, so they stay unannotated
    assert annotation.data[2].any() and not annotation.data[[0, 1, 3]].any()
    first = panel.cells[0]
    assert first.plane == 2 and "plane 2" in panel.list.item(0).text()
    viewer.dims.set_point(0, 0)
    panel.list.setCurrentRow(0)
    assert viewer.dims.current_step[0] == 2
    assert _centre(viewer) == pytest.approx((40.0, 42.0), abs=0.5)
    points = find_own_layer(viewer, "review", "stack")
    np.testing.assert_allclose(points.data[0], (2, 40, 42), atol=0.5)


def test_a_stale_prediction_is_made_again_with_the_model_in_use(
    make_napari_viewer, qtbot, cells, paint, said
):
    from napari_unet.bundled import load_bundled_model

    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint)
    seg = viewer.layers["cells segmentation"]
    seg.data = np.zeros_like(seg.data)  # made by some other model: not to be used
    session_for(viewer).set_model(load_bundled_model(), "bundled")
    before = annotation.data.copy()
    _click(qtbot, panel)
    assert seg.metadata[OWNER_KEY]["model"] == session_for(viewer).generation
    assert seg.data.max() >= 8  # the bundled model found the cells (12 drawn)
    assert said["info"][-1].startswith("Added ")
    np.testing.assert_array_equal(annotation.data[before > 0], before[before > 0])
    assert annotation.data.max() > 2


def test_problems_are_one_sentence_and_change_nothing(
    make_napari_viewer, qtbot, cells, paint, said
):
    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint)
    panel.set_target(None, None)
    _click(qtbot, panel)
    assert said["error"] == ["Choose an image and its annotation first."]
    # no model and no prediction to use
    viewer.layers.remove("cells segmentation")
    panel.set_target(image, annotation)
    _click(qtbot, panel)
    assert "no model in use" in said["error"][-1]
    # an annotation of another size than its image
    other = viewer.add_labels(np.zeros((10, 10), np.int32), name="other")
    panel.set_target(image, other)
    _click(qtbot, panel)
    assert (
        "'other' has shape (10, 10) but the image 'cells' has shape (96, 128)" in said["error"][-1]
    )
    # an 8-bit annotation with ids near its top cannot take the new cells
    small = viewer.add_labels(np.zeros(truth.shape, np.uint8), name="small")
    small.data_setitem((np.array([0]), np.array([0])), 250)
    _prediction(viewer, image, truth, np.where(truth > 0, 0.9, 0.1))
    panel.set_target(image, small)
    before = small.data.copy()
    _click(qtbot, panel)
    assert "cannot hold" in said["error"][-1]
    np.testing.assert_array_equal(small.data, before)


def test_paint_added_during_the_merge_is_kept(make_napari_viewer, qtbot, cells, paint, said):
    from napari_unet.correction import merge_prediction

    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint)
    before = annotation.data.copy()
    merged, added = merge_prediction(before, truth)
    # the user paints into a predicted cell while the worker merges
    y, x = np.argwhere(truth == 5)[0]
    annotation.data_setitem((np.array([y]), np.array([x])), 9)
    painted = annotation.data.copy()
    panel._apply(annotation, before, merged, added, [], np.nonzero(merged != before))
    assert "was painted while the cells were copied" in said["warning"][-1]
    np.testing.assert_array_equal(annotation.data, painted)


def test_no_cell_is_added_inside_the_annotated_region(
    make_napari_viewer, qtbot, cells, paint, said
):
    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint)
    region = viewer.add_shapes([np.array([[0, 0], [0, 60], [60, 60], [60, 0]])], name="r")
    panel.set_target(image, annotation, region)
    before = np.array(annotation.data)
    _click(qtbot, panel)
    inside = np.zeros(before.shape, bool)
    inside[:61, :61] = True
    # inside the region the annotation is complete: unpainted pixels there stay background
    assert np.array_equal(annotation.data[inside], before[inside])
    assert (annotation.data[~inside] > 0).sum() > (before[~inside] > 0).sum()


def test_correcting_says_each_step_and_what_the_number_is(
    make_napari_viewer, qtbot, cells, paint, said, monkeypatch
):
    steps = []
    real = CorrectionPanel._on_step
    monkeypatch.setattr(
        CorrectionPanel, "_on_step", lambda self, s: (steps.append(s), real(self, s))
    )
    viewer, image, annotation, truth, panel = _setup(make_napari_viewer, cells, paint, 12)
    _click(qtbot, panel)
    assert [s[-len("(step 1 of 3)") :] for s in steps] == [
        "(step 1 of 3)",
        "(step 2 of 3)",
        "(step 3 of 3)",
    ]
    first = panel.cells[0]
    assert panel.list.item(0).text().endswith(f"(certainty {first.certainty:.2f} of 1)")
