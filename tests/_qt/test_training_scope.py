"""The line above Fine-tune and the overlay leave stray dabs out, as training does (issue 28)."""

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication
from scipy import ndimage as ndi

from napari_unet._qt.layers import find_own_layer
from napari_unet._qt.training_scope import scope_sentence
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.training import known_area
from napari_unet.training.data import model_normalization
from napari_unet.training.known import ring_width
from napari_unet.training.partial import PartialRule, overhang

TWO_AND_THREE = (
    "Training on 2 painted cells (background only around them); 3 tiny marks on background "
    "are left out."
)
NOTHING = (
    "Nothing will train: all 3 painted marks are tiny and lie where the model sees background; "
    "paint whole cells."
)


def test_the_line_counts_the_cells_trained_on_and_says_how_many_are_left_out():
    assert scope_sentence(2, False, False, left_out=3) == TWO_AND_THREE
    assert scope_sentence(1, False, False, left_out=1) == (
        "Training on 1 painted cell (background only around them); 1 tiny mark on background "
        "is left out."
    )
    assert scope_sentence(4, False, False, partial=2, left_out=3) == (
        "Training on 4 painted cells (background only around them, farther out for the 2 partly "
        "painted); 3 tiny marks are left out."
    )
    assert scope_sentence(4, False, True, partial=1, left_out=2) == (
        "Training on 4 painted cells and the annotated region (background only there and around "
        "the cells); 2 tiny marks are left out."
    )
    # every painted cell a stray dab: not "Training on 0 cells", but why nothing trains
    assert scope_sentence(0, False, False, left_out=3) == NOTHING
    assert scope_sentence(0, False, True, left_out=1) == (
        "Nothing will train: the painted mark is tiny and lies where the model sees background; "
        "paint whole cells."
    )
    # nothing left out: the lines as they were
    assert scope_sentence(3, False, False) == (
        "Training on 3 painted cells (background only around them; the rest of the image is "
        "not used). Paint more cells, or mark the image complete, to learn more."
    )
    assert scope_sentence(0, False, False) == (
        "No painted cell yet: paint cells in the annotation (Annotate dock)."
    )


def test_every_line_with_cells_left_out_keeps_three_lines_at_1366x768(make_napari_viewer):
    """Five lines pushed the Live toggle below a 1366x768 screen."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.add_image(np.zeros((64, 64), np.float32), name="nuclei")
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    for _ in range(5):
        QApplication.processEvents()
    line = train.scope.line
    width = line.width()
    assert 250 < width < 400  # the dock's own width, not an unlaid one
    worst = [
        scope_sentence(cells, False, region, images, partial, left, elsewhere)
        for cells in (1, 12, 123)
        for region in (False, True)
        for partial in (0, 1, 11, 112)
        for left in (1, 13, 134)
        for images in (1, 2, 12)  # a training set: some or all dabs on other images
        for elsewhere in ({0, 1, left - 1, left} if images > 1 else {0})
        if partial <= cells
    ] + [scope_sentence(0, False, region, left_out=n) for region in (False, True) for n in (1, 99)]
    worst += [  # marked complete: the dabs are left out all the same
        scope_sentence(cells, True, False, images, 0, left, elsewhere)
        for cells in (1, 12, 123)
        for left in (1, 13, 134)
        for images in (1, 12)
        for elsewhere in ({0, left} if images > 1 else {0})
    ]
    said = (
        "Training on 12 painted cells across 2 images (background only around them); 13 tiny "
        "marks (12 on other images) are left out."
    )
    assert said in worst  # where the dabs are is said where it fits
    for text in worst:
        line.setText(text)
        lines = line.heightForWidth(width) // line.fontMetrics().lineSpacing()
        assert lines <= 3, (lines, text)


def _whole(truth, n):
    """The first ``n`` nuclei of ``truth`` painted whole, numbered from 1."""
    painted = np.zeros(truth.shape, np.int32)
    for new, cell in enumerate(np.unique(truth)[1 : n + 1], start=1):
        painted[truth == cell] = new
    return painted


@pytest.fixture(scope="module")
def nuclei_and_dabs():
    """Two whole nuclei and three 9-px dabs well away from any nucleus."""
    image, truth = make_cells((256, 256), style="fluorescence", seed=11)
    painted = _whole(truth, 2)
    far = ndi.distance_transform_edt(truth == 0) > 12
    far[:24], far[-24:], far[:, :24], far[:, -24:] = False, False, False, False
    spots = np.argwhere(far)
    dabs = np.zeros(truth.shape, np.int32)
    for k, (y, x) in enumerate(spots[[0, len(spots) // 2, len(spots) - 1]], start=3):
        dabs[y - 1 : y + 2, x - 1 : x + 2] = k
    return image, painted, dabs


def _dock(make_napari_viewer, image):
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros(image.shape, np.int32), name="nuclei annotation")
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._image.value, train._annotation.value = layer, ann
    train._start.value = "bundled"  # a model that knows nuclei and background
    return viewer, ann, train


def _one_step_round(qtbot, train):
    """Fine-tune for one step (small tiles, no segmenting after) and wait for it to end."""
    train._defaults = train._defaults.replace(tile_size=132)
    train._steps.value, train._time.value = 1, 0
    train._refresh.value = False
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=120000)


def _paint(ann, labels):
    for i in np.unique(labels)[1:]:  # one stroke per cell, as a user paints
        ann.data_setitem(tuple(np.argwhere(labels == i).T), int(i))


def test_stray_dabs_are_not_counted_nor_drawn_as_trained_on(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    image, painted, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, image)
    _paint(ann, painted + dabs)
    before = np.array(ann.data)
    qtbot.waitUntil(lambda: train.scope.line.text() == TWO_AND_THREE, timeout=60000)
    # the overlay: the two nuclei, their rings and gaps; no dab, and no ring round one
    sigma = train._defaults.sigma
    # where the start model is sure of background at the nuclei's painted edge: not taught
    model = load_bundled_model()
    norm = model_normalization(model, train._defaults)
    x = norm.apply(image, norm.statistics(image), channel_axis=None)[None].astype(np.float32)
    fg = PartialRule(model).foreground(x, painted, ring_width(painted, sigma))
    expected = known_area(painted, sigma, overhang=overhang(painted, fg)).astype(np.uint8)
    with_dabs = known_area(painted + dabs, sigma).astype(np.uint8)  # what main drew
    ring = ring_width(painted + dabs, sigma)
    around = ndi.distance_transform_edt(dabs == 0) <= ring
    assert with_dabs[around].all() and not expected[around].any()
    viewer_layer = lambda: find_own_layer(viewer, "training area", "nuclei")  # noqa: E731
    qtbot.waitUntil(
        lambda: viewer_layer() is not None and np.array_equal(viewer_layer().data, expected),
        timeout=30000,
    )
    # and it is the area a round trains on
    _one_step_round(qtbot, train)
    data = train.runner.trainer.data
    assert (data.summary[0]["left_out"], data.summary[0]["cells"]) == ([3, 4, 5], 2)
    np.testing.assert_array_equal(data.planes[0].region, expected > 0)
    # the dabs erased, nothing is left out any more: the line is the plain one again
    ann.data_setitem(tuple(np.argwhere(dabs > 0).T), 0)
    plain = scope_sentence(2, False, False)
    qtbot.waitUntil(lambda: train.scope.line.text() == plain, timeout=30000)
    np.testing.assert_array_equal(ann.data, np.where(dabs > 0, 0, before))  # only the erase


def test_only_dabs_say_nothing_will_train_and_fine_tune_refuses(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    image, _, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, image)
    _paint(ann, dabs)
    qtbot.waitUntil(lambda: train.scope.line.text() == NOTHING, timeout=60000)
    # nothing is trained on: no overlay shows
    qtbot.wait(2 * 400 + 200)
    layer = find_own_layer(viewer, "training area", "nuclei")
    assert layer is None or not layer.visible
    train._steps.value, train._time.value = 1, 0
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=60000)
    assert train._status.value == (
        "Cells 3, 4 and 5 are left out: they are tiny marks where the model sees background; "
        "paint whole cells to train on them."
    )
    np.testing.assert_array_equal(ann.data, dabs)  # the annotation is untouched


def _scope_alone(make_napari_viewer, qtbot, nuclei_and_dabs):
    """The scope by itself (no dock, no model yet) on the nuclei with two cells and 3 dabs."""
    from napari_unet._qt.training_scope import TrainingScope

    image, painted, dabs = nuclei_and_dabs
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(painted + dabs, name="nuclei annotation")
    scope = TrainingScope(viewer, 5.0)
    qtbot.addWidget(scope)
    scope.set_target(layer, ann, None)
    return viewer, scope, painted


def test_a_runs_finding_leaves_its_dabs_out_too(make_napari_viewer, qtbot, nuclei_and_dabs):
    """Live mode hands the scope its own finding (the scope then asks no model)."""
    viewer, scope, painted = _scope_alone(make_napari_viewer, qtbot, nuclei_and_dabs)
    qtbot.waitUntil(lambda: scope.cells == 5, timeout=10000)
    assert scope.line.text() == scope_sentence(5, False, False)  # nothing found yet
    said = "Cells 3, 4 and 5 are left out: ..."
    scope.set_partial(said, [], [3, 4, 5])
    assert scope.line.text() == TWO_AND_THREE and scope.partial.text() == said
    expected = known_area(painted, 5.0).astype(np.uint8)
    qtbot.waitUntil(
        lambda: (
            (o := find_own_layer(viewer, "training area", "nuclei")) is not None
            and np.array_equal(o.data, expected)
        ),
        timeout=30000,
    )
    scope.close_scope()


def test_a_runs_sentence_goes_when_the_start_model_no_longer_bears_it_out(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    """After a round the next start model may judge the dabs otherwise: the line and the
    sentence below it must not disagree."""
    from napari_unet.bundled import load_bundled_model
    from napari_unet.training import TrainConfig

    viewer, scope, painted = _scope_alone(make_napari_viewer, qtbot, nuclei_and_dabs)
    said = "Cells 3, 4 and 5 are left out: ..."
    scope.set_partial(said, [], [3, 4, 5])  # as Fine-tune says it when it starts
    bundled = load_bundled_model()
    scope.set_judge(lambda: (("bundled",), lambda: bundled, TrainConfig.interactive()))
    qtbot.wait(3000)  # the start model agrees: the sentence stays
    assert scope.partial.text() == said and scope.line.text() == TWO_AND_THREE
    # a model that sees no background anywhere: no dab is a stray any more
    everywhere = lambda: _sure_everywhere(bundled)  # noqa: E731
    scope.set_judge(lambda: (("sure of cells",), everywhere, TrainConfig.interactive()))
    whole = scope_sentence(5, False, False, partial=5)  # and every cell goes on past its paint
    qtbot.waitUntil(lambda: scope.line.text() == whole, timeout=30000)
    assert scope.partial.text() == "" and not scope.partial.isVisibleTo(scope)
    scope.close_scope()


def _sure_everywhere(model):
    """A copy of ``model`` whose last layer says foreground everywhere."""
    import copy

    import torch

    sure = copy.deepcopy(model)
    last = [m for m in sure.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-10.0, 10.0]))
    return sure


def test_live_mode_draws_the_area_it_trains_on_with_the_sure_band_of_scribbles(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    """Live mode's overlay was known_area of the paint: the start model's sure background
    round partly painted cells, which live mode trains on as Fine-tune does, was not drawn."""
    from napari_unet.synthetic.scribbles import scribble_cells

    image, painted, _ = nuclei_and_dabs
    scribbles = scribble_cells(painted, [1, 2], seed=0)
    viewer, ann, train = _dock(make_napari_viewer, image)
    train._defaults = train._defaults.replace(tile_size=132)
    train._refresh.value = False
    _paint(ann, scribbles)
    layer = lambda: find_own_layer(viewer, "training area", "nuclei")  # noqa: E731
    train.live.toggle.value = True
    qtbot.waitUntil(lambda: train.live.live is not None and train.live.live.trainer.step >= 1,
                    timeout=60000)  # fmt: skip
    live = train.live.live.live
    assert live.partial_cells == [1, 2]
    plain = known_area(scribbles, train._defaults.sigma, partial=[1, 2])  # what it drew
    sent = live.known(0)
    assert (sent & ~plain).any()  # the sure band round the scribbles
    qtbot.waitUntil(
        lambda: layer() is not None and np.array_equal(layer().data, sent), timeout=30000
    )
    # a scribble erased while live: the overlay follows what live mode now trains on
    ann.data_setitem(tuple(np.argwhere(scribbles == 2).T), 0)
    qtbot.waitUntil(lambda: not (live.labels(0) == 2).any(), timeout=30000)
    qtbot.waitUntil(lambda: not np.array_equal(live.known(0), sent), timeout=30000)
    one = live.known(0)
    assert not one[scribbles == 2].any()
    qtbot.waitUntil(lambda: np.array_equal(layer().data, one), timeout=30000)
    train.live.toggle.value = False
    qtbot.waitUntil(lambda: not train.live.running, timeout=120000)
    np.testing.assert_array_equal(ann.data, np.where(scribbles == 2, 0, scribbles))  # untouched


def _set_of(train, pairs):
    """Add (image layer, annotation) pairs to the dock's training set, as Add does."""
    for layer, ann in pairs:
        train._image.value, train._annotation.value = layer, ann
        train.add_to_set()


@pytest.fixture(scope="module")
def three_whole_cells():
    """Another image, three of its nuclei painted whole."""
    image, truth = make_cells((160, 192), style="fluorescence", seed=12)
    return image, _whole(truth, 3)


def test_a_training_sets_line_leaves_out_the_dabs_of_every_image_as_its_round_does(
    make_napari_viewer, qtbot, nuclei_and_dabs, three_whole_cells, monkeypatch
):
    """The line counted every mark of the set's other images as a cell: "Training on 8
    painted cells in 2 images" while the round left 3 of them out."""
    from napari_unet.training import data as data_module

    first, whole = three_whole_cells
    image, painted, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, first)
    _paint(ann, whole)
    second = viewer.add_image(image, name="nuclei 2")
    ann2 = viewer.add_labels(np.zeros(image.shape, np.int32), name="nuclei 2 annotation")
    _paint(ann2, painted + dabs)
    judged = []  # the shape of each image judged
    planned = data_module.planned_area
    monkeypatch.setattr(
        data_module,
        "planned_area",
        lambda image, labels, *a: judged.append(labels.shape) or planned(image, labels, *a),
    )
    _set_of(train, [(train._image.value, ann), (second, ann2)])
    train._image.value, train._annotation.value = viewer.layers["nuclei"], ann  # the first
    five = (
        "Training on 5 painted cells across 2 images (background only around them); 3 tiny "
        "marks on other images are left out."
    )
    qtbot.waitUntil(lambda: train.scope.line.text() == five, timeout=60000)
    # a stroke on the first image judges that image again, not the second
    qtbot.wait(1000)
    before = judged.count(image.shape)
    truth = make_cells((160, 192), style="fluorescence", seed=12)[1]
    ann.data_setitem(tuple(np.argwhere(truth == np.unique(truth)[4]).T), 4)
    six = five.replace("5 painted", "6 painted")
    qtbot.waitUntil(lambda: train.scope.line.text() == six, timeout=60000)
    qtbot.wait(1000)
    assert judged.count(image.shape) == before and judged.count(first.shape) >= 2
    # the second image chosen: its dabs are the ones the overlay shows ("on background")
    train._image.value, train._annotation.value = second, ann2
    here = six.replace("on other images", "on background")
    qtbot.waitUntil(lambda: train.scope.line.text() == here, timeout=60000)
    # and a round trains on those 6 cells, leaving the 3 dabs out
    _one_step_round(qtbot, train)
    summary = train.runner.trainer.data.summary
    assert [s["left_out"] for s in summary] == [[], [3, 4, 5]]
    assert [s["cells"] for s in summary] == [4, 2]
    np.testing.assert_array_equal(ann2.data, painted + dabs)  # the annotation is untouched


def test_a_set_of_only_dabs_says_nothing_will_train_and_an_unsuited_image_counts_as_painted(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    image, _, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, image)
    _paint(ann, dabs)
    again = viewer.add_image(image.copy(), name="nuclei again")
    ann2 = viewer.add_labels(np.zeros(image.shape, np.int32), name="again annotation")
    _paint(ann2, dabs)
    _set_of(train, [(viewer.layers["nuclei"], ann), (again, ann2)])
    nothing = NOTHING.replace("all 3", "all 6")
    qtbot.waitUntil(lambda: train.scope.line.text() == nothing, timeout=60000)
    # an image the model cannot judge (NaN pixels): its marks count as painted, no error
    broken = image.astype(np.float32)
    broken[0, 0] = np.nan
    bad = viewer.add_image(broken, name="broken")
    ann3 = viewer.add_labels(dabs.copy(), name="broken annotation")
    _set_of(train, [(bad, ann3)])
    three = scope_sentence(3, False, False, images=3, left_out=6, elsewhere=6)
    assert three == (
        "Training on 3 painted cells across 3 images (background only around them); 6 tiny "
        "marks on other images are left out."
    )
    qtbot.waitUntil(lambda: train.scope.line.text() == three, timeout=60000)
    np.testing.assert_array_equal(ann3.data, dabs)


def test_after_a_round_the_dabs_are_judged_as_before_by_line_and_round(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    """The click-through found it: after a round the line counted all five marks as cells,
    because the next start model was no longer sure of the background under the dabs. The
    dock keeps the first judgement of each area (training/first_sight.py) for both."""
    from napari_unet._qt.model_choice import CURRENT

    image, painted, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, image)
    _paint(ann, painted + dabs)
    qtbot.waitUntil(lambda: train.scope.line.text() == TWO_AND_THREE, timeout=60000)
    # the next round's start model: one that is sure of cells everywhere
    train._session.set_model(_sure_everywhere(load_bundled_model()), "a later round")
    train._start.value = CURRENT
    train.scope.refresh()
    qtbot.wait(3000)
    assert train.scope.line.text() == TWO_AND_THREE
    _one_step_round(qtbot, train)
    data = train.runner.trainer.data
    assert (data.summary[0]["left_out"], data.summary[0]["cells"]) == ([3, 4, 5], 2)
    # a new dab far from the judged area is the newer model's to judge: a cell to it


def test_a_reopened_project_judges_the_dabs_as_before(
    make_napari_viewer, qtbot, nuclei_and_dabs, tmp_path
):
    """The first judgement is kept in the project: reopened with a later model in use,
    the line still leaves the three dabs out (it counted them as cells before)."""
    import tifffile

    from napari_unet._qt.model_choice import CURRENT
    from napari_unet._qt.project_session import project_for
    from napari_unet._qt.session import state_for
    from napari_unet.project import Project
    from napari_unet.training.first_sight import FILE_NAME

    image, painted, dabs = nuclei_and_dabs
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "nuclei.tif"))[0]
    ann = viewer.add_labels(np.zeros(image.shape, np.int32), name="nuclei annotation")
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._image.value, train._annotation.value = layer, ann
    train._start.value = "bundled"
    state_for(viewer).annotation.set(image=layer, labels=ann)  # as the Annotate dock does
    folder = project_for(viewer).choose_folder(tmp_path / "p").folder
    _paint(ann, painted + dabs)
    qtbot.waitUntil(lambda: train.scope.line.text() == TWO_AND_THREE, timeout=60000)
    _one_step_round(qtbot, train)
    qtbot.waitUntil(lambda: (folder / FILE_NAME).is_file(), timeout=30000)
    assert project_for(viewer).flush()
    state_for(viewer).close()  # one window per project
    # a later round is in use when the project is reopened: a model sure of cells
    # everywhere, which alone sees the five marks as five cells
    Project.open(folder).history.add_round(
        _sure_everywhere(load_bundled_model()), start_model="round 1", cells=2, steps=1,
        seconds=0.1, ap50=None, mean_iou=None, val_cells=0, entries=["nuclei"],
    )  # fmt: skip

    other = make_napari_viewer()
    train2 = other.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    with qtbot.waitSignal(project_for(other).opened, timeout=30000) as opened:
        project_for(other).open(folder)
    entry = opened.args[0][0]
    np.testing.assert_array_equal(entry.labels.data, painted + dabs)
    assert "round 2" in state_for(other).model.source
    train2._start.value = CURRENT
    train2._image.value, train2._annotation.value = entry.image, entry.labels
    qtbot.waitUntil(lambda: train2.scope.line.text() == TWO_AND_THREE, timeout=60000)
    np.testing.assert_array_equal(entry.labels.data, painted + dabs)  # never modified


def test_an_image_marked_complete_says_its_dabs_are_left_out_as_the_round_does(
    make_napari_viewer, qtbot, nuclei_and_dabs
):
    """The line said no dab was left out of a complete image; the round left them out."""
    image, painted, dabs = nuclei_and_dabs
    viewer, ann, train = _dock(make_napari_viewer, image)
    _paint(ann, painted + dabs)
    qtbot.waitUntil(lambda: train.scope.line.text() == TWO_AND_THREE, timeout=60000)
    train.scope.complete.setChecked(True)
    said = scope_sentence(2, True, False, left_out=3)
    assert "marked complete" in said and "3 tiny marks" in said
    qtbot.waitUntil(lambda: train.scope.line.text() == said, timeout=30000)
    qtbot.wait(1200)  # no overlay while complete: the whole image is trained on
    layer = find_own_layer(viewer, "training area", "nuclei")
    assert layer is None or not layer.visible
    _one_step_round(qtbot, train)
    data = train.runner.trainer.data
    assert (data.summary[0]["left_out"], data.summary[0]["cells"]) == ([3, 4, 5], 2)
    assert data.planes[0].region.mean() > 0.99  # every other pixel is background
    train.scope.complete.setChecked(False)
    qtbot.waitUntil(lambda: train.scope.line.text() == TWO_AND_THREE, timeout=30000)
