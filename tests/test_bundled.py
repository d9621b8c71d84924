import json
import struct

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_unet import (
    NapariUnetError,
    instance_scores,
    labels_from_probabilities,
    match_instances,
    predict_tiled,
)
from napari_unet.bundled import bundled_model_path, load_bundled_model
from napari_unet.metrics import iou_matrix, pooled_ap
from napari_unet.segment import recommended_postprocess, rescale_for_diameter, segment
from napari_unet.synthetic import REALISM_CASES, SyntheticConfig, make_cells
from napari_unet.training import TrainConfig


@pytest.fixture(scope="module")
def model():
    return load_bundled_model()


def test_file_is_safetensors_and_small():
    path = bundled_model_path()
    raw = path.read_bytes()
    assert len(raw) <= 10 * 2**20
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: header length, then a JSON header
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"]["format"] == "napari-unet"
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")


def test_each_call_gives_a_fresh_model(model):
    other = load_bundled_model()
    assert other is not model
    with torch.no_grad():
        other.head.bias.add_(1.0)  # fine-tuning one copy leaves the others alone
    assert not torch.equal(other.head.bias, model.head.bias)
    assert torch.equal(load_bundled_model().head.bias, model.head.bias)
    assert not model.training


def test_metadata_records_provenance(model):
    meta = model.metadata
    assert meta["licence"] == "BSD-3-Clause"
    data = meta["training_data"]
    assert data["source"].startswith("napari_unet.synthetic")
    # every training setting rebuilds, so the data can be drawn again
    configs = [SyntheticConfig.from_dict(d) for d in data["settings"]]
    assert {c.style for c in configs} == {"fluorescence"}
    assert {c.dtype for c in configs} == {"uint8", "uint16"}
    assert "generate(seed=" in data["seeds"]
    assert meta["training"]["recipe"] == "scripts/train_bundled.py"
    assert meta["object_diameter"] == {"min": 8.0, "max": 40.0}
    assert meta["normalization"]["method"] == "percentile"
    assert meta["evaluation"]["ap50"] > 0.8


def test_unknown_bundled_model():
    with pytest.raises(NapariUnetError):
        load_bundled_model("mitochondria")


def test_segments_the_nuclei_sample_zero_shot(model):
    from napari_unet._sample_data import nuclei_sample

    (image, _, _), (truth, _, _) = nuclei_sample()
    pred = labels_from_probabilities(predict_tiled(model, image, device="cpu"))
    scores = instance_scores(truth, pred)
    assert scores.ap50 >= 0.85  # measured 0.9x, see docs/model-card.md
    assert scores.mean_iou >= 0.8


def test_dim_8_bit_image(model):
    image, truth = make_cells(
        (256, 256), diameter=(10, 20), dtype=np.uint8, photons=(10, 20), seed=7
    )
    pred = labels_from_probabilities(predict_tiled(model, image, device="cpu"))
    assert instance_scores(truth, pred).ap50 >= 0.7


def test_rescale_brings_large_nuclei_into_range(model):
    image, truth = make_cells((320, 320), diameter=(70, 90), n_cells=8, touching=0.3, seed=5)
    factor = rescale_for_diameter(model, 80)
    assert factor == pytest.approx((8 * 40) ** 0.5 / 80)  # to the middle of 8-40 px
    scaled = segment(model, image, rescale=factor, device="cpu")
    assert scaled.labels.shape == truth.shape
    assert instance_scores(truth, scaled.labels).ap50 >= 0.8


@pytest.mark.parametrize("kind", ["uint16", "float32", "saturated uint8"])
def test_dtypes_and_saturation(model, kind):
    """The same nuclei as 16-bit, float, or an 8-bit export whose bright half clips.

    Pooled over three images: one image of 50 nuclei swings AP by 0.1 (the clipped one
    of seed 11 scores 0.75 with this model, 0.74 with the generator-1 model).
    """
    found = []
    for seed in (11, 12, 13):
        image, truth = make_cells((256, 256), diameter=(10, 24), dtype=np.uint16, seed=seed)
        if kind == "float32":
            image = image.astype(np.float32) / 65535.0
        elif kind == "saturated uint8":
            cut = np.percentile(image[truth > 0], 50)  # half of the nuclear pixels at 255
            image = (np.clip(image / cut, 0, 1) * 255).astype(np.uint8)
        found.append(match_instances(truth, _labels(model, image)))
    assert pooled_ap(found, 0.5) >= (0.8 if kind == "saturated uint8" else 0.9)


def test_cli_uses_the_bundled_model_by_default(tmp_path, capsys):
    import tifffile

    from napari_unet.cli import main

    image, truth = make_cells((192, 192), diameter=(10, 20), seed=13)
    tifffile.imwrite(tmp_path / "img.tif", image)
    rc = main(["predict", str(tmp_path / "img.tif"), "-o", str(tmp_path / "lab.tif")])
    assert rc == 0, capsys.readouterr().err
    assert instance_scores(truth, tifffile.imread(tmp_path / "lab.tif")).ap50 >= 0.8


def test_cli_train_starts_from_the_bundled_model(tmp_path, capsys):
    import tifffile

    from napari_unet import load_model
    from napari_unet.cli import main
    from napari_unet.training import FINE_TUNE_LEARNING_RATE

    image, truth = make_cells((96, 128), diameter=(10, 18), seed=3)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lbl.tif", truth)
    out = tmp_path / "tuned.safetensors"
    args = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lbl.tif")]
    assert main([*args, "-o", str(out), "--steps", "2", "--tile", "204"]) == 0
    tuned = load_model(out)
    origin = tuned.metadata["training"]["started_from"]
    assert origin["model"] == "napari-unet nuclei"
    assert origin["evaluation"]["ap50"] > 0.8
    assert tuned.metadata["name"] == "napari-unet nuclei (fine-tuned)"
    assert tuned.metadata["training"]["config"]["learning_rate"] == FINE_TUNE_LEARNING_RATE
    assert "evaluation" not in tuned.metadata  # the bundled scores are not this model's


def _recipe():
    """scripts/train_bundled.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "train_bundled.py"
    spec = importlib.util.spec_from_file_location("train_bundled", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def test_recipe_still_gives_the_shipped_settings(model):
    """Changing a library default must not silently change the recipe (it pins them all)."""
    recipe = _recipe()
    stored = model.metadata["training"]
    # a record from before issues 24, 26 and 29 has no "calibrate", "precision" or
    # "complete": it reads as what that run did (no calibration, float32, dense rule);
    # "calibration_rules" (issue 28) came later still, and bounds a calibration it never ran
    later = {"calibrate", "precision", "complete", "calibration_rules"}
    pinned = recipe.training_config(0, stored["steps"]).to_dict()
    assert pinned == TrainConfig.from_dict(stored["config"]).to_dict()
    assert set(pinned) - set(stored["config"]) == later
    assert {k: v for k, v in pinned.items() if k not in later} == stored["config"]
    assert [c.to_dict() for c in recipe.SYNTHETIC] == model.metadata["training_data"]["settings"]
    # the second stage (issue 25), where the shipped weights went through it: its settings
    # and modes are pinned the same way, and its start file is named by sha256 and commit
    second = stored.get("second_stage")
    if second is not None:
        assert recipe.stage2_config(second["seed"], second["steps"]).to_dict() == second["config"]
        assert second["modes"] == recipe.STAGE2_MODES
        stage2 = recipe.with_modes(recipe.SYNTHETIC, recipe.STAGE2_MODES)
        assert [c.to_dict() for c in stage2] == second["settings"]
        assert len(second["start_file"]["sha256"]) == 64 and second["start_file"]["git_commit"]
        # the shipped weights are stage 2 blended with stage 1 at the recipe's share
        assert second.get("blend", 1.0) == recipe.STAGE2_BLEND


def test_recipe_blend_is_exact_at_its_ends_and_linear_between():
    recipe = _recipe()
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=gen), "b": torch.randn(4, generator=gen)}
    b = {k: v + torch.randn(v.shape, generator=gen) for k, v in a.items()}
    for k in a:
        assert torch.equal(recipe.blend_weights(a, b, 0.0)[k], a[k])
        assert torch.equal(recipe.blend_weights(a, b, 1.0)[k], b[k])
        mid = recipe.blend_weights(a, b, 0.25)[k]
        torch.testing.assert_close(mid, 0.75 * a[k] + 0.25 * b[k], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="different tensors"):
        recipe.blend_weights(a, {"w": b["w"]}, 0.5)


# ------------------------------------------------------------------ realism (issue 16)
# Cases where the generator-1 model fell short. Each threshold names the regression it
# catches and is a share of the objects pooled over several images (one image of 20-50
# nuclei swings a score by a few objects), set by what a user would call that regression,
# not between two models' scores: a retrained model is judged, not fitted. The images
# (settings and seeds) are napari_unet.synthetic.REALISM_CASES, which the benchmarks
# share. Measured with seeds 0-7 (docs/model-card.md), as errors / nuclei: the current
# model, the generator-1 one.

EDGE_MAX_RATIO = 1.05  # median area ratio 1.005; 1.07
# Isolated nuclei with a clear edge are the easy case: more than 1 in 25 missed, extra or
# outlined worse than IoU 0.75 is a regression of the outlines (3/190; 12/190).
EDGE_OFF75 = 0.04
# Dim nuclei next to bright ones: losing more than 1 in 10 of them is the regression the
# case was added for (8 images: 1/36; 6/36, pooled as few are dim per image).
DIM_MISSED = 0.10
# Lobed nuclei cut at a lobe show as extra objects: more than 3 in 20 is cutting (17/179;
# 39/179); losing 1 in 20 of them whole is a regression too (5/179; 10/179).
LOBED_EXTRA, LOBED_MISSED = 0.15, 0.05
# Debris (specks, fibres: about 40 per image) taken for nuclei: more than one false object
# per 4 nuclei is the regression (38/232; 129/232); and nuclei are not to be lost among the
# debris to achieve it (0/232; 5/232).
DEBRIS_FALSE, DEBRIS_MISSED = 0.25, 0.03


def _labels(model, image):
    """Labels as segment() makes them, with the model's recommended post-processing."""
    prob = predict_tiled(model, image, device="cpu")
    return labels_from_probabilities(prob, **recommended_postprocess(model))


def _matched(model, name):
    """The realism case's images (napari_unet.synthetic.REALISM_CASES) matched to the labels."""
    return [match_instances(t, _labels(model, i)) for i, t in REALISM_CASES[name].images()]


def _counts(found, threshold=0.5):
    """Pooled (nuclei, missed, extra) at an IoU threshold."""
    n_true = sum(m.n_true for m in found)
    tp = sum(m.tp(threshold) for m in found)
    return n_true, n_true - tp, sum(m.n_pred for m in found) - tp


def test_edges_where_a_biologist_draws_them(model):
    """Isolated nuclei with realistic edges: no systematic size bias (was 1.074)."""
    found = _matched(model, "edges")
    ratio = np.median(np.concatenate([m.area_ratio for m in found]))
    # a 5% area bias is 2.5% of the diameter: half a pixel on a 20-px nucleus
    assert 1 / EDGE_MAX_RATIO <= ratio <= EDGE_MAX_RATIO, ratio
    n, missed, extra = _counts(found, 0.75)
    assert missed + extra <= EDGE_OFF75 * n, (missed, extra, n)


def test_dim_nuclei_next_to_bright_ones_are_found(model):
    """8-bit, half the nuclei 2.5-7x dimmer, most touching others (was 0.765 of them)."""
    found = []
    for image, truth in REALISM_CASES["dim"].images():
        ids = np.arange(1, truth.max() + 1)
        signal = np.asarray(ndi.mean(image.astype(float), truth, ids)) - np.median(
            image[truth == 0]
        )
        dim = signal < 0.4 * np.median(signal)
        found.append((iou_matrix(truth, _labels(model, image)) > 0.5).any(1)[dim])
    found = np.concatenate(found)
    assert found.size >= 30  # enough dim nuclei for a share to mean something
    assert (~found).sum() <= DIM_MISSED * found.size, ((~found).sum(), found.size)


def test_lobed_nuclei_stay_whole(model):
    """Every nucleus lobed (bean, peanut, trilobed): not cut at the lobes (AP@0.5 was 0.748)."""
    n, missed, extra = _counts(_matched(model, "lobed"))
    assert extra <= LOBED_EXTRA * n, (extra, n)
    assert missed <= LOBED_MISSED * n, (missed, n)


def test_debris_is_not_taken_for_nuclei(model):
    """Specks and fibres (6 per 100 x 100 px): few false objects, no nucleus lost."""
    n, missed, extra = _counts(_matched(model, "debris"))
    assert extra <= DEBRIS_FALSE * n, (extra, n)
    assert missed <= DEBRIS_MISSED * n, (missed, n)
