"""Partly painted cells (issue 28): a scribble's surroundings are not taught as background."""

import copy

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet import predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.errors import NapariUnetError
from napari_unet.synthetic import make_cells
from napari_unet.synthetic.scribbles import box_cells, dab_cells, scribble_cells
from napari_unet.training import TrainConfig, known_area, prepare_training_data, train_model
from napari_unet.training import partial as partial_module
from napari_unet.training.calibrate import calibrate_model, calibration_samples
from napari_unet.training.live_data import LiveData
from napari_unet.training.partial import (
    BAND,
    CONFIDENT,
    RIM,
    PartialRule,
    far_smaller,
    image_sentences,
    overhang,
    partial_sentence,
    partly_painted,
)

CFG = TrainConfig.fine_tune(tile_size=220, validation_fraction=0.0, seed=0)


def _scribble_and_nucleus():
    lab = np.zeros((60, 80), np.int32)
    lab[20:30, 10:20] = 1  # a scribble in the middle of a nucleus at [15:35, 5:25]
    lab[20:40, 45:65] = 2  # a whole cell
    fg = np.zeros(lab.shape, np.float32)
    fg[15:35, 5:25] = 0.95
    fg[20:40, 45:65] = 0.99
    return lab, fg


def test_a_cell_is_partly_painted_when_the_model_is_sure_its_ring_is_foreground():
    lab, fg = _scribble_and_nucleus()
    assert partly_painted(lab, fg, 3).tolist() == [1]
    assert partly_painted(lab, None, 3).tolist() == []
    unsure = np.where(fg > 0, CONFIDENT - 0.01, 0).astype(np.float32)
    assert partly_painted(lab, unsure, 3).tolist() == []  # not confident: whole
    half = fg.copy()
    half[:, :18] = 0  # only the ring's right side is sure: under half of it
    assert partly_painted(lab, half, 3).tolist() == []


def test_a_partly_painted_cell_keeps_its_pixels_and_loses_its_ring_and_gaps():
    lab, _ = _scribble_and_nucleus()
    known = known_area(lab, 5.0, partial=[1])
    np.testing.assert_array_equal(known, known_area(np.where(lab == 1, 0, lab), 5.0) | (lab == 1))
    assert not known[19, 15] and not known[30, 15]  # the ring inside the nucleus: unknown
    assert known[19, 50]  # the whole cell's ring is still background
    # two scribbles in one nucleus: the gap between them is not taught either
    two = np.zeros((40, 40), np.int32)
    two[15:25, 10:17], two[15:25, 22:29] = 1, 2
    assert known_area(two, 5.0)[20, 19] and not known_area(two, 5.0, partial=[1, 2])[20, 19]
    # only partly painted cells: no background at all, only the painted pixels
    np.testing.assert_array_equal(known_area(two, 5.0, partial=[1, 2]), two > 0)


def test_sentence():
    assert partial_sentence([]) == ""
    assert partial_sentence([4]) == (
        "Cell 4 looks partly painted: its surroundings are not used as background; "
        "paint whole cells for the best result."
    )
    assert partial_sentence([3, 5]) == (
        "Cells 3 and 5 look partly painted: their surroundings are not used as background; "
        "paint whole cells for the best result."
    )
    assert partial_sentence(range(1, 9)).startswith("Cells 1, 2, 3, 4, 5 and 3 more look")


@pytest.fixture(scope="module")
def scene():
    """A "Synthetic nuclei" image, six of its cells, the bundled model."""
    image, truth = make_cells((256, 256), style="fluorescence", seed=11)
    ids = np.random.default_rng(0).choice(np.unique(truth)[1:], 6, replace=False)
    return image, truth, np.sort(ids), load_bundled_model()


def test_the_bundled_model_flags_scribbles_and_never_whole_cells(scene):
    image, truth, ids, model = scene
    whole = np.where(np.isin(truth, ids), truth, 0)
    data = prepare_training_data(image, whole, model=model, config=CFG)
    assert data.summary[0]["partial"] == [] and data.partial_note == ""
    scribbles = scribble_cells(truth, ids, seed=0)
    data = prepare_training_data(image, scribbles, model=model, config=CFG)
    flagged = data.summary[0]["partial"]
    assert set(flagged) <= set(ids) and len(flagged) >= len(ids) - 1
    assert data.partial_note == partial_sentence(flagged)
    plane = data.planes[0]
    p = plane.pad
    trained = plane.weights[p:-p, p:-p] > 0
    painted = np.isin(scribbles, flagged)
    assert trained[painted].all()  # the scribbles are still taught as foreground
    rest = np.isin(truth, flagged) & (scribbles == 0)
    assert trained[rest].mean() < 0.05  # the rest of their nuclei is unknown
    # but a ring at the edge of the model's object is (six scribbles alone would teach only
    # foreground): background pixels within BAND of the paint
    near = ndi.distance_transform_edt(~painted) <= BAND
    assert (trained & near & (truth == 0)).sum() > 0.3 * painted.sum()
    # marked complete: the user says every unpainted pixel is background; no flags
    dense = prepare_training_data(image, scribbles, model=model, config=CFG.replace(complete=True))
    assert dense.summary[0]["partial"] == []


def _unpainted_nuclei_kept(model, image, truth, scribbles, ids):
    """Share of the scribbled nuclei's unpainted pixels the model calls foreground."""
    where = np.isin(truth, ids) & (scribbles == 0)
    return float((predict_tiled(model, image)[0][where] < 0.5).mean())


def test_scribbles_no_longer_teach_the_rest_of_their_nuclei_as_background(scene):
    """20 steps on six 20-50% scribbles: the ring rule kept 0.50 of these nuclei, now 0.79."""
    image, truth, ids, model = scene
    scribbles = scribble_cells(truth, ids, seed=0)
    start = _unpainted_nuclei_kept(model, image, truth, scribbles, ids)
    cfg = CFG.replace(steps=20)
    trained = train_model(image, scribbles, model=load_bundled_model(), config=cfg, device="cpu")
    assert start > 0.9
    assert _unpainted_nuclei_kept(trained, image, truth, scribbles, ids) > 0.7


def test_live_data_flags_as_a_full_preparation_does(scene):
    image, truth, ids, model = scene
    scribbles = scribble_cells(truth, ids, seed=0)
    labels = np.where(scribbles == ids[0], scribbles, 0)
    live = LiveData(image, labels, model=model, config=CFG, partial=PartialRule(model))

    def paint(values):
        box = ndi.find_objects((values != labels).astype(int))[0]
        labels[box] = values[box]
        live.update(0, (box[0].start, box[0].stop, box[1].start, box[1].stop), labels[box].copy())

    for i in ids[1:]:
        paint(np.where(scribbles == i, i, labels))
    flagged = live.partial_cells
    assert len(flagged) >= len(ids) - 1
    paint(np.where(truth == flagged[0], truth, labels))  # the user paints the rest of one
    assert live.partial_cells == flagged[1:]
    ref = prepare_training_data(image, labels, model=model, config=CFG)
    got, want = live.data.planes[0], ref.planes[0]
    np.testing.assert_array_equal(got.train_pixels, want.train_pixels)
    np.testing.assert_allclose(got.weights, want.weights, atol=1e-6, rtol=0)
    assert live.data.summary[0]["partial"] == ref.summary[0]["partial"] == flagged[1:]
    assert got.partial.tolist() == want.partial.tolist() == flagged[1:]  # kept off calibration


def test_a_dab_across_a_nucleus_edge_is_flagged_by_its_size():
    """Its 1-px ring is half outside the nucleus (the ring rule says whole); far smaller."""
    lab = np.zeros((60, 60), np.int32)
    lab[9:12, 10:13] = 1  # on the nucleus [10:40, 10:40]'s corner: its row 9 outside
    fg = np.zeros(lab.shape, np.float32)
    fg[10:40, 10:40] = 0.99
    kept = partial_module.SMALL_SHARE
    try:
        partial_module.SMALL_SHARE = 0.0  # the ring rule alone (before): not flagged
        assert partly_painted(lab, fg, 1).tolist() == []
    finally:
        partial_module.SMALL_SHARE = kept
    assert far_smaller(lab, 1, fg)
    assert partly_painted(lab, fg, 1).tolist() == [1]
    whole = np.where(fg > 0, 1, 0).astype(np.int32)  # the whole nucleus painted: not
    assert partly_painted(whole, fg, 3).tolist() == []


def test_tiny_dabs_on_background_are_left_out_and_said(scene):
    """Five stray dabs lit up the background in 20 steps (fg 0.21 -> 0.82): not trained on."""
    image, truth, ids, model = scene
    labels = dab_cells(truth, ids[:3], seed=0)
    far = ndi.distance_transform_edt(truth == 0) > 8
    far[:20], far[-20:], far[:, :20], far[:, -20:] = False, False, False, False
    empty = np.argwhere(far)
    for k, (y, x) in enumerate(empty[[0, len(empty) // 2]]):
        labels[y - 2 : y + 3, x - 1 : x + 2] = 200 + k  # a 15-px mark far from any nucleus
    data = prepare_training_data(image, labels, model=model, config=CFG)
    assert data.summary[0]["left_out"] == [200, 201]
    assert sorted(data.summary[0]["partial"]) == sorted(int(i) for i in ids[:3])
    assert data.summary[0]["cells"] == 3
    plane = data.planes[0]
    p = plane.pad
    weights = plane.weights[p:-p, p:-p]
    assert (weights[labels >= 200] == 0).all()  # neither cell nor background
    assert "Cells 200 and 201 are left out: they are tiny marks where the model sees " in (
        data.partial_note
    )
    only = np.where(labels >= 200, labels, 0)
    with pytest.raises(NapariUnetError, match=r"^Cells 200 and 201 are left out: .* them\.$"):
        prepare_training_data(image, only, model=model, config=CFG)
    # live mode leaves them out too
    live = LiveData(image, labels, model=model, config=CFG, partial=PartialRule(model))
    assert live.left_out == [200, 201] and live.cells == 3
    assert (live.data.planes[0].weights[p:-p, p:-p][labels >= 200] == 0).all()


def test_the_sentence_names_the_image_when_a_set_has_several():
    summary = [
        {"name": "a.tif", "partial": [3], "left_out": []},
        {"name": "b.tif", "partial": [], "left_out": [2, 5]},
    ]
    assert image_sentences(summary) == (
        "In 'a.tif': cell 3 looks partly painted: its surroundings are not used as "
        "background; paint whole cells for the best result. In 'b.tif': cells 2 and 5 are "
        "left out: they are tiny marks where the model sees background; paint whole cells to "
        "train on them."
    )
    assert image_sentences(summary[:1]) == partial_sentence([3])  # one image: no name


def test_the_object_rule_is_calibrated_on_whole_cells_only(scene):
    """A stroke inside a nucleus is no outline: scored, it favoured rules that cut objects."""
    image, truth, ids, model = scene
    others = np.setdiff1d(np.unique(truth)[1:], ids)[:4]
    scribbles = scribble_cells(truth, ids, seed=0)
    labels = np.where(np.isin(truth, others), truth, scribbles)
    data = prepare_training_data(image, labels, model=model, config=CFG)
    flagged = data.summary[0]["partial"]
    assert len(flagged) >= len(ids) - 1
    samples, held_out = calibration_samples(model, data, "cpu")
    scored = {int(i) for s in samples for i in np.unique(s.labels) if i}
    assert not held_out and scored == set(others.tolist()) | (set(ids.tolist()) - set(flagged))
    # strokes only: the rule stays, and the sentence says why
    only = prepare_training_data(image, scribbles, model=model, config=CFG)
    found = calibrate_model(copy.deepcopy(model), only, "cpu", budget=5.0)
    assert found.rule is None and "partly painted" in found.message


def _boxed(truth, ids, margin=2):
    """Each cell painted as a box ``margin`` px past its nucleus (a generous brush)."""
    return box_cells(truth, ids, margin)


def test_paint_past_a_sure_object_is_found_at_the_rim_only():
    lab = np.zeros((60, 80), np.int32)
    lab[10:34, 10:34] = 1  # a box 2 px past the nucleus [12:32, 12:32]
    lab[10:34, 45:69] = 2  # a cell the model knows nothing of
    fg = np.zeros(lab.shape, np.float32)
    fg[12:32, 12:32] = 0.99
    fg[10:34, 45:69] = 0.5
    fg[20:24, 20:24] = 0.0  # sure background deep inside: not at the rim, kept
    over = overhang(lab, fg)
    nucleus = np.zeros(lab.shape, bool)
    nucleus[12:32, 12:32] = True
    np.testing.assert_array_equal(over, (lab == 1) & ~nucleus)
    assert overhang(lab, fg, skip=[1]) is None  # a stray dab is left out whole instead
    assert overhang(lab, None) is None
    unsure = np.where(fg > 0.9, CONFIDENT - 0.01, fg).astype(np.float32)
    assert overhang(lab, unsure) is None  # the model is not sure of the object: no trimming
    wide = np.zeros(lab.shape, np.int32)
    wide[2:42, 2:42] = 1  # paint 10 px past the nucleus: only the rim's RIM px are unknown
    over = overhang(wide, fg)
    assert over is None or not over[2 + RIM + 1 : 42 - RIM - 1, 2 + RIM + 1 : 42 - RIM - 1].any()


def test_over_painted_cells_leave_their_rim_unknown_in_training_and_live_alike(scene):
    image, truth, ids, model = scene
    boxed = _boxed(truth, ids)
    data = prepare_training_data(image, boxed, model=model, config=CFG)
    plane = data.planes[0]
    p = plane.pad
    weights = plane.weights[p:-p, p:-p]
    rim = (boxed > 0) & (truth == 0)  # painted past the nuclei
    assert (weights[rim] == 0).mean() > 0.6  # mostly not taught as cell any more (before: none)
    whole = (boxed > 0) & (truth > 0)
    assert (weights[whole] > 0).mean() > 0.95  # the nuclei are
    around = (ndi.distance_transform_edt(boxed == 0) <= 2) & (boxed == 0)
    assert (weights[around] > 0).all()  # the ring round the paint is still background
    exact = np.where(np.isin(truth, ids), truth, 0)
    w_exact = prepare_training_data(image, exact, model=model, config=CFG).planes[0].weights
    assert (w_exact[p:-p, p:-p][exact > 0] == 0).mean() < 0.02  # exact paint: all taught
    # live mode, cell by cell, ends equal to the full preparation
    labels = np.where(boxed == ids[0], boxed, 0)
    live = LiveData(image, labels, model=model, config=CFG, partial=PartialRule(model))
    for i in ids[1:]:
        box = ndi.find_objects((boxed == i).astype(int))[0]
        labels[box] = np.where(boxed[box] == i, i, labels[box])
        live.update(0, (box[0].start, box[0].stop, box[1].start, box[1].stop), labels[box].copy())
    got = live.data.planes[0]
    np.testing.assert_array_equal(got.train_pixels, plane.train_pixels)
    np.testing.assert_allclose(got.weights, plane.weights, atol=1e-6, rtol=0)


def test_two_over_painted_cells_no_longer_light_up_the_background():
    """20 steps on two cells painted as boxes 2 px past their nuclei: the sample's background
    went to foreground (0.51 of the image against 0.21 of nuclei, AP@0.5 0.03)."""
    from napari_unet import _sample_data

    image, truth = make_cells(_sample_data._SHAPE, style="fluorescence",
                              seed=_sample_data._NUCLEI_SEED)  # fmt: skip
    areas = np.bincount(truth.ravel())
    mid = [i for i in np.unique(truth)[1:] if 150 < areas[i] < 600]
    labels = _boxed(truth, np.random.default_rng(0).choice(mid, 2, replace=False))
    cfg = TrainConfig.fine_tune(seed=0).replace(steps=20, time_limit=None)
    trained = train_model(image, labels, model=load_bundled_model(), config=cfg, device="cpu")
    foreground = float((predict_tiled(trained, image)[1] > 0.5).mean())
    assert foreground < (truth > 0).mean() + 0.1


def test_live_mode_sends_the_area_it_trains_on_as_fine_tune_plans_it(scene):
    """Live mode's overlay drew known_area of the paint without the start model's sure
    background round partly painted cells; now it draws the area live mode sends, which must
    be the one a round would train on."""
    from napari_unet.training.data import planned_area
    from napari_unet.training.live import LiveState, LiveTrainer

    image, truth, ids, model = scene
    boxed = scribble_cells(truth, ids, seed=0)  # partly painted: a sure band round each
    labels = np.where(np.isin(boxed, ids[:-1]), boxed, 0).astype(np.int32)
    trainer = LiveTrainer(copy.deepcopy(model), image, labels, config=CFG, device="cpu")
    events = trainer.run()
    started = next(events)
    assert started.state is LiveState.STARTED and [z for z, _ in started.known] == [0]
    rule = PartialRule(model)
    planned, _ = planned_area(image, labels, None, rule, CFG)
    np.testing.assert_array_equal(started.known[0][1], planned.astype(bool))
    plain = known_area(labels, CFG.sigma, partial=started.partial)  # what the overlay drew
    assert (started.known[0][1] & ~plain).any()  # the sure band round the scribbles
    # one more over-painted cell: the next UPDATED event carries the new area
    last = boxed == ids[-1]
    box = ndi.find_objects(last.astype(int))[0]
    labels[box] = np.where(last[box], ids[-1], labels[box])
    trainer.update(0, (box[0].start, box[0].stop, box[1].start, box[1].stop), labels[box].copy())
    updated = next(e for e in events if e.state is LiveState.UPDATED)
    trainer.stop()
    for _ in events:
        pass
    planned, _ = planned_area(image, labels, None, rule, CFG)
    assert [z for z, _ in updated.known] == [0]
    np.testing.assert_array_equal(updated.known[0][1], planned.astype(bool))
    assert (updated.known[0][1] & ~started.known[0][1]).any()  # the new scribble's area


def test_each_image_of_a_training_set_is_judged_by_its_own_foreground(scene):
    """One PartialRule judged every image of a set with its foreground kept by plane index:
    a second image of the same shape was judged by the first one's predictions (its dabs,
    lying where the first image has nuclei, were trained on as cells)."""
    from napari_unet.training.data import planned_area

    image, truth, _, model = scene
    second, truth2 = np.rot90(image, 2).copy(), np.rot90(truth, 2).copy()
    # dabs on the second image's background, where the first image has nuclei
    on_nuclei = ndi.binary_erosion(truth > 0, iterations=3)
    spots = np.argwhere(on_nuclei & (ndi.distance_transform_edt(truth2 == 0) > 12))
    assert len(spots) > 40
    labels2 = np.zeros(truth2.shape, np.int32)
    for k, (y, x) in enumerate(spots[[0, len(spots) // 2, len(spots) - 1]], start=1):
        labels2[y - 1 : y + 2, x - 1 : x + 2] = k
    for k, cell in enumerate(np.unique(truth2)[1:3], start=4):  # and two whole nuclei
        labels2[truth2 == cell] = k
    together = prepare_training_data([image, second], [truth, labels2], model=model, config=CFG)
    alone = prepare_training_data(second, labels2, model=model, config=CFG)
    _, planned = planned_area(second, labels2, None, PartialRule(model), CFG)
    assert alone.summary[0]["left_out"] == planned["left_out"] == [1, 2, 3]
    assert together.summary[1]["left_out"] == [1, 2, 3]
    assert together.summary[1]["cells"] == alone.summary[0]["cells"] == 2
