"""Sparse annotations (issue 29): unpainted is unknown, copies are not truth, a guard per round."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.cli import main
from napari_unet.synthetic import make_cells
from napari_unet.training import (
    TrainConfig,
    Trainer,
    Validation,
    compare_to_start,
    known_area,
    new_model,
    prepare_training_data,
    split_cells,
    train_model,
    unedited_copies,
)
from napari_unet.training.known import GAP_REACH, ring_width
from napari_unet.training.provenance import cell_signatures

FAST = dict(base_channels=4, depth=3, tile_size=92, validate_every=5, checkpoint_every=3)
# 7 painted cells of a dense image, fine-tuned briefly from the bundled model (tests stay fast)
PAINTED = 7
SHORT = dict(steps=6, tile_size=220, validation_fraction=0.0)


def _two_squares(gap: int) -> np.ndarray:
    lab = np.zeros((60, 80), np.int32)
    lab[20:40, 10:30] = 1
    lab[20:40, 30 + gap : 50 + gap] = 2
    return lab


def test_known_area_is_cells_ring_and_narrow_gaps():
    lab = _two_squares(gap=6)
    known = known_area(lab, sigma=5.0)
    ring = ring_width(lab, 5.0)
    assert ring == 3  # ceil(5 / 2); the cells are 22 px across, 0.2 of that is 4
    dist = ndi.distance_transform_edt(lab == 0)
    # the ring: exactly the pixels within `ring` of a cell; the gap: d1 + d2 <= 1.5 sigma,
    # the distances measured to each cell by brute force
    d1, d2 = (ndi.distance_transform_edt(lab != k) for k in (1, 2))
    gap = (lab == 0) & (d1 + d2 <= GAP_REACH * 5.0)
    assert gap[20:40, 30:36].all()  # the 6-px gap between the squares is known background
    np.testing.assert_array_equal(known, (lab > 0) | (dist <= ring) | gap)
    # a wider gap is not bridged: its middle is 5 px from both cells (d1 + d2 = 11 > 7.5)
    wide = known_area(_two_squares(gap=10), sigma=5.0)
    assert not wide[30, 34] and wide[30, 31]
    assert GAP_REACH * 5.0 < 10


def test_ring_is_narrower_on_small_cells():
    lab = np.zeros((40, 40), np.int32)
    lab[10:16, 10:16] = 1  # 36 px: about 6.8 px across
    assert ring_width(lab, 5.0) == 1
    assert ring_width(np.zeros((5, 5), np.int32), 5.0) == 3


def test_sparse_rule_trains_only_where_known_and_complete_is_the_old_rule():
    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    ids = np.unique(labels)[1:]
    sparse = np.where(np.isin(labels, ids[:3]), labels, 0)
    model = new_model(TrainConfig(**FAST))
    cfg = TrainConfig(**FAST, steps=1, validation_fraction=0)
    plane = prepare_training_data(image, sparse, model=model, config=cfg).planes[0]
    p = plane.pad
    known = known_area(sparse, cfg.sigma)
    np.testing.assert_array_equal(plane.weights[p:-p, p:-p] > 0, known)
    np.testing.assert_array_equal(plane.train_pixels, np.flatnonzero(known))
    dense = prepare_training_data(
        image, sparse, model=model, config=cfg.replace(complete=True)
    ).planes[0]
    assert (dense.weights[p:-p, p:-p] > 0).all()  # every unpainted pixel taught as background
    # a region adds its pixels; painted cells outside it still count
    region = np.zeros(labels.shape, bool)
    region[:, :20] = True
    both = prepare_training_data(image, sparse, region, model=model, config=cfg).planes[0]
    np.testing.assert_array_equal(both.weights[p:-p, p:-p] > 0, known | region)


def test_copied_cells_are_never_held_out_until_edited():
    lab = make_cells((96, 128), diameter=(10, 18), seed=3)[1]
    ids = np.unique(lab)[1:]
    held = split_cells([lab], ["a:0"], 0.5).validation[0]
    assert len(held) > 0
    record = cell_signatures(lab, held)
    np.testing.assert_array_equal(unedited_copies(lab, record), held)
    kept = split_cells([lab], ["a:0"], 0.5, exclude=[unedited_copies(lab, record)])
    assert len(kept.validation[0]) == 0
    edited = lab.copy()
    first = held[0]
    ys, xs = np.nonzero(edited == first)
    edited[ys[0], xs[0]] = 0  # one pixel erased: the user touched it, so it is human now
    now = unedited_copies(edited, record)
    np.testing.assert_array_equal(now, held[1:])
    again = split_cells([edited], ["a:0"], 0.5, exclude=[now]).validation[0]
    np.testing.assert_array_equal(again, [first])
    assert set(ids) >= set(held)


def test_machine_cells_reach_the_split_through_prepare():
    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    model = new_model(TrainConfig(**FAST))
    cfg = TrainConfig(**FAST, steps=1, validation_fraction=0.5, complete=True)
    data = prepare_training_data(image, labels, model=model, config=cfg)
    assert data.validation_cells > 0
    copied = np.unique(labels)[1:]  # everything came from a prediction
    none = prepare_training_data(image, labels, model=model, config=cfg, machine_cells=[copied])
    assert none.validation_cells == 0 and not none.has_validation


def test_copied_cells_never_calibrate_the_rule():
    """Too few held out: the rule is calibrated on the human cells only, not on copies."""
    from napari_unet.training.calibrate import calibration_samples

    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    model = new_model(TrainConfig(**FAST))
    cfg = TrainConfig(**FAST, steps=1, validation_fraction=0.0, complete=True)
    ids = np.unique(labels)[1:]
    copied = ids[: len(ids) // 2]
    data = prepare_training_data(image, labels, model=model, config=cfg, machine_cells=[copied])
    samples, held_out = calibration_samples(model, data, "cpu")
    assert not held_out and len(samples) == 1
    human = set(ids) - set(copied)
    assert set(np.unique(samples[0].labels)[1:]) == human
    # a copied cell's pixels are not scored either: predicting it is neither right nor wrong
    assert not samples[0].region[np.isin(labels, copied)].any()
    assert samples[0].region[np.isin(labels, list(human))].all()


def _v(ap, iou, n=3):
    return Validation(loss=0.1, mean_iou=iou, ap50=ap, n_true=n, n_pred=n)


def test_compare_to_start():
    assert compare_to_start(_v(0.61, 0.7), _v(0.74, 0.7)).worse
    assert not compare_to_start(_v(0.8, 0.7), _v(0.74, 0.9)).worse
    assert compare_to_start(_v(0.74, 0.60), _v(0.74, 0.70)).worse  # same AP, worse outlines
    assert not compare_to_start(_v(0.74, 0.69), _v(0.74, 0.70)).worse  # within tolerance
    assert not compare_to_start(None, None).worse
    c = compare_to_start(_v(0.61, 0.7), _v(0.74, 0.7))
    assert c.sentence("Round 3") == (
        "Round 3 scored 0.61 against 0.74 for the model it started from "
        "(AP@0.5 on 3 held-out cells); kept the earlier model in use."
    )
    blank = compare_to_start(None, None)
    assert not blank.compared and "no held-out human cell" in blank.sentence("Round 1")


def test_trainer_scores_the_start_model_before_the_first_step():
    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    cfg = TrainConfig(**FAST, steps=2, validation_fraction=0.5)
    model = new_model(cfg)
    data = prepare_training_data(image, labels, model=model, config=cfg)
    expected = Trainer(new_model(cfg), data, cfg, device="cpu").validate()
    trainer = Trainer(model, data, cfg, device="cpu")
    for _ in trainer.run():
        pass
    assert trainer.baseline == expected
    assert model.metadata["training"]["start_validation"]["ap50"] == expected.ap50


@pytest.fixture(scope="module")
def dense_image():
    """The "Synthetic nuclei" sample, 7 of its cells painted, and the bundled model's AP on it."""
    image, labels = make_cells((512, 512), style="fluorescence", seed=2015)
    ids = np.unique(labels)[1:]
    pick = np.random.default_rng(0).choice(ids, PAINTED, replace=False)
    sparse = np.where(np.isin(labels, pick), labels, 0)
    start = _ap(load_bundled_model(), image, labels)
    return image, labels, sparse, start


def _ap(model, image, labels):
    return instance_scores(labels, labels_from_probabilities(predict_tiled(model, image))).ap50


def test_seven_painted_cells_do_not_make_the_bundled_model_worse(dense_image):
    image, labels, sparse, start = dense_image
    assert len(np.unique(labels)) - 1 > 20 * PAINTED  # dense: most cells are unpainted
    cfg = TrainConfig.fine_tune(**SHORT)
    model = train_model(image, sparse, model=load_bundled_model(), config=cfg, device="cpu")
    assert _ap(model, image, labels) >= start


def test_cli_train_on_sparse_labels_does_not_lower_ap(dense_image, tmp_path, capsys):
    image, labels, sparse, start = dense_image
    tifffile.imwrite(tmp_path / "x.tif", image)
    tifffile.imwrite(tmp_path / "sparse_labels.tif", sparse)
    out = tmp_path / "m.safetensors"
    args = ["train", "--image", str(tmp_path / "x.tif"), "--labels"]
    args += [str(tmp_path / "sparse_labels.tif"), "-o", str(out), "--steps", "6"]
    assert main([*args, "--tile", "220", "--device", "cpu"]) == 0
    from napari_unet import load_model

    trained = load_model(out)
    assert trained.metadata["training"]["config"]["complete"] is False
    assert _ap(trained, image, labels) >= start
