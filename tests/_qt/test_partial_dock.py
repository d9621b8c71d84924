"""The Train dock says which cells look partly painted (issue 28), live and with Fine-tune."""

import numpy as np
import pytest

from napari_unet._qt.layers import find_own_layer
from napari_unet._qt.scope_judge import training_area
from napari_unet.synthetic import make_cells
from napari_unet.synthetic.scribbles import scribble_cells
from napari_unet.training.partial import partial_sentence


@pytest.fixture(scope="module")
def nuclei():
    image, truth = make_cells((256, 256), style="fluorescence", seed=11)
    ids = np.sort(np.random.default_rng(0).choice(np.unique(truth)[1:], 3, replace=False))
    return image, truth, ids


def _dock(make_napari_viewer, nuclei, fast_config, whole=()):
    image, truth, ids = nuclei
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="nuclei annotation")
    painted = scribble_cells(truth, ids, seed=0)
    painted = np.where(np.isin(truth, whole), truth, painted)
    for i in ids:  # one stroke per cell, as a user paints
        ann.data_setitem(tuple(np.argwhere(painted == i).T), int(i))
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._image.value, train._annotation.value = layer, ann
    train._defaults = fast_config.replace(tile_size=132)
    train._start.value = "bundled"  # a model that knows nuclei: it sees where they go on
    train._refresh.value = False
    train.live.preview_every = 0.5
    return ann, train, painted


def test_live_mode_says_which_cells_look_partly_painted(
    make_napari_viewer, qtbot, nuclei, fast_config
):
    _, truth, ids = nuclei
    ann, train, painted = _dock(make_napari_viewer, nuclei, fast_config)
    assert not train.scope.partial.isVisibleTo(train.native)
    train.live.toggle.value = True
    qtbot.waitUntil(
        lambda: train.live.last is not None and bool(train.live.last.partial), timeout=90000
    )
    flagged = list(train.live.last.partial)
    assert set(flagged) <= set(ids) and len(flagged) >= 2
    sentence = partial_sentence(flagged)
    assert train.scope.partial.text() == sentence
    assert train.scope.partial.isVisibleTo(train.native)
    # the user paints one of them whole: it drops out of the sentence within a step or two
    cell = flagged[0]
    ann.data_setitem(tuple(np.argwhere(truth == cell).T), int(cell))
    rest = partial_sentence(flagged[1:])
    qtbot.waitUntil(lambda: train.scope.partial.text() == rest, timeout=60000)
    before = np.array(ann.data)
    train.live.toggle.value = False
    qtbot.waitUntil(lambda: not train.live.running, timeout=120000)
    np.testing.assert_array_equal(ann.data, before)  # the annotation is never modified
    assert train.scope.partial.text() == rest


def test_fine_tune_says_it_too_and_whole_cells_say_nothing(
    make_napari_viewer, qtbot, nuclei, fast_config
):
    _, _, ids = nuclei
    ann, train, painted = _dock(make_napari_viewer, nuclei, fast_config, whole=ids[:2])
    before = np.array(ann.data)
    train._steps.value, train._time.value = 1, 0
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=120000)
    qtbot.waitUntil(lambda: not train._workers.pending, timeout=30000)
    assert train.runner.trainer.data.summary[0]["partial"] == [int(ids[2])]
    assert train.scope.partial.text() == partial_sentence([ids[2]])
    # the line above Fine-tune says where their background comes from (it did not)
    assert train.scope.line.text() == (
        "Training on 3 painted cells (background only around them, farther out for the one "
        "partly painted; the rest of the image is not used)."
    )
    # the overlay of the area trained on is the area the round used: that cell's
    # surroundings left out, the start model's sure background farther out taught instead
    overlay = find_own_layer(train._viewer, "training area", "nuclei")
    sigma = train._defaults.sigma
    expected = train.runner.trainer.data.planes[0].region.astype(np.uint8)
    ring_inside = training_area(np.asarray(ann.data), None, sigma) & ~training_area(
        np.asarray(ann.data), None, sigma, [ids[2]]
    )
    assert ring_inside.any() and not expected[ring_inside > 0].any()
    qtbot.waitUntil(lambda: np.array_equal(overlay.data, expected), timeout=30000)
    np.testing.assert_array_equal(ann.data, before)
