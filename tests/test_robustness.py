"""Bad input everywhere: each case works correctly or fails with one sentence naming it."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_unet import NapariUnetError, UNet, predict_tiled, save_model
from napari_unet.layout import to_model_layout
from napari_unet.training import TrainConfig, prepare_training_data
from napari_unet.weightmap import unet_weight_map

DTYPES = [bool, np.uint8, np.uint16, np.int32, np.float32, np.float64]
SHAPES = [(1, 1), (5, 5), (1, 40), (40, 1), (17, 33), (3, 20, 30), (64, 48)]


def _one_sentence(exc):
    msg = str(exc)
    assert msg and "\n" not in msg and msg[0].isupper() and msg.rstrip().endswith(".")
    return msg


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return UNet(base_channels=2, depth=3, dropout=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_prediction_dtype_shape_matrix(model, dtype, shape):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * (1 if dtype is bool else 200)).astype(dtype)
    prob = predict_tiled(model, image, tile_shape=8)
    assert prob.shape == (2, *shape) and np.isfinite(prob).all()
    np.testing.assert_allclose(prob.sum(0), 1, atol=1e-5)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((20, 20)),  # constant
        np.full((20, 20), 1e30),  # huge values
        np.array([[0, 1e30], [-1e30, 5]] * 10).reshape(20, 2).repeat(10, 1),  # huge range
    ],
)
def test_prediction_extreme_values(model, image):
    assert np.isfinite(predict_tiled(model, image)).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_prediction_refuses_nan_and_inf(model, bad):
    image = np.zeros((20, 20))
    image[3, 4] = bad
    with pytest.raises(NapariUnetError) as info:
        predict_tiled(model, image)
    assert "NaN or infinite" in _one_sentence(info.value)


@pytest.mark.parametrize(
    "image, expect",
    [
        (np.zeros((4, 5, 6, 7)), "2D image"),
        (np.zeros(5), "two dimensions"),
        (np.array([["a", "b"], ["c", "d"]]), "numbers"),
    ],
)
def test_prediction_refuses_what_is_not_an_image(model, image, expect):
    with pytest.raises(NapariUnetError) as info:
        predict_tiled(model, to_model_layout(image, 1))
    assert expect in _one_sentence(info.value)


def test_rgb_and_rgba_become_luminance(model):
    rgb = np.random.default_rng(1).integers(0, 255, (30, 40, 3)).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], axis=-1)
    a = predict_tiled(model, to_model_layout(rgb, 1))
    b = predict_tiled(model, to_model_layout(rgba, 1))
    assert a.shape == (2, 30, 40)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "labels, expect",
    [
        (np.zeros((10, 11), np.int32), "shape"),
        (np.full((10, 10), 0.5), "whole numbers"),
        (-np.ones((10, 10), np.int32), "negative"),
    ],
)
def test_weight_map_label_errors(labels, expect):
    with pytest.raises(NapariUnetError) as info:
        unet_weight_map(labels, mask=np.ones((10, 10), bool))
    assert expect in _one_sentence(info.value).lower() or expect in str(info.value)


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros((12, 12), np.int64),  # all zero
        np.pad(np.ones((4, 4), np.int64), 4),  # one cell
        np.pad(np.array([[7, 0, 2**40]] * 3, np.int64), 4),  # sparse, huge ids
    ],
)
def test_weight_map_edge_labels_work(labels):
    w = unet_weight_map(labels)
    assert w.shape == labels.shape and np.isfinite(w).all() and (w > 0).all()


def test_training_label_matrix():
    model = UNet(base_channels=2, depth=3)
    cfg = TrainConfig(base_channels=2, depth=3, tile_size=92, steps=1)
    image = np.random.default_rng(0).random((40, 40))
    good = np.zeros((40, 40), np.int64)
    good[5:15, 5:15], good[20:30, 20:30] = 3, 2**40  # non-consecutive, very large ids
    data = prepare_training_data(image, good, model=model, config=cfg)
    assert data.summary[0]["cells"] == 2
    for labels, expect in [
        (good.astype(float) + 0.25, "whole numbers"),
        (good > 0, "own number"),
        (-good, "negative"),
        (good[:-1], "shape"),
        (np.zeros_like(good), "No annotated cell"),
    ]:
        with pytest.raises(NapariUnetError) as info:
            prepare_training_data(image, labels, model=model, config=cfg)
        assert expect in _one_sentence(info.value)


# -- files, through the CLI as a user runs it


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    save_model(model, path)
    return path


def _cli(*args):
    r = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", *map(str, args)], capture_output=True, text=True
    )
    return r.returncode, r.stderr


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing", "does not exist"),
        ("not_an_image", "could not be read as an image"),
        ("directory", "folder"),
        ("missing_output_folder", "does not exist"),
        ("existing_output", "already exists"),
        ("rgb_png", None),
        ("stack", None),
        ("empty_file", "could not be read as an image"),
    ],
)
def test_cli_file_matrix(tmp_path, model_file, case, expect):
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 4000, (40, 50), np.uint16))
    out = tmp_path / "out" / "labels.tif"
    out.parent.mkdir()
    if case == "missing":
        image = tmp_path / "nope.tif"
    elif case == "not_an_image":
        image.write_text("not an image")
    elif case == "directory":
        image = tmp_path
    elif case == "missing_output_folder":
        out = tmp_path / "nonexistent" / "labels.tif"
    elif case == "existing_output":
        out.write_bytes(b"keep me")
    elif case == "rgb_png":
        import imageio.v3 as iio

        image = tmp_path / "img.png"
        iio.imwrite(image, np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8))
    elif case == "empty_file":
        image.write_bytes(b"")
    kw = {"photometric": "minisblack"} if case == "stack" else {}
    if kw:
        tifffile.imwrite(image, np.random.default_rng(0).random((3, 30, 40)).astype("f4"), **kw)
    rc, err = _cli("predict", image, "-o", out, "--model", model_file)
    if expect is None:
        assert rc == 0, err
        assert tifffile.imread(out).shape[-2:] == (30, 40)
        return
    assert rc == 1 and expect in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if case == "existing_output":
        assert out.read_bytes() == b"keep me"
    elif out.parent.exists():
        assert not out.exists()
        assert not [p for p in out.parent.iterdir()]  # no partial file left behind


@pytest.mark.parametrize("what", ["unreadable input", "read-only output folder"])
def test_cli_permission_problems(tmp_path, model_file, monkeypatch, capsys, what):
    """Permissions cannot be denied to root (CI runs as root), so os.access is stubbed."""
    from napari_unet.cli import main

    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((20, 20), np.uint8))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    denied = (image, os.R_OK) if what == "unreadable input" else (out_dir, os.W_OK)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: (
            False if (str(p), mode) == (str(denied[0]), denied[1]) else real_access(p, mode)
        ),
    )
    rc = main(["predict", str(image), "-o", str(out_dir / "l.tif"), "--model", str(model_file)])
    err = capsys.readouterr().err
    assert rc == 1 and ("not readable" in err or "not writable" in err)
    assert list(out_dir.iterdir()) == []


# -- property-based: tiling invariance on random shapes


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.floats(0, 1000, width=32),
    ),
    tile_a=st.integers(1, 48),
    tile_b=st.integers(1, 48),
)
def test_any_two_tilings_agree(model, image, tile_a, tile_b):
    a = predict_tiled(model, image, tile_shape=tile_a)
    b = predict_tiled(model, image, tile_shape=tile_b)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_nan_outside_the_statistics_sample_is_still_refused(tiny_model, monkeypatch, tmp_path):
    """The normalisation sees a subsample; every tile checks what it computed."""
    import napari_unet.normalization as norm
    from napari_unet.bigimage import predict_to_zarr

    monkeypatch.setattr(norm, "_MAX_STAT_PIXELS", 16)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[1, 1] = np.nan  # not on the sample's regular grid
    with pytest.raises(NapariUnetError, match="NaN"):
        predict_tiled(tiny_model, image, device="cpu")
    with pytest.raises(NapariUnetError, match="NaN"):
        predict_to_zarr(tiny_model, image, tmp_path / "o.zarr", chunk=32)


def test_channels_last_single_channel_is_one_image():
    image = np.random.default_rng(1).random((20, 30, 1))
    np.testing.assert_array_equal(to_model_layout(image, 1), image[..., 0])
    stack = np.zeros((3, 20, 30))
    assert to_model_layout(stack, 1).shape == (3, 20, 30)  # a real stack stays one
