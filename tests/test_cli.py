import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import save_model
from napari_unet.cli import main


@pytest.fixture
def files(tmp_path, tiny_model, rng):
    img = tmp_path / "img.tif"
    # smoothed: white noise is "nothing to segment" and never reaches the model
    tifffile.imwrite(img, (ndi.gaussian_filter(rng.random((70, 90)), 1.5) * 3000).astype(np.uint16))
    model = tmp_path / "m.safetensors"
    save_model(tiny_model, model)
    return tmp_path, img, model


def test_predict_writes_labels_and_probabilities(files, capsys):
    tmp, img, model = files
    out, prob = tmp / "labels.tif", tmp / "prob.tif"
    rc = main(
        [
            "predict",
            str(img),
            "-o",
            str(out),
            "--model",
            str(model),
            "--probabilities",
            str(prob),
            "--tile",
            "16",
        ]
    )
    assert rc == 0
    labels = tifffile.imread(out)
    assert labels.shape == (70, 90) and labels.dtype == np.uint16
    p = tifffile.imread(prob)
    assert p.shape == (70, 90) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    assert "objects written" in capsys.readouterr().err


def test_predict_as_a_user_runs_it(files):
    """The installed console script, in a separate process."""
    tmp, img, model = files
    out = tmp / "labels.tif"
    exe = [sys.executable, "-m", "napari_unet.cli"]
    r = subprocess.run(
        exe + ["predict", str(img), "-o", str(out), "--model", str(model)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.exists()
    # the same command again refuses to overwrite, in one line, without a traceback
    r = subprocess.run(
        exe + ["predict", str(img), "-o", str(out), "--model", str(model)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "already exists" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_image", "does not exist"),
        ("not_an_image", "could not be read as an image"),
        ("directory_image", "folder"),
        ("pickle_model", "pickle"),
        ("bad_tile", "--tile"),
        ("output_is_input", "overwrite the input"),
        ("missing_folder", "does not exist"),
    ],
)
def test_bad_input_gives_one_line_and_no_output(files, capsys, case, expect):
    tmp, img, model = files
    out = tmp / "out.tif"
    args = ["predict", str(img), "-o", str(out), "--model", str(model)]
    if case == "missing_image":
        args[1] = str(tmp / "nope.tif")
    elif case == "not_an_image":
        (tmp / "text.tif").write_text("hello")
        args[1] = str(tmp / "text.tif")
    elif case == "directory_image":
        args[1] = str(tmp)
    elif case == "pickle_model":
        import torch

        torch.save({"a": 1}, tmp / "m.pt")
        args[5] = str(tmp / "m.pt")
    elif case == "bad_tile":
        args += ["--tile", "-3"]
    elif case == "output_is_input":
        args[3] = str(img)
        args.append("--overwrite")
    elif case == "missing_folder":
        args[3] = str(tmp / "no" / "out.tif")
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1
    assert expect in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp.iterdir() if p.name.endswith(".part")]


def _train_files(tmp_path):
    from napari_unet.synthetic import make_cells

    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lbl.tif", labels)
    return tmp_path / "img.tif", tmp_path / "lbl.tif"


def test_train_then_predict(tmp_path, capsys):
    img, lbl = _train_files(tmp_path)
    model = tmp_path / "model.safetensors"
    rc = main(
        [
            "train",
            "--image",
            str(img),
            "--labels",
            str(lbl),
            "-o",
            str(model),
            "--steps",
            "3",
            "--from",
            "scratch",
            "--width",
            "4",
            "--tile",
            "204",
            "--seed",
            "1",
            "--calibration-rules",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    from napari_unet import load_model

    m = load_model(model)
    assert m.metadata["training"]["steps"] == 3
    # the rule search was bounded by a count (reproducible), not by the clock
    assert m.metadata["training"]["config"]["calibration_rules"] == 3
    assert m.metadata["postprocess"]["calibration"]["rules_tried"] == 3
    # the rule calibrated on the annotated cells is in the file and said in plain words
    about = m.metadata["postprocess"]["calibration"]
    verb = "kept after a check on" if about["kept"] else "calibrated on"
    assert f"{verb} {about['cells']} of your" in err
    assert m.metadata["training"]["started_from"] == {"model": "scratch"}
    assert m.config["base_channels"] == 4
    out = tmp_path / "labels.tif"
    assert main(["predict", str(img), "-o", str(out), "--model", str(model)]) == 0
    assert tifffile.imread(out).shape == (96, 128)
    # resume with a larger budget continues the step count
    rc = main(
        [
            "train",
            "--image",
            str(img),
            "--labels",
            str(lbl),
            "-o",
            str(model),
            "--resume",
            str(model),
            "--steps",
            "5",
        ]
    )
    assert rc == 0
    assert load_model(model).metadata["training"]["steps"] == 5


@pytest.mark.parametrize(
    "case, expect",
    [("wrong_shape", "shape"), ("no_cells", "No annotated cell"), ("count", "--labels")],
)
def test_train_bad_input_writes_no_model(tmp_path, capsys, case, expect):
    img, lbl = _train_files(tmp_path)
    if case == "wrong_shape":
        tifffile.imwrite(lbl, tifffile.imread(lbl)[:50])
    elif case == "no_cells":
        tifffile.imwrite(lbl, np.zeros((96, 128), np.uint16))
    model = tmp_path / "model.safetensors"
    args = ["train", "--image", str(img), "--labels", str(lbl), "-o", str(model), "--steps", "2"]
    if case == "count":
        args += ["--labels", str(lbl)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1 and expect in err and "Traceback" not in err
    assert not model.exists()


def test_train_on_only_stray_dabs_is_refused_and_writes_no_model(tmp_path):
    """Tiny marks on what the start model is sure is background: nothing to train on."""
    from napari_unet.synthetic import make_cells

    image, truth = make_cells((160, 160), style="fluorescence", seed=11)
    far = ndi.distance_transform_edt(truth == 0) > 10
    far[:20], far[-20:], far[:, :20], far[:, -20:] = False, False, False, False
    spots = np.argwhere(far)
    dabs = np.zeros(truth.shape, np.uint16)
    for k, (y, x) in enumerate(spots[[0, len(spots) // 2, len(spots) - 1]], start=1):
        dabs[y - 1 : y + 2, x - 1 : x + 2] = k  # a 9-px click that missed its nucleus
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "dabs.tif", dabs)
    args = ["train", "--image", "img.tif", "--labels", "dabs.tif", "-o", "model.safetensors"]
    said = (
        "napari-unet: error: Cells 1, 2 and 3 are left out: they are tiny marks where the "
        "model sees background; paint whole cells to train on them.\n"
    )
    exe = [sys.executable, "-m", "napari_unet.cli"]
    r = subprocess.run(exe + args + ["--steps", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, said)  # one sentence, no traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dabs.tif", "img.tif"]
    # a model already there, to be overwritten: kept as it was
    (tmp_path / "model.safetensors").write_bytes(b"the previous model")
    r = subprocess.run(
        exe + args + ["--steps", "2", "--overwrite"], capture_output=True, text=True, cwd=tmp_path
    )
    assert (r.returncode, r.stderr) == (1, said)
    assert (tmp_path / "model.safetensors").read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dabs.tif",
        "img.tif",
        "model.safetensors",
    ]


def test_weightmap_command(tmp_path, capsys):
    _, lbl = _train_files(tmp_path)
    out = tmp_path / "w.tif"
    assert main(["weightmap", str(lbl), "-o", str(out), "--w0", "5"]) == 0
    w = tifffile.imread(out)
    from napari_unet.weightmap import unet_weight_map

    np.testing.assert_allclose(w, unet_weight_map(tifffile.imread(lbl), w0=5), atol=1e-6)
    assert main(["weightmap", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "x.tif")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_predict_zarr_in_and_out(files, tmp_path, capsys):
    import zarr

    _, img, model = files
    image = tifffile.imread(img)
    src = zarr.open_array(tmp_path / "big.zarr", mode="w", shape=image.shape, chunks=(32, 32),
                          dtype=image.dtype)  # fmt: skip
    src[:] = image
    out = tmp_path / "out.zarr"
    rc = main(["predict", str(tmp_path / "big.zarr"), "-o", str(out), "--model", str(model),
               "--chunk", "32", "--probabilities", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    from napari_unet.bigimage import open_prediction

    r = open_prediction(out)
    assert r.labels[0].shape == image.shape
    # the same as in-memory prediction of the TIFF
    in_memory = tmp_path / "l.tif"
    assert main(["predict", str(img), "-o", str(in_memory), "--model", str(model)]) == 0
    from napari_unet import load_model, predict_tiled

    expected = predict_tiled(load_model(model), image)
    np.testing.assert_allclose(r.probabilities.compute()[1], expected[1], atol=1e-5)
    # a TIFF output for a zarr input is refused in one sentence
    rc = main(["predict", str(tmp_path / "big.zarr"), "-o", str(tmp_path / "x.tif"),
               "--model", str(model)])  # fmt: skip
    assert rc == 1 and "zarr store" in capsys.readouterr().err


def test_width_needs_scratch(tmp_path, capsys):
    img, lbl = _train_files(tmp_path)
    model = tmp_path / "model.safetensors"
    args = ["train", "--image", str(img), "--labels", str(lbl), "-o", str(model)]
    rc = main([*args, "--steps", "1", "--width", "4"])
    err = capsys.readouterr().err
    assert rc == 1 and "--from scratch" in err
    assert not model.exists()


def test_rescale_with_zarr_output_is_refused(tmp_path, capsys):
    img, _ = _train_files(tmp_path)
    out = tmp_path / "out.zarr"
    rc = main(["predict", str(img), "-o", str(out), "--diameter", "80"])
    err = capsys.readouterr().err
    assert rc == 1 and "--diameter" in err and "Traceback" not in err
    assert not out.exists()


def test_rescale_gives_full_size_labels(tmp_path, capsys, tiny_model):
    from napari_unet import save_model

    img, _ = _train_files(tmp_path)
    save_model(tiny_model, tmp_path / "m.safetensors")
    out = tmp_path / "labels.tif"
    rc = main(
        ["predict", str(img), "-o", str(out), "--model", str(tmp_path / "m.safetensors")]
        + ["--rescale", "0.5"]
    )
    assert rc == 0, capsys.readouterr().err
    assert tifffile.imread(out).shape == (96, 128)
    rc = main(
        ["predict", str(img), "-o", str(out), "--model", str(tmp_path / "m.safetensors")]
        + ["--overwrite", "--rescale", "100"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "rescale factor" in err


def test_diameter_needs_a_model_that_knows_its_sizes(tmp_path, capsys, tiny_model):
    from napari_unet import save_model

    img, _ = _train_files(tmp_path)
    save_model(tiny_model, tmp_path / "m.safetensors")
    out = tmp_path / "labels.tif"
    args = ["predict", str(img), "-o", str(out), "--model", str(tmp_path / "m.safetensors")]
    rc = main([*args, "--diameter", "30"])
    err = capsys.readouterr().err
    assert rc == 1 and "rescale factor instead" in err and not out.exists()
    rc = main(["predict", str(img), "-o", str(out), "--diameter", "1000"])  # bundled: 8-40 px
    err = capsys.readouterr().err
    assert rc == 1 and "too far from the 8-40 px" in err and not out.exists()


def test_width_cannot_change_a_resumed_run(tmp_path, capsys):
    img, lbl = _train_files(tmp_path)
    model = tmp_path / "model.safetensors"
    args = ["train", "--image", str(img), "--labels", str(lbl), "-o", str(model)]
    rc = main([*args, "--resume", str(model), "--width", "8"])
    err = capsys.readouterr().err
    assert rc == 1 and "resumed run" in err and "--from scratch" not in err


def test_help_loads_no_engine():
    """The parser is light: each subcommand's module (and torch) comes when it runs."""
    code = (
        "import sys\n"
        "from napari_unet.cli import main\n"
        "for command in ('predict', 'train', 'weightmap', 'export'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0\n"
        "print(' '.join(sys.modules), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mods = set(r.stderr.split())
    assert "napari_unet.cli.parser" in mods
    assert not {"torch", "napari_unet.tiling", "napari_unet.cli.predict"} & mods
