"""The instance rule calibrated on annotated cells: the search, the record, training."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet import labels_from_probabilities
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.postprocess import DEFAULTS
from napari_unet.postprocess.calibration import (
    IOU_THRESHOLDS,
    CalibrationSample,
    calibrate,
    rule_distance,
    switch_margin,
)
from napari_unet.postprocess.describe import describe_model_rule, describe_rule


def _probabilities(fg: np.ndarray) -> np.ndarray:
    return np.stack([1 - fg, fg]).astype(np.float32)


def _rods() -> tuple[np.ndarray, np.ndarray]:
    """A rod colony as a network sees it: a shallow dip where rods touch, ragged edges."""
    from napari_unet.synthetic.colonies import make_scene
    from napari_unet.weightmap import carve_gaps

    _, labels = make_scene("rods", (160, 160), seed=4)
    fg = ndi.gaussian_filter((carve_gaps(labels) > 0).astype(np.float32), 0.8)
    noise = ndi.gaussian_filter(np.random.default_rng(0).normal(0, 0.1, fg.shape), 1.0)
    return _probabilities(np.clip(fg + noise, 0, 1)), labels


def _nuclei() -> tuple[np.ndarray, np.ndarray]:
    """Touching discs: the probability stays high across the contact, only a watershed cuts."""
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.int32)
    n = 0
    for cy in (20, 60, 100):
        for cx in (16, 36, 80, 100):
            n += 1
            labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= 100) & (labels == 0)] = n
    fg = ndi.gaussian_filter((labels > 0).astype(np.float32), 1.0)
    return _probabilities(np.clip(fg, 0, 1)), labels


def _mean_ap(labels, pred) -> float:
    m = [match_instances(labels, pred)]
    return float(np.mean([pooled_ap(m, t) for t in IOU_THRESHOLDS]))


@pytest.mark.parametrize("scene", [_rods, _nuclei])
def test_the_search_finds_the_rule_of_the_shapes(scene):
    prob, labels = scene()
    region = np.ones(labels.shape, bool)
    found = calibrate([CalibrationSample(prob, labels, region)])
    if scene is _rods:  # the distance watershed cuts rods: components or seeds from cores
        assert found.rule["method"] == "components" or found.rule["seed_threshold"] is not None
        assert found.score > found.default_score + 0.3
    else:  # touching round nuclei: only a watershed separates them
        assert found.rule["method"] == "watershed"
    assert found.cells == labels.max() and found.complete
    # the score is what the rule gives through the public function, exactly
    pred = labels_from_probabilities(prob, **found.rule)
    assert found.score == pytest.approx(_mean_ap(labels, pred))
    assert found.ap75 == pytest.approx(pooled_ap([match_instances(labels, pred)], 0.75))
    assert found.score >= found.default_score
    record = found.record()
    assert record["calibration"]["cells"] == labels.max()
    assert {k: record[k] for k in DEFAULTS} == found.rule


def test_objects_outside_the_region_and_other_cells_are_not_scored():
    prob, labels = _nuclei()
    region = np.zeros(labels.shape, bool)
    region[:, :60] = True  # the two left columns of discs are annotated
    counted = np.where(region, labels, 0)
    found = calibrate([CalibrationSample(prob, counted, region)])
    assert found.cells == len(np.unique(counted)) - 1
    assert found.score > 0.9  # the right half's objects are not false positives


def test_the_previous_rule_is_kept_on_a_tie_and_a_time_limit_is_kept():
    prob, labels = _rods()
    region = np.ones(labels.shape, bool)
    best = calibrate([CalibrationSample(prob, labels, region)])
    again = calibrate([CalibrationSample(prob, labels, region)], previous=best.rule)
    assert again.rule == best.rule
    quick = calibrate([CalibrationSample(prob, labels, region)], time_limit=0.0)
    assert not quick.complete and quick.rules_tried <= 2  # the previous rule and the defaults


def test_a_count_of_labellings_finds_the_same_rule_however_slow_the_machine(monkeypatch):
    """A time limit picks a rule that depends on the load; a count of labellings does not."""
    from napari_unet.postprocess import calibration

    prob, labels = _rods()
    samples = [CalibrationSample(prob, labels, np.ones(labels.shape, bool))]
    full = calibrate(samples)
    counted = calibrate(samples, rule_limit=12)
    assert counted.rules_tried == 12 < full.rules_tried
    assert not counted.complete and full.complete
    clock = iter(range(0, 10**6, 10))  # a machine where every labelling takes 10 s
    monkeypatch.setattr(calibration.time, "perf_counter", lambda: float(next(clock)))
    slow = calibrate(samples, rule_limit=12)
    assert slow.rule == counted.rule and slow.score == counted.score
    assert slow.rules_tried == 12
    both = calibrate(samples, rule_limit=12, time_limit=0.0)  # the count replaces the time
    assert both.rule == counted.rule and both.rules_tried == 12
    timed = calibrate(samples, time_limit=30.0)  # the same machine under a time limit
    assert timed.rules_tried < 12


def test_the_rule_in_use_stays_unless_another_beats_it_clearly():
    """The winner of hundreds of rules on a few cells leads by luck: a small lead is ignored."""
    prob, labels = _rods()
    samples = [CalibrationSample(prob, labels, np.ones(labels.shape, bool))]
    best = calibrate(samples)
    close = {**best.rule, "min_confidence": 0.5, "min_size": 1}  # loses one or two rods
    kept = calibrate(samples, previous=close)
    assert kept.kept and kept.rule == {**DEFAULTS, **close}
    assert 0 < best.score - kept.score < switch_margin(kept.cells)
    assert kept.score == pytest.approx(_mean_ap(labels, labels_from_probabilities(prob, **close)))
    said = describe_model_rule(SimpleNamespace(metadata={"postprocess": kept.record()}))
    assert f"kept after a check on {kept.cells} of your held-out cells" in said
    switched = calibrate(samples, previous=DEFAULTS)  # the watershed cuts rods: a clear lead
    margin = switch_margin(switched.cells)
    assert not switched.kept and best.score > switched.default_score + margin
    # it moves to a rule the scores cannot tell from the best, no farther than the best
    assert switched.score >= best.score - margin and switched.score > switched.default_score
    assert rule_distance(switched.rule, DEFAULTS) <= rule_distance(best.rule, DEFAULTS)
    assert switched.score == pytest.approx(
        _mean_ap(labels, labels_from_probabilities(prob, **switched.rule))
    )


def test_a_rule_that_must_change_moves_to_the_nearest_of_the_rules_that_tie():
    """Painted rods: dozens of rules tied within the margin, and the best of them (the first
    found) was often one that merged unseen cells; the rule in use now moves no farther than
    the scores ask."""
    prob, labels = _nuclei()
    fg = np.where(labels > 0, 0.97, prob[1])  # sure inside: every rule up to 0.95 keeps them
    samples = [CalibrationSample(_probabilities(fg), labels, np.ones(labels.shape, bool))]
    best = calibrate(samples)
    assert best.score == pytest.approx(1.0)
    strict = {**best.rule, "min_confidence": 0.99}  # in use: keeps no cell at all
    moved = calibrate(samples, previous=strict)
    assert not moved.kept and moved.score == pytest.approx(1.0)
    # the nearest tie: the same labelling, the confidence lowered to the highest tried (0.9)
    assert {**moved.rule, "min_confidence": 0.99} == {**DEFAULTS, **strict}
    assert moved.rule["min_confidence"] == pytest.approx(0.9)
    assert rule_distance(moved.rule, strict) < rule_distance(best.rule, strict)


def test_rule_distance_counts_grid_steps():
    a = dict(DEFAULTS)
    assert rule_distance(a, a) == 0
    assert rule_distance(a, {**a, "threshold": 0.6}) == pytest.approx(1.0)
    assert rule_distance(a, {**a, "min_confidence": 0.2}) == pytest.approx(2.0)
    assert rule_distance(a, {**a, "h": 1.0}) == pytest.approx(1.0)
    assert rule_distance(a, {**a, "seed_threshold": 0.8}) == pytest.approx(1.0)
    assert rule_distance(a, {**a, "method": "components"}) == pytest.approx(3.0)
    assert rule_distance(a, {**a, "min_size": 33}) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("n, words", [(0, "No annotated cell"), (1, "Only one annotated cell")])
def test_no_cell_or_one_cell_keeps_the_rule_in_one_sentence(n, words):
    prob, labels = _nuclei()
    labels = np.where(labels <= n, labels, 0)
    found = calibrate([CalibrationSample(prob, labels, np.ones(labels.shape, bool))])
    assert found.rule is None and found.record() is None
    assert found.message.startswith(words) and found.message.count(".") == 1


def test_plain_words():
    class M:
        metadata = {}

    assert describe_model_rule(M()) == (
        "objects: foreground above 0.5 split by a distance watershed (h 0.5), "
        "at least 16 px (the default rule)"
    )
    M.metadata = {
        "postprocess": {
            "method": "components", "threshold": 0.55, "min_size": 1,
            "calibration": {"score": 0.812, "cells": 23, "held_out": True},
        }
    }  # fmt: skip
    assert describe_model_rule(M()) == (
        "objects: connected components above 0.55; calibrated on 23 of your held-out cells, AP 0.81"
    )
    rule = {**DEFAULTS, "seed_threshold": 0.8, "min_confidence": 0.7, "min_size": 1}
    assert describe_rule(rule) == (
        "objects: foreground above 0.5 split from confident cores above 0.8 (h 0.5), "
        "unsure ones (mean under 0.7) dropped"
    )


def test_training_calibrates_and_the_model_file_keeps_it(tmp_path):
    from napari_unet import TrainConfig, UNet, load_model, save_model, train_model
    from napari_unet.synthetic import make_cells
    from napari_unet.training import TrainState

    img, lab = make_cells((160, 160), seed=3, diameter=(14, 22))
    model = UNet(base_channels=4, depth=2, dropout=0.0)
    events = []
    cfg = TrainConfig(steps=3, tile_size=60, validation_fraction=0.2)
    trained = train_model(img, lab, model=model, config=cfg, progress=events.append)
    states = [e.state for e in events]
    assert TrainState.CALIBRATING in states
    assert "% of the training budget" in events[states.index(TrainState.CALIBRATING)].message
    record = trained.metadata["postprocess"]["calibration"]
    assert record["cells"] >= 2 and 0 <= record["score"] <= 1
    assert events[-1].message.split(". ", 1)[1].startswith("Objects: ")
    save_model(trained, tmp_path / "m.safetensors")
    assert describe_model_rule(load_model(tmp_path / "m.safetensors")) == (
        describe_model_rule(trained)
    )
    # no calibration asked: the start model's rule stays
    plain = UNet(base_channels=4, depth=2, dropout=0.0)
    plain.metadata["postprocess"] = {"min_confidence": 0.5}
    again = train_model(img, lab, model=plain, config=cfg.replace(calibrate=False))
    assert again.metadata["postprocess"] == {"min_confidence": 0.5}


def test_training_with_a_count_of_labellings_says_so_and_repeats_exactly():
    import torch

    from napari_unet import TrainConfig, UNet, train_model
    from napari_unet.errors import NapariUnetError
    from napari_unet.synthetic import make_cells
    from napari_unet.training import TrainState

    with pytest.raises(NapariUnetError, match="calibration_rules must be at least 1"):
        TrainConfig(calibration_rules=0)
    img, lab = make_cells((160, 160), seed=3, diameter=(14, 22))
    cfg = TrainConfig(steps=3, tile_size=60, validation_fraction=0.2, calibration_rules=4)
    runs = []
    for _ in range(2):
        events = []
        torch.manual_seed(0)
        model = UNet(base_channels=4, depth=2, dropout=0.0)
        runs.append(train_model(img, lab, model=model, config=cfg, progress=events.append))
        calibrating = next(e for e in events if e.state is TrainState.CALIBRATING)
        assert "(at most 4 labellings)" in calibrating.message
    first, second = (m.metadata["postprocess"] for m in runs)
    assert first["calibration"]["rules_tried"] == 4
    assert {k: v for k, v in first.items() if k != "calibration"} == {
        k: v for k, v in second.items() if k != "calibration"
    }
    assert runs[0].metadata["training"]["config"]["calibration_rules"] == 4


def test_training_on_one_cell_keeps_the_rule_and_says_so():
    from napari_unet import TrainConfig, UNet, train_model

    image = np.zeros((96, 96), np.float32)
    labels = np.zeros((96, 96), np.int32)
    image[30:50, 30:50], labels[30:50, 30:50] = 1.0, 1
    model = UNet(base_channels=4, depth=2, dropout=0.0)
    model.metadata["postprocess"] = {"method": "components"}
    events = []
    cfg = TrainConfig(steps=2, tile_size=60)
    painted = labels.copy()
    trained = train_model(image, labels, model=model, config=cfg, progress=events.append)
    assert trained.metadata["postprocess"] == {"method": "components"}
    np.testing.assert_array_equal(labels, painted)  # what the user painted is untouched
    assert events[-1].message.endswith(
        "Only one annotated cell to calibrate the object rule on; the previous rule is kept."
    )


def test_the_guard_compares_a_calibrated_end_with_a_calibrated_start(monkeypatch):
    """The end's rule is fitted to the held-out cells; the start's is fitted to them too."""
    import copy

    from napari_unet import TrainConfig, UNet
    from napari_unet.synthetic import make_cells
    from napari_unet.training import Trainer, prepare_training_data
    from napari_unet.training import trainer as trainer_module
    from napari_unet.training.calibrate import MIN_HELD_OUT, validation_probabilities
    from napari_unet.training.validation import start_score_calibrated, validate

    img, lab = make_cells((256, 256), seed=3, diameter=(14, 22))
    model = UNet(base_channels=4, depth=2, dropout=0.0)
    cfg = TrainConfig(steps=3, tile_size=60, validation_fraction=0.3, time_limit=None)
    data = prepare_training_data(img, lab, model=model, config=cfg)
    assert data.validation_cells >= MIN_HELD_OUT
    start = copy.deepcopy(model)
    calls = []

    def spy(*args):
        calls.append(args)
        return start_score_calibrated(*args[:4], None, None)  # the whole search: no timing

    monkeypatch.setattr(trainer_module, "start_score_calibrated", spy)
    trainer = Trainer(model, data, cfg, device="cpu")
    for _ in trainer.run():
        pass
    assert len(calls) == 1
    _, probs, min_size, previous, budget, rules = calls[0]
    assert rules is None  # a share of the time by default, not a count
    # the start model's own predictions of the held-out cells, from before the first step
    reference = validation_probabilities(start, data, "cpu")
    assert all(np.allclose(p, r, atol=1e-5) for p, r in zip(probs, reference))
    assert budget > 0 and min_size == cfg.min_size
    # the baseline is the start model scored with the rule calibrated on those cells
    best = start_score_calibrated(data, reference, min_size, previous, None)
    plain = validate(start, data, cfg.min_size, "cpu")
    assert trainer.baseline == best and best.n_true == plain.n_true


def test_the_start_keeps_its_plain_score_without_calibration():
    from napari_unet import TrainConfig, UNet
    from napari_unet.synthetic import make_cells
    from napari_unet.training import Trainer, prepare_training_data

    img, lab = make_cells((256, 256), seed=3, diameter=(14, 22))
    model = UNet(base_channels=4, depth=2, dropout=0.0)
    cfg = TrainConfig(steps=2, tile_size=60, validation_fraction=0.3, calibrate=False)
    data = prepare_training_data(img, lab, model=model, config=cfg)
    trainer = Trainer(model, data, cfg, device="cpu")
    expected = trainer.validate()
    for _ in trainer.run():
        pass
    assert trainer.baseline == expected


def test_few_cells_calibrate_on_windows_around_them_not_the_whole_image(monkeypatch):
    """Under ten held-out cells, every painted cell calibrates: only around them is predicted."""
    from napari_unet import TrainConfig, load_bundled_model
    from napari_unet.synthetic import make_cells
    from napari_unet.training import calibrate as cal
    from napari_unet.training import prepare_training_data

    img, lab = make_cells((384, 384), seed=5, diameter=(14, 22))
    few = np.isin(lab, [i for i in np.unique(lab)[1:] if (lab == i).any()][:4])
    painted = np.where(few, lab, 0)  # four cells, nothing else: a sparse annotation
    model = load_bundled_model()  # probabilities worth calibrating (a random net's tie)
    data = prepare_training_data(img, painted, model=model, config=TrainConfig(tile_size=60))
    assert data.validation_cells < cal.MIN_HELD_OUT
    boxes = []
    real = cal._predict_window
    monkeypatch.setattr(
        cal, "_predict_window", lambda m, p, box, d: boxes.append(box) or real(m, p, box, d)
    )
    samples, held_out = cal.calibration_samples(model, data, "cpu")
    assert not held_out and boxes
    area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes)
    assert area < 0.5 * 384 * 384, boxes
    # the reference: the whole plane predicted, as before; the same rule comes out
    plane = data.planes[0]
    whole = [
        CalibrationSample(
            real(model, plane, (0, 384, 0, 384), "cpu"), plane.annotation, plane.region
        )
    ]
    assert sum(int((s.labels > 0).any()) for s in samples) >= 1
    found, reference = calibrate(samples, time_limit=None), calibrate(whole, time_limit=None)
    # the search has near-ties, so the rules may differ; what they achieve may not
    assert found.cells == reference.cells == 4, (found.message, reference.message)
    assert found.score == pytest.approx(reference.score, abs=0.02), (found, reference)
