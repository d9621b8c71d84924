import numpy as np

from napari_unet._qt.layers import OWNER_KEY
from napari_unet.weightmap import unet_weight_map


def _dock(viewer):
    return viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")[1]


def test_new_annotation_counts_cells_and_gives_fresh_ids(make_napari_viewer, qtbot, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    w = _dock(viewer)
    w.new_annotation()
    layer = viewer.layers["nuclei annotation"]
    assert layer.data.shape == image.shape and layer.data.max() == 0
    assert layer.mode == "paint" and layer.selected_label == 1
    assert layer.metadata[OWNER_KEY]["role"] == "annotation"
    assert w._annotation.value is layer
    # a stroke through napari's paint API advances the id for the next cell
    layer.paint((10, 10), 1)
    assert layer.selected_label == 2
    layer.paint((60, 60), 2)
    qtbot.waitUntil(lambda: w._count.value == "2", timeout=5000)


def test_weight_map_overlay_updates_in_place_and_warns(make_napari_viewer, qtbot, cells, paint):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    w = _dock(viewer)
    w.new_annotation()
    layer = viewer.layers["nuclei annotation"]
    paint(layer, truth, [1, 2, 3])
    w._show_weights.value = True
    overlay = w.overlay
    qtbot.waitUntil(lambda: "nuclei annotation weight map" in viewer.layers, timeout=20000)
    qtbot.waitUntil(lambda: not overlay.busy, timeout=20000)
    wm = viewer.layers["nuclei annotation weight map"]
    np.testing.assert_allclose(wm.data, unet_weight_map(layer.data), atol=1e-5)
    assert wm.blending == "additive" and wm.colormap.name == "inferno"
    # two touching cells: painted after the map was shown; the same layer follows
    n_layers = len(viewer.layers)
    layer.data_setitem((np.arange(40, 50), np.full(10, 100)), 8)
    layer.data_setitem((np.arange(40, 50), np.full(10, 101)), 9)
    layer.events.paint(value=[])
    qtbot.waitUntil(lambda: "touch" in w._touching.value, timeout=20000)
    qtbot.waitUntil(lambda: not overlay.busy, timeout=20000)
    assert len(viewer.layers) == n_layers
    np.testing.assert_allclose(wm.data, unet_weight_map(layer.data), atol=1e-5)
    assert not w._carve.native.isHidden()
    before = np.array(layer.data)
    w.carve_gaps()  # the explicit action the warning offers
    removed = (before != 0) & (layer.data == 0)
    assert removed[40:50, 100:102].sum() == 10  # one of each touching pair of the two strokes
    assert removed.sum() <= 10 + np.count_nonzero(before[40:50, 98:104])  # nothing far away
    qtbot.waitUntil(lambda: w._touching.value == "", timeout=20000)
    w._show_weights.value = False
    assert "nuclei annotation weight map" not in viewer.layers


def test_new_region_layer(make_napari_viewer, cells):
    viewer = make_napari_viewer()
    viewer.add_image(cells[0], name="nuclei")
    w = _dock(viewer)
    w.new_region()
    region = viewer.layers["nuclei annotated region"]
    assert region.mode == "add_rectangle" and w._region.value is region


def test_closing_the_dock_while_painting(make_napari_viewer, qtbot, cells):
    """A count update pending at close, and strokes after it, reach no deleted widget."""
    from qtpy.QtWidgets import QApplication

    from napari_unet._qt.weightmap_overlay import DEBOUNCE_MS

    image, _ = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    w = _dock(viewer)
    w.new_annotation()
    layer = viewer.layers["nuclei annotation"]
    layer.paint((10, 10), 1)  # starts the debounce timer
    destroyed = []
    w.native.destroyed.connect(lambda *_: destroyed.append(True))
    viewer.window.remove_dock_widget("all")
    w.native.deleteLater()
    qtbot.waitUntil(lambda: bool(destroyed), timeout=5000)
    layer.paint((60, 60), 5)  # the layer outlives the dock
    qtbot.wait(3 * DEBOUNCE_MS)
    QApplication.processEvents()
    assert layer.selected_label == 2  # no dock moved the id on after it was gone
    assert layer.data[60, 60] == 5


def test_switching_the_weight_map_off_while_it_computes(make_napari_viewer, qtbot, cells, paint):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    w = _dock(viewer)
    w.new_annotation()
    paint(viewer.layers["nuclei annotation"], truth, [1, 2, 3])
    w._show_weights.value = True
    overlay = w.overlay
    assert overlay._worker is not None  # computing in its thread
    w._show_weights.value = False
    qtbot.waitUntil(lambda: overlay._worker is None, timeout=20000)
    qtbot.wait(50)
    assert "nuclei annotation weight map" not in viewer.layers  # it does not come back


def test_every_way_an_annotation_becomes_current_paints_a_new_cell(
    make_napari_viewer, qtbot, cells
):
    """Choose in the list, undo, copy a segmentation: the brush is the largest id + 1."""
    from napari_unet._qt.session import state_for

    image, truth = cells
    top = int(truth.max())
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    w = _dock(viewer)
    chosen = viewer.add_labels(truth.astype(np.uint16), name="earlier work")
    assert chosen.selected_label == 1  # napari's default: a cell already there
    w._annotation.value = chosen  # chosen in the list, not in paint mode
    qtbot.waitUntil(lambda: chosen.selected_label == top + 1, timeout=5000)
    # a new cell, then undone: the id it had is free again
    chosen.mode = "paint"
    chosen.paint((2, 2), top + 1)
    assert chosen.selected_label == top + 2
    chosen.undo()
    qtbot.waitUntil(lambda: chosen.selected_label == top + 1, timeout=5000)
    # set by another dock (as Open project and Copy segmentation do)
    other = viewer.add_labels((truth * 2).astype(np.uint32), name="other work")
    state_for(viewer).annotation.set(labels=other)
    qtbot.waitUntil(lambda: other.selected_label == 2 * top + 1, timeout=5000)
    assert w._annotation.value is other
    # the id painted with after the first stroke follows the largest id, not the old brush
    other.mode = "paint"
    other.paint((3, 3), other.selected_label)
    assert other.selected_label == 2 * top + 2


def test_region_hint_is_shown_whole_at_a_laptop_size(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")
    QApplication.processEvents()
    qtbot.wait(50)
    hint = dock._region_help.native
    assert hint.isVisible() and hint.width() > 0
    # the wrapped text needs no more height than the row gives it (it was cut top and bottom)
    assert hint.heightForWidth(hint.width()) <= hint.height()
