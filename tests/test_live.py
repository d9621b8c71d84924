"""Live training (issue 28): incremental data equal to a full preparation, stop, split, preview."""

import threading
import time

import numpy as np
import pytest

from napari_unet import UNet, labels_from_probabilities, predict_tiled
from napari_unet.errors import NapariUnetError
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig, prepare_training_data
from napari_unet.training.live import LiveState, LiveTrainer
from napari_unet.training.live_data import LiveData, influence
from napari_unet.training.provenance import cell_signatures, unedited_copies

CFG = TrainConfig(
    base_channels=4, depth=3, tile_size=92, validation_fraction=0.3, learning_rate=1e-3
)


@pytest.fixture
def scene():
    image, truth = make_cells((120, 150), n_cells=24, diameter=(12.0, 20.0), seed=3)
    return image, truth.astype(np.int32)


def _model():
    import torch

    torch.manual_seed(0)
    return UNet(base_channels=4, depth=3, dropout=0.0)


def _paint(labels, truth, ids):
    for i in ids:
        labels[truth == i] = i


def _assert_same(
    live: LiveData, image, labels, name="image 1", model=None, region=None, machine=None
):
    """The live data equal a full preparation of the current labels (the reference)."""
    ref = prepare_training_data(
        image, labels, [region], model=model or _model(), config=CFG, names=[name],
        machine_cells=None if machine is None else [machine],
    )  # fmt: skip
    got = live.data
    assert len(got.planes) == len(ref.planes)
    for a, b in zip(got.planes, ref.planes):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(a.train_pixels, b.train_pixels)
        assert a.train_box == b.train_box
        np.testing.assert_array_equal(a.annotation, b.annotation)
        np.testing.assert_array_equal(a.region, b.region)
        assert [c.box for c in a.validation] == [c.box for c in b.validation]
        for c, d in zip(a.validation, b.validation):
            np.testing.assert_array_equal(c.labels, d.labels)
            np.testing.assert_array_equal(c.mask, d.mask)
            np.testing.assert_array_equal(c.target, d.target)
            np.testing.assert_allclose(c.weights, d.weights, atol=1e-6, rtol=0)
    assert got.summary == ref.summary


def _box_of(mask):
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _start(scene, n):
    """LiveData on the first ``n`` true cells painted; the image, truth, ids and labels."""
    image, truth = scene
    ids = [i for i in np.unique(truth) if i]
    labels = np.zeros_like(truth)
    _paint(labels, truth, ids[:n])
    return LiveData(image, labels, model=_model(), config=CFG), image, truth, ids, labels


def test_incremental_update_equals_full_preparation(scene):
    live, image, truth, ids, labels = _start(scene, 4)
    _assert_same(live, image, labels)
    partial = 0
    h, w = truth.shape
    for i in ids[4:14]:  # cells one by one (touching ones among them): one box each
        before = labels.copy()
        _paint(labels, truth, [i])
        y0, y1, x0, x1 = _box_of(labels != before)
        box = (max(0, y0 - 2), y1 + 2, max(0, x0 - 2), x1 + 2)  # a little wider, as a brush is
        area = live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
        partial += area != (0, h, 0, w)
        _assert_same(live, image, labels)
    assert partial >= 5  # most strokes re-prepared only part of the plane
    # erase half a cell, then a whole one, then overwrite one cell with another's id
    a, b = ids[5], ids[6]
    ys, xs = np.nonzero(labels == a)
    cut = labels == a
    cut[: int(np.median(ys))] = False
    box = _box_of(labels == a)
    labels[cut] = 0
    live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
    _assert_same(live, image, labels)
    box = _box_of(labels == b)
    labels[labels == b] = 0
    live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
    _assert_same(live, image, labels)
    box = _box_of(labels == ids[7])
    labels[labels == ids[7]] = ids[8]
    live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
    _assert_same(live, image, labels)
    assert live.update(0, box, labels[box[0] : box[1], box[2] : box[3]]) is None  # no change


def test_incremental_update_on_a_stack_adds_and_drops_planes(scene):
    image, truth = scene
    stack, lab_stack = np.stack([image, image[::-1]]), np.stack([truth, truth[::-1]])
    ids = [i for i in np.unique(truth) if i]
    labels = np.zeros_like(lab_stack)
    _paint(labels[0], lab_stack[0], ids[:3])
    live = LiveData(stack, labels, model=_model(), config=CFG)
    for i in ids[:6]:  # plane 1 starts unpainted: the first stroke adds it
        box = _box_of(lab_stack[1] == i)
        labels[1][lab_stack[1] == i] = i
        live.update(1, box, labels[1][box[0] : box[1], box[2] : box[3]].copy())
        _assert_same(live, stack, labels)
    labels[0] = 0  # erase plane 0 entirely: it leaves the training data
    live.update(0, (0, 120, 0, 150), labels[0].copy())
    _assert_same(live, stack, labels)
    assert len(live.data.planes) == 1


def test_influence_covers_the_weight_maps_reach():
    assert influence(CFG) >= 24  # sigma 5, w0 10: the border term reaches ~24 px
    assert influence(CFG.replace(sigma=10.0)) > influence(CFG)


def test_validation_split_unchanged_by_new_cells_elsewhere(scene):
    live, image, truth, ids, labels = _start(scene, 12)
    held = set(live._planes[0].held_out.tolist())
    trained = set(ids[:12]) - held
    assert held and trained
    for i in ids[12:]:
        box = _box_of(truth == i)
        labels[truth == i] = i
        live.update(0, box, labels[box[0] : box[1], box[2] : box[3]].copy())
    now = set(live._planes[0].held_out.tolist())
    assert held <= now  # every old validation cell is still held out
    assert not (trained & now)  # and no old training cell moved to validation
    _assert_same(live, image, labels)


def test_no_annotation_says_one_sentence(scene):
    image, truth = scene
    with pytest.raises(NapariUnetError, match="Paint at least one cell"):
        LiveTrainer(_model(), image, np.zeros_like(truth), config=CFG)
    with pytest.raises(NapariUnetError, match="shape"):
        LiveTrainer(_model(), image, truth[:50], config=CFG)


def _trainer(scene, n=6, **kw):
    image, truth = scene
    ids = [i for i in np.unique(truth) if i]
    labels = np.zeros_like(truth)
    _paint(labels, truth, ids[:n])
    return LiveTrainer(_model(), image, labels, config=CFG, device="cpu", **kw), labels, ids


def test_updates_join_while_training_and_stop_records_the_run(scene):
    live, labels, ids = _trainer(scene)
    _, truth = scene
    gen = live.run()
    events = [next(gen)]
    while events[-1].step < 3:
        events.append(next(gen))
    trainer = live.trainer
    box = _box_of(truth == ids[10])
    labels[truth == ids[10]] = ids[10]
    live.update(0, box, labels[box[0] : box[1], box[2] : box[3]].copy())
    updated = next(gen)
    assert updated.state is LiveState.UPDATED and updated.areas
    assert updated.cells == 7 and updated.step == 3  # joined between two steps, no restart
    assert live.trainer is trainer
    nxt = next(gen)
    assert nxt.state is LiveState.STEP and nxt.step == 4
    live.stop()
    rest = list(gen)
    assert [e.state for e in rest] == [LiveState.STOPPED]
    assert rest[-1].step == 4
    record = live.model.metadata["training"]
    assert record["steps"] == 4 and record["data"][0]["cells"] == 7


def test_stop_from_another_thread_acts_within_one_step(scene):
    live, _, _ = _trainer(scene)
    seen = []

    def drive():
        for event in live.run():
            seen.append(event)

    thread = threading.Thread(target=drive)
    thread.start()
    while not any(e.state is LiveState.STEP and e.step >= 2 for e in seen):
        time.sleep(0.01)
    at_stop = live.trainer.step
    live.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert seen[-1].state is LiveState.STOPPED
    assert seen[-1].step <= at_stop + 1


def test_waits_when_every_cell_is_erased(scene):
    live, labels, _ = _trainer(scene, n=2)
    gen = live.run()
    next(gen)
    live.update(0, (0, labels.shape[0], 0, labels.shape[1]), np.zeros_like(labels))
    assert next(gen).state is LiveState.UPDATED
    waiting = next(gen)
    assert waiting.state is LiveState.WAITING and waiting.cells == 0
    live.stop()
    assert list(gen)[-1].state is LiveState.STOPPED


@pytest.mark.parametrize("box", [(0, 37, 0, 45), (21, 90, 33, 150), (50, 51, 7, 120)])
def test_preview_box_matches_predict_tiled_on_the_same_crop(scene, box):
    live, _, _ = _trainer(scene)
    image, _ = scene
    preview = live.preview(0, box)
    full = predict_tiled(live.model, image, device="cpu", precision="fp32")
    y0, y1, x0, x1 = box
    crop = full[:, y0:y1, x0:x1]
    np.testing.assert_allclose(preview.probabilities, crop, atol=1e-5)
    np.testing.assert_array_equal(preview.labels, labels_from_probabilities(crop, model=live.model))
    assert preview.box == box


def test_previews_are_due_every_n_seconds_and_adapt_to_their_cost(scene):
    live, _, _ = _trainer(scene, preview_every=0.0, preview_share=0.5)
    gen = live.run()
    next(gen)
    live.request_preview(0, (0, 40, 0, 40))
    event = next(gen)
    assert event.state is LiveState.PREVIEW and event.preview.box == (0, 40, 0, 40)
    # a preview that cost 100 s waits 200 s at a share of 1/2, whatever preview_every says
    began, _, step, asked = live._last_preview
    live._last_preview = (time.perf_counter(), 100.0, step - 1, asked)
    assert all(next(gen).state is LiveState.STEP for _ in range(3))
    live._last_preview = (time.perf_counter() - 201.0, 100.0, step - 1, asked)
    assert next(gen).state is LiveState.PREVIEW
    live.stop()
    list(gen)


def test_copied_cells_are_never_held_out_until_edited(scene):
    """As Fine-tune: cells copied from a prediction train but never validate, until edited."""
    image, truth = scene
    ids = [int(i) for i in np.unique(truth) if i]
    labels = truth.copy()
    record = cell_signatures(labels, ids[:16])  # 16 cells copied, the rest painted
    plain = LiveData(image, labels, model=_model(), config=CFG)
    live = LiveData(image, labels, model=_model(), config=CFG, copied=record)
    machine = unedited_copies(labels, record)
    _assert_same(live, image, labels, machine=machine)
    held = live.data.summary[0]["validation_cells"]
    assert held < plain.data.summary[0]["validation_cells"]  # copies were among the held out
    # the user touches up every copy: each becomes a human cell and may be held out again
    for i in ids[:16]:
        box = _box_of(labels == i)
        cell = np.nonzero(labels == i)
        labels[cell[0][0], cell[1][0]] = 0
        live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
    assert len(unedited_copies(labels, record)) == 0
    _assert_same(live, image, labels, machine=unedited_copies(labels, record))
    assert live.data.summary[0]["validation_cells"] > held


def test_region_drawn_during_the_run_joins_the_training_data(scene):
    live, image, truth, ids, labels = _start(scene, 4)
    region = np.zeros(truth.shape, bool)
    region[10:70, 20:110] = True
    known_before = int(live.data.summary[0]["region_pixels"])
    assert live.set_region(region) == (0, *truth.shape[:1], 0, truth.shape[1])
    _assert_same(live, image, labels, region=region)
    assert live.data.summary[0]["region_pixels"] > known_before
    for i in ids[4:8]:  # strokes after the region was drawn
        before = labels.copy()
        _paint(labels, truth, [i])
        box = _box_of(labels != before)
        live.update(0, box, labels[box[0] : box[1], box[2] : box[3]])
        _assert_same(live, image, labels, region=region)
    assert live.set_region(region) is None  # the same region: nothing to do
    live.set_region(None)
    _assert_same(live, image, labels)


def test_region_update_joins_between_two_steps(scene):
    live, labels, ids = _trainer(scene)
    gen = live.run()
    events = [next(gen)]
    while events[-1].step < 2:
        events.append(next(gen))
    pixels = len(live.live.data.planes[0].train_pixels)
    live.update_region(np.ones(labels.shape, bool))  # "completely annotated"
    updated = next(gen)
    assert updated.state is LiveState.UPDATED and updated.step == 2
    assert len(live.live.data.planes[0].train_pixels) > pixels
    live.stop()
    list(gen)


def test_rule_is_calibrated_while_training_and_waits_by_its_cost(scene):
    live, _, _ = _trainer(scene, n=12, calibrate_every=0.0)
    gen = live.run()
    states = [next(gen).state for _ in range(4)]
    # due after the first step (at step 0 the start model's rule stands)
    assert states[:3] == [LiveState.STARTED, LiveState.STEP, LiveState.CALIBRATED]
    assert "calibration" in live.model.metadata["postprocess"]
    # a calibration that cost 100 s waits 1000 s (a tenth of the time), whatever the setting
    ended, _, step = live._last_calibration
    live._last_calibration = (time.perf_counter(), 100.0, step)
    assert all(next(gen).state is LiveState.STEP for _ in range(3))
    live._last_calibration = (time.perf_counter() - 1001.0, 100.0, step)
    assert next(gen).state is LiveState.CALIBRATED
    live.stop()
    list(gen)


def test_no_calibration_when_the_config_says_so(scene):
    image, truth = scene
    model = _model()
    model.metadata["postprocess"] = {"min_confidence": 0.5}
    labels = np.where(np.isin(truth, np.unique(truth)[1:13]), truth, 0)
    cfg = CFG.replace(calibrate=False)
    live = LiveTrainer(model, image, labels, config=cfg, device="cpu", calibrate_every=0.0)
    gen = live.run()
    assert [next(gen).state for _ in range(4)][1:] == [LiveState.STEP] * 3
    live.stop()
    list(gen)
    assert model.metadata["postprocess"] == {"min_confidence": 0.5}


def test_stop_calibrates_a_rule_the_start_model_got_wrong(scene):
    """The bundled model's probabilities are good on nuclei; a rule that drops every
    object under 0.995 confidence is not. Stopping live mode calibrates it on the
    painted cells, as Fine-tune does at its end (fails without: AP stays near 0)."""
    from napari_unet import instance_scores
    from napari_unet.bundled import load_bundled_model

    image, truth = scene
    model = load_bundled_model()
    model.metadata["postprocess"] = {"min_confidence": 0.995, "min_size": 200}
    cfg = TrainConfig.fine_tune(tile_size=92, learning_rate=1e-9, validation_fraction=0.3)
    live = LiveTrainer(model, image, truth, config=cfg, device="cpu", calibrate_every=None)
    probs = predict_tiled(model, image, device="cpu", precision="fp32")
    before = instance_scores(truth, labels_from_probabilities(probs, model=model)).ap50
    gen = live.run()
    while next(gen).step < 1:
        pass
    live.stop()
    events = list(gen)
    assert [e.state for e in events] == [LiveState.STOPPED]  # no calibration while running
    rule = model.metadata["postprocess"]
    assert rule["calibration"]["cells"] > 0
    after = instance_scores(truth, labels_from_probabilities(probs, model=model)).ap50
    assert before < 0.2 and after > 0.8, (before, after, rule)
    assert events[-1].validation.ap50 > 0.8  # the round's score is the calibrated rule's


def test_a_simulated_clock_puts_previews_and_calibrations_at_the_same_steps(scene):
    """With a step clock and a count-bounded calibration, a run repeats exactly under any load."""
    import torch

    image, truth = scene
    ids = [i for i in np.unique(truth) if i]
    runs = []
    for pause in (0.0, 0.02):  # the second run on a "loaded" machine
        labels = np.zeros_like(truth)
        _paint(labels, truth, ids[:12])
        now = [0.0]
        live = LiveTrainer(
            _model(), image, labels, config=CFG.replace(calibration_rules=5), device="cpu",
            preview_every=3.0, calibrate_every=4.0, clock=lambda now=now: now[0],
        )  # fmt: skip
        live.request_preview(0, (0, 60, 0, 60))
        seen = []
        for event in live.run():
            time.sleep(pause)
            seen.append((event.state, event.step))
            if event.state is LiveState.PREVIEW:
                seen.append(event.preview.labels.tobytes())
            if event.state is not LiveState.STEP:
                continue
            now[0] = float(event.step)  # one simulated second a step
            if event.step == 5:
                box = _box_of(truth == ids[12])
                labels[truth == ids[12]] = ids[12]
                live.update(0, box, labels[box[0] : box[1], box[2] : box[3]].copy())
            if event.step == 10:
                live.stop()
        weights = {k: v.clone() for k, v in live.model.state_dict().items()}
        runs.append((seen, weights, live.model.metadata["postprocess"]))
    (seen, weights, rule), (seen2, weights2, rule2) = runs
    assert [s for s in seen if isinstance(s, tuple) and s[0] is LiveState.PREVIEW] == [
        (LiveState.PREVIEW, k) for k in (0, 3, 6, 9)
    ]
    assert [s[1] for s in seen if isinstance(s, tuple) and s[0] is LiveState.CALIBRATED] == [4, 8]
    assert rule["calibration"]["rules_tried"] <= 5
    assert seen == seen2
    assert all(torch.equal(weights[k], weights2[k]) for k in weights)
    strip = lambda r: {k: v for k, v in r.items() if k != "calibration"}  # noqa: E731
    assert strip(rule) == strip(rule2)
