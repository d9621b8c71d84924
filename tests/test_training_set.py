"""A training set of several images and stacks, its stable validation split, and its files."""

import numpy as np
import pytest
import tifffile

from napari_unet import NapariUnetError
from napari_unet.cli import main
from napari_unet.layout import channel_count, check_same_channels
from napari_unet.synthetic import make_cells
from napari_unet.training import (
    TrainConfig,
    annotated_plane_count,
    find_pairs,
    new_model,
    prepare_training_data,
    split_cells,
    train_model,
)
from napari_unet.training.split import validation_area

FAST = dict(base_channels=4, depth=3, tile_size=92, validate_every=5)


def _held_out(data):
    """The ids of held-out cells, per plane."""
    return [set(np.unique(c.labels[c.labels > 0])) for p in data.planes for c in p.validation]


def _grow(labels, n, seed=0):
    """The first ``n`` cells of ``labels`` (in a random but fixed order), others unpainted."""
    ids = np.unique(labels[labels > 0])
    order = np.random.default_rng(seed).permutation(ids)
    return np.where(np.isin(labels, order[:n]), labels, 0)


@pytest.fixture(scope="module")
def many():
    return make_cells((256, 256), diameter=(10, 16), seed=11)


def test_validation_cells_stay_put_as_annotations_grow(many):
    _, labels = many
    n_total = len(np.unique(labels)) - 1
    assert n_total > 60
    previous: set = set()
    for n in (20, 40, n_total):
        grown = _grow(labels, n)
        split = split_cells([grown], ["cells.tif:0"], 0.2)
        held = set(split.validation[0].tolist())
        assert previous <= held, "a held-out cell went back to training"
        # new cells split by the same rule: the held-out set is what the rule says for them
        assert held == set(split_cells([labels], ["cells.tif:0"], 0.2).validation[0]) & set(
            np.unique(grown)
        )
        previous = held
    assert 0.08 < len(previous) / n_total < 0.35  # about the fraction


def test_split_depends_on_the_name_and_keeps_a_training_cell(many):
    _, labels = many
    a = split_cells([labels], ["a.tif:0"], 0.2).validation[0]
    b = split_cells([labels], ["b.tif:0"], 0.2).validation[0]
    assert not np.array_equal(a, b)
    assert split_cells([labels], ["a.tif:0"], 0.0).n_validation == 0
    one = _grow(labels, 1)
    assert split_cells([one], ["a.tif:0"], 0.9999).n_validation == 0  # nothing left to train


def test_touching_up_an_outline_keeps_a_cells_side(many):
    _, labels = many
    before = split_cells([labels], ["cells.tif:0"], 0.2)
    edited = labels.copy()
    for cell in np.unique(labels)[1:]:  # every cell grows by a 2-pixel stroke at its side
        ys, xs = np.nonzero(labels == cell)
        edited[ys.min() : ys.min() + 2, xs.min() : xs.max()] = cell
    after = split_cells([edited], ["cells.tif:0"], 0.2)
    assert np.array_equal(before.validation[0], after.validation[0])


def test_no_cell_trained_on_is_scored_later(many):
    """Once a set has a held-out cell, no cell a round trained on is ever held out later.

    (Before that, when every cell of a tiny set would be held out, none is, and those
    first cells are trained on; a later set may then hold one of them out.)
    """
    _, labels = many
    for seed in range(8):
        ever_trained: set = set()
        validated = False
        for n in range(1, 40):
            grown = _grow(labels, n, seed=seed)
            split = split_cells([grown], ["cells.tif:0"], 0.2)
            held = set(split.validation[0].tolist())
            if validated:
                assert not held & ever_trained, "a cell trained on earlier is now scored"
            validated |= bool(held)
            ever_trained |= (set(np.unique(grown)) - {0}) - held


def test_validation_area_is_the_nearest_cell_partition():
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 5:15] = 1
    labels[10:20, 40:50] = 2
    region = np.ones(labels.shape, bool)
    area = validation_area(labels, region, np.array([2]))
    assert area[15, 45] and area[15, 55] and area[15, 30]  # the cell and background near it
    assert not area[15, 10] and not area[15, 20]  # the other cell and its surroundings
    assert not (area & (labels == 1)).any()


def test_three_images_of_different_sizes_and_dtypes_train_and_validate():
    shapes = [(96, 128), (140, 100), (120, 120)]
    images, labels = [], []
    for i, shape in enumerate(shapes):
        img, lab = make_cells(shape, diameter=(10, 16), seed=20 + i)
        images.append(img)
        labels.append(lab)
    images[0] = (images[0] * 255).astype(np.uint8)
    images[1] = (images[1] * 4000).astype(np.uint16)
    images[2] = images[2].astype(np.float32)
    cfg = TrainConfig(**FAST, steps=10, validation_fraction=0.2)
    model = new_model(cfg)
    names = ["a.tif", "b.tif", "c.tif"]
    data = prepare_training_data(images, labels, model=model, config=cfg, names=names)
    assert [s["shape"] for s in data.summary] == [list(s) for s in shapes]
    assert data.has_validation and data.validation_cells >= 3
    held = [s["validation_cells"] for s in data.summary]
    assert sum(1 for h in held if h) >= 2  # validation comes from several images
    # training pixels of every image are sampled
    assert len(data.planes) == 3 and all(len(p.train_pixels) for p in data.planes)
    events = []
    train_model(images, labels, model=model, config=cfg, names=names, progress=events.append)
    v = events[-1].validation
    assert v is not None and v.n_true == data.validation_cells


def test_only_annotated_planes_of_a_stack_count():
    pairs = [make_cells((96, 96), diameter=(10, 16), seed=s) for s in range(6)]
    img, lab = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    painted = np.zeros_like(lab)
    painted[1], painted[4] = lab[1], lab[4]
    assert annotated_plane_count(painted) == (2, 6)
    cfg = TrainConfig(**FAST, steps=1, validation_fraction=0)
    model = new_model(cfg)
    data = prepare_training_data(img, painted, model=model, config=cfg)
    assert data.summary[0]["annotated_planes"] == 2 and len(data.planes) == 2
    # an unpainted plane is not "a plane without cells": it carries no loss at all
    region = np.zeros(lab.shape, bool)
    region[2] = True  # ...unless the user marks it as annotated (a plane truly empty)
    assert annotated_plane_count(painted, region) == (1, 6)
    region |= (painted > 0).any((1, 2))[:, None, None]
    data = prepare_training_data(img, painted, region, model=model, config=cfg)
    assert data.summary[0]["annotated_planes"] == 3


def test_different_channel_counts_are_refused():
    grey, rgb = np.zeros((64, 64)), np.zeros((64, 64, 3))
    assert channel_count(grey) == 1 and channel_count(rgb) == 3
    check_same_channels([1, 1], ["a", "b"])
    with pytest.raises(NapariUnetError, match="'b.tif' has 3 channel"):
        check_same_channels([1, 3], ["a.tif", "b.tif"])


def _write_set(folder, names, shapes=None):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        img, lab = make_cells((shapes or {}).get(name, (96, 96)), diameter=(10, 16), seed=i)
        tifffile.imwrite(folder / f"{name}.tif", (img * 4000).astype(np.uint16))
        tifffile.imwrite(folder / f"{name}_labels.tif", lab.astype(np.uint16))


def test_find_pairs_pairs_and_lists_the_unpaired(tmp_path):
    _write_set(tmp_path / "d", ["a", "b"])
    np.save(tmp_path / "d" / "notes.npy", np.zeros(1))  # not an image: ignored
    tifffile.imwrite(tmp_path / "d" / "a_region.tif", np.ones((96, 96), np.uint8))
    tifffile.imwrite(tmp_path / "d" / "b_probabilities.tif", np.zeros((2, 96, 96), np.float32))
    files = find_pairs(tmp_path / "d")
    assert files.names == ["a", "b"]
    assert [p.name for p in files.labels] == ["a_labels.tif", "b_labels.tif"]
    assert files.regions[0].name == "a_region.tif" and files.regions[1] is None
    tifffile.imwrite(tmp_path / "d" / "c.tif", np.zeros((9, 9), np.uint8))
    tifffile.imwrite(tmp_path / "d" / "x_labels.tif", np.zeros((9, 9), np.uint8))
    with pytest.raises(NapariUnetError, match=r"no partner: c\.tif, x_labels\.tif"):
        find_pairs(tmp_path / "d")
    with pytest.raises(NapariUnetError, match="does not exist"):
        find_pairs(tmp_path / "missing")


def _train_args(out):
    return ["-o", str(out), "--steps", "2", "--from", "scratch", "--width", "4", "--tile", "204"]


def test_cli_trains_on_a_folder_and_on_several_images(tmp_path, capsys):
    _write_set(tmp_path / "d", ["a", "b", "c"], {"b": (120, 80)})
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(tmp_path / "d"), *_train_args(out)]) == 0
    from napari_unet import load_model

    summary = load_model(out).metadata["training"]
    assert summary["steps"] == 2
    d = tmp_path / "d"
    out2 = tmp_path / "m2.safetensors"
    rc = main(
        ["train", "--image", str(d / "a.tif"), str(d / "b.tif"),
         "--labels", str(d / "a_labels.tif"), str(d / "b_labels.tif"), *_train_args(out2)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert out2.exists()


def test_cli_bad_training_sets_are_one_sentence(tmp_path, capsys):
    _write_set(tmp_path / "d", ["a"])
    tifffile.imwrite(tmp_path / "d" / "lonely.tif", np.zeros((9, 9), np.uint8))
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(tmp_path / "d"), *_train_args(out)]) == 1
    err = capsys.readouterr().err
    assert "lonely.tif" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # an RGB image among grey ones
    d = tmp_path / "d"
    (d / "lonely.tif").unlink()
    tifffile.imwrite(d / "rgb.tif", np.zeros((96, 96, 3), np.uint8))
    tifffile.imwrite(d / "rgb_labels.tif", np.zeros((96, 96), np.uint8))
    assert main(["train", "--data", str(d), *_train_args(out)]) == 1
    err = capsys.readouterr().err
    assert "'rgb.tif' has 3 channel(s)" in err and not out.exists()
    assert main(["train", "--data", str(d), "--labels", "x.tif", *_train_args(out)]) == 1
    assert "come from the folder" in capsys.readouterr().err


def test_validation_takes_a_bounded_share_of_a_time_budget(monkeypatch):
    import time as clock

    from napari_unet.training import Trainer
    from napari_unet.training import trainer as trainer_module

    img, lab = make_cells((96, 128), diameter=(10, 16), seed=3)
    cfg = TrainConfig(**{**FAST, "validate_every": 1}, steps=None, time_limit=3.0)
    model = new_model(cfg)
    data = prepare_training_data(img, lab, model=model, config=cfg)
    slow = []

    def slow_validate(self, cached=None):
        slow.append(clock.perf_counter())
        clock.sleep(0.2)  # a validation as costly as many steps
        return None

    monkeypatch.setattr(trainer_module.Trainer, "validate", slow_validate)
    trainer = Trainer(model, data, cfg, device="cpu")
    steps = sum(1 for e in trainer.run() if e.state.name == "STEP")
    # every step was due; validations ran only while they stayed under 10% of the time
    assert steps > len(slow) * 3
    assert 0.2 * len(slow) <= 3.0 * (trainer_module.VALIDATION_SHARE + 0.1) + 0.2
