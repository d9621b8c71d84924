import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError, UNet, load_model
from napari_unet.augment import AugmentConfig
from napari_unet.synthetic import make_cells
from napari_unet.training import (
    TrainConfig,
    Trainer,
    TrainState,
    new_model,
    prepare_training_data,
    train_model,
    weighted_cross_entropy,
)

# small and fast: depth 3 keeps the context at 20 pixels
FAST = dict(base_channels=4, depth=3, tile_size=92, validate_every=5, checkpoint_every=3)


@pytest.fixture(scope="module")
def cells():
    return make_cells((96, 128), diameter=(10, 18), seed=3)


def _trainer(cells, checkpoint=None, **changes):
    # the synthetic labels are complete ground truth: the paper's dense rule
    cfg = TrainConfig(**{**FAST, "steps": 6, "complete": True, **changes})
    model = new_model(cfg)
    data = prepare_training_data(cells[0], cells[1], model=model, config=cfg)
    return Trainer(model, data, cfg, checkpoint=checkpoint, device="cpu")


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_loss_ignores_unannotated_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (1, 8, 8))
    weights = torch.rand(1, 8, 8) + 0.5
    weights[0, :4] = 0  # unannotated rows
    weighted_cross_entropy(logits, target, weights).backward()
    g1 = logits.grad.clone()
    logits.grad = None
    target2 = target.clone()
    target2[0, :4] = 1 - target2[0, :4]  # change the labels where nothing is annotated
    weighted_cross_entropy(logits, target2, weights).backward()
    assert torch.equal(g1, logits.grad)
    assert g1[0, :, :4].abs().max() == 0 and g1[0, :, 4:].abs().max() > 0


def test_region_outside_has_zero_weight_and_no_samples(cells):
    image, labels = cells
    region = np.zeros(labels.shape, bool)
    region[:, :64] = True
    # complete: the old rule, nothing outside the region counts (not even painted cells)
    cfg = TrainConfig(**FAST, steps=1, validation_fraction=0, complete=True)
    model = new_model(cfg)
    data = prepare_training_data(image, labels, region, model=model, config=cfg)
    plane = data.planes[0]
    p = plane.pad
    w = plane.weights[p:-p, p:-p]
    assert (w[:, 64:] == 0).all() and (w[:, :64] > 0).all()
    cols = plane.train_pixels % labels.shape[1]
    assert cols.max() < 64
    # an unannotated pixel's gradient effect: changing labels outside the region changes nothing
    labels2 = labels.copy()
    labels2[:, 64:] = 0
    data2 = prepare_training_data(image, labels2, region, model=model, config=cfg)
    np.testing.assert_array_equal(data2.planes[0].weights, plane.weights)


def test_short_run_lowers_the_loss(cells):
    trainer = _trainer(
        cells,
        steps=60,
        learning_rate=3e-3,
        validation_fraction=0.25,
        validate_every=30,
        augment=AugmentConfig.identity(),
    )
    before = trainer.validate()  # the held-out cells are fixed, so losses compare
    events, model = _drain(trainer.run())
    assert len([e for e in events if e.state is TrainState.STEP]) == 60
    vals = [e.validation for e in events if e.state is TrainState.VALIDATED]
    assert len(vals) == 2
    # held-out cells (4 here), not a band: a smaller, harder set than the band was
    assert vals[-1].loss < 0.75 * before.loss
    assert vals[-1].ap50 > before.ap50 + 0.2
    assert events[0].state is TrainState.STARTED and events[-1].state is TrainState.DONE
    # the last validation again, scored with the rule calibrated after training: the same
    # probabilities (loss), the objects made by the rule Predict will use
    assert events[-1].validation.loss == pytest.approx(vals[-1].loss, rel=1e-6)
    assert events[-1].validation.n_true == vals[-1].n_true
    assert "calibration" in model.metadata["postprocess"]
    assert model is trainer.model and not model.training


def test_step_budget_time_budget_and_stop(cells):
    events, _ = _drain(_trainer(cells, steps=3).run())
    assert [e.step for e in events if e.state is TrainState.STEP] == [1, 2, 3]
    assert events[-1].fraction == 1.0 and events[-1].remaining == 0

    trainer = _trainer(cells, steps=None, time_limit=1.0)
    events, _ = _drain(trainer.run())
    assert events[-1].state is TrainState.DONE and events[-1].elapsed >= 1.0

    trainer = _trainer(cells, steps=1000)
    gen = trainer.run()
    for event in gen:
        if event.step == 2:
            trainer.stop()
            break
    rest, model = _drain(gen)
    assert rest[-1].state is TrainState.STOPPED and rest[-1].step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_seeded_runs_are_reproducible(cells):
    a = _trainer(cells, steps=4, seed=5, dropout=0.3)
    b = _trainer(cells, steps=4, seed=5, dropout=0.3)
    _drain(a.run())
    _drain(b.run())
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_checkpoint_and_resume_continue_exactly(cells, tmp_path):
    straight = _trainer(cells, steps=6, dropout=0.3, validation_fraction=0)
    _drain(straight.run())

    ckpt = tmp_path / "ckpt.safetensors"
    first = _trainer(cells, checkpoint=ckpt, steps=6, dropout=0.3, validation_fraction=0)
    gen = first.run()
    for event in gen:
        if event.state is TrainState.CHECKPOINT:  # saved after step 3
            break
    assert load_model(ckpt).metadata["training"]["steps"] == 3
    cfg = first.config
    resumed = Trainer.resume(ckpt, first.data, cfg, device="cpu")
    assert resumed.step == 3
    _drain(resumed.run())
    assert resumed.step == 6
    for pa, pb in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)
    final = load_model(ckpt)
    assert final.metadata["training"]["steps"] == 6
    assert final.metadata["training"]["config"]["steps"] == 6


def test_several_images_stacks_and_provenance(cells, tmp_path):
    a_img, a_lab = cells
    pairs = [make_cells((70, 90), diameter=(10, 16), seed=s) for s in (4, 5)]
    b_img, b_lab = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    cfg = TrainConfig(**FAST, steps=2)
    model = train_model([a_img, b_img], [a_lab, b_lab], config=cfg, device="cpu")
    prov = model.metadata["training"]
    assert [d["planes"] for d in prov["data"]] == [1, 2]
    assert prov["steps"] == 2 and prov["config"]["base_channels"] == 4
    assert model.metadata["normalization"]["method"] == "percentile"


@pytest.mark.parametrize(
    "case, message",
    [
        ("shape", "shape"),
        ("float", "whole numbers"),
        ("empty", "No annotated cell"),
        ("region", "excludes every pixel"),
        ("nan", "NaN"),
        ("count", "one label image per image"),
    ],
)
def test_bad_input_is_named(cells, case, message):
    image, labels = cells
    regions = None
    if case == "shape":
        labels = labels[:-1]
    elif case == "float":
        labels = labels + 0.5
    elif case == "empty":
        labels = np.zeros_like(labels)
    elif case == "region":
        regions = np.zeros(labels.shape, bool)
    elif case == "nan":
        image = image.astype(np.float32)
        image[3, 3] = np.nan
    elif case == "count":
        labels = [labels, labels]
    model = UNet(base_channels=4, depth=3)
    # an empty region leaves nothing only when unpainted pixels are background (complete)
    cfg = TrainConfig(**FAST, complete=case == "region")
    with pytest.raises(NapariUnetError, match=message):
        prepare_training_data(image, labels, regions, model=model, config=cfg)


def test_config_round_trip_and_checks():
    cfg = TrainConfig(steps=None, time_limit=30, augment=AugmentConfig(sigma=5.0))
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(NapariUnetError):
        TrainConfig(steps=None, time_limit=None)
    with pytest.raises(NapariUnetError):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(NapariUnetError):
        TrainConfig.from_dict({"bogus": 1})


def test_fine_tuning_defaults_and_origin(cells, tiny_model, tmp_path):
    from napari_unet import save_model
    from napari_unet.training import FINE_TUNE_LEARNING_RATE

    assert TrainConfig.fine_tune().learning_rate == FINE_TUNE_LEARNING_RATE
    assert TrainConfig.fine_tune().learning_rate < TrainConfig().learning_rate
    assert TrainConfig.interactive(fine_tune=False).learning_rate == TrainConfig().learning_rate
    assert TrainConfig.interactive().time_limit == 120
    tiny_model.metadata["name"] = "start"
    save_model(tiny_model, tmp_path / "start.safetensors")
    start = load_model(tmp_path / "start.safetensors")
    ckpt = tmp_path / "ckpt.safetensors"
    cfg = TrainConfig.fine_tune(**{**FAST, "steps": 4, "validation_fraction": 0})
    data = prepare_training_data(*cells, model=start, config=cfg)
    first = Trainer(start, data, cfg, checkpoint=ckpt, device="cpu")
    gen = first.run()
    for event in gen:
        assert event.learning_rate == FINE_TUNE_LEARNING_RATE
        if event.state is TrainState.CHECKPOINT:
            break
    resumed = Trainer.resume(ckpt, first.data, cfg, device="cpu")
    _drain(resumed.run())
    final = load_model(ckpt).metadata
    assert final["training"]["started_from"] == {"model": "start", "steps": None}
    assert final["name"] == "start (fine-tuned)"  # not "fine-tuned, fine-tuned"


def test_provenance_chain_and_no_change_on_failure(cells, tiny_model, tmp_path):
    from napari_unet import save_model

    tiny_model.metadata.update(
        {
            "name": "base",
            "description": "made elsewhere",
            "training_data": {"source": "somewhere"},
            "evaluation": {"ap50": 0.9, "mean_iou": 0.8},
        }
    )
    save_model(tiny_model, tmp_path / "base.safetensors")
    # a trainer that fails to start leaves the start model's metadata alone
    start = load_model(tmp_path / "base.safetensors")
    small = TrainConfig.fine_tune(**{**FAST, "tile_size": 60})
    data = prepare_training_data(*cells, model=start, config=small)
    with pytest.raises(NapariUnetError, match="smaller tile size"):
        Trainer(start, data, TrainConfig.fine_tune(**{**FAST, "tile_size": 140}), device="cpu")
    assert start.metadata["name"] == "base" and "evaluation" in start.metadata
    # fine-tune twice: the second origin carries the first
    cfg = TrainConfig.fine_tune(**{**FAST, "steps": 2, "validation_fraction": 0})
    once = train_model(*cells, model=start, config=cfg, device="cpu")
    assert "description" not in once.metadata and "training_data" not in once.metadata
    twice = train_model(*cells, model=once, config=cfg, device="cpu")
    origin = twice.metadata["training"]["started_from"]
    assert origin["model"] == "base (fine-tuned)" and origin["steps"] == 2
    first = origin["started_from"]
    assert first["model"] == "base" and first["description"] == "made elsewhere"
    assert first["training_data"] == {"source": "somewhere"}
    assert first["evaluation"] == {"ap50": 0.9, "mean_iou": 0.8}
    assert twice.metadata["name"] == "base (fine-tuned)"


def test_resume_of_a_checkpoint_without_an_origin(cells, tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    first = _trainer(cells, checkpoint=ckpt, steps=4, validation_fraction=0)
    for event in first.run():
        if event.state is TrainState.CHECKPOINT:
            break
    old = load_model(ckpt)  # as an older version wrote it: no started_from
    assert old.metadata["training"].pop("started_from") == {"model": "scratch"}
    from napari_unet.modelfile import load_training_state, save_checkpoint

    save_checkpoint(old, ckpt, load_training_state(ckpt), training=old.metadata["training"])
    resumed = Trainer.resume(ckpt, first.data, first.config, device="cpu")
    assert resumed.started_from["model"].startswith("unknown")


def test_preview_shows_the_tiles_training_draws(cells):
    from napari_unet.training import preview_samples

    image, labels = cells
    region = np.zeros(labels.shape, bool)
    region[:, :80] = True
    cfg = TrainConfig(**FAST, steps=1, seed=4, validation_fraction=0.2)
    images, labs, weights = preview_samples(image, labels, region, cfg, n=3)
    assert images.shape == labs.shape == weights.shape == (3, 92, 92)
    assert images.dtype == weights.dtype == np.float32
    model = new_model(cfg)
    data = prepare_training_data(image, labels, region, model=model, config=cfg)
    trainer = Trainer(model, data, cfg, device="cpu")
    h = (trainer.input_size - trainer.output_size) // 2
    centre = np.s_[h : h + trainer.output_size, h : h + trainer.output_size]
    for k in range(3):  # the first tiles of a run with the same settings
        x, target, w = trainer.sampler.sample()
        np.testing.assert_array_equal(x[0], images[k])
        np.testing.assert_array_equal(target, labs[k][centre] > 0)
        np.testing.assert_array_equal(w, weights[k][centre])
    again = preview_samples(image, labels, region, cfg, n=3, seed=4)
    np.testing.assert_array_equal(again[0], images)
    other = preview_samples(image, labels, region, cfg, n=3, seed=5)
    assert not np.array_equal(other[0], images)
