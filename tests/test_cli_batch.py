import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import save_model
from napari_unet.cli import main


@pytest.fixture
def batch(tmp_path, tiny_model, rng):
    """Two images of different sizes, one corrupt file, and a model file."""
    d = tmp_path / "images"
    d.mkdir()
    # smoothed: white noise is "nothing to segment" and never reaches the model
    for name, shape in (("a.tif", (60, 70)), ("b.tif", (40, 90))):
        pixels = ndi.gaussian_filter(rng.random(shape), 1.5) * 3000
        tifffile.imwrite(d / name, pixels.astype(np.uint16))
    (d / "bad.tif").write_text("this is not a TIFF")
    model = tmp_path / "m.safetensors"
    save_model(tiny_model, model)
    return d, model


def test_batch_with_one_corrupt_file_as_a_user_runs_it(batch, tmp_path):
    """The console command in its own process: the others written, the failure named, exit 1."""
    d, model = batch
    out = tmp_path / "results"
    files = [str(d / n) for n in ("a.tif", "bad.tif", "b.tif")]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_unet.cli",
            "predict",
            *files,
            "-o",
            f"{out}/",
            "--model",
            str(model),
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    assert tifffile.imread(out / "b_labels.tif").shape == (40, 90)
    assert "Traceback" not in r.stderr
    failed = [line for line in r.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "bad.tif" in failed[0]
    assert (
        "could not be read as an image (not a TIFF file: it starts with other bytes)" in failed[0]
    )
    assert "b'" not in r.stderr  # no Python bytes
    # the table on stdout: one row per written image with its object count
    rows = r.stdout.strip().splitlines()
    assert rows[0].split() == ["image", "objects", "output"]
    counts = {row.split()[0]: int(row.split()[1]) for row in rows[1:]}
    assert counts == {
        "a.tif": int(tifffile.imread(out / "a_labels.tif").max()),
        "b.tif": int(tifffile.imread(out / "b_labels.tif").max()),
    }
    assert "3 images" in r.stderr and "1 failed" in r.stderr


def test_folder_into_a_new_folder_then_existing_results_are_kept(batch, tmp_path, capsys):
    d, model = batch
    (d / "bad.tif").unlink()
    out = tmp_path / "new" / "out"
    rc = main(["predict", str(d), "-o", str(out), "--model", str(model), "--tile", "32"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    capsys.readouterr()
    # again: every result exists, so every image fails and nothing is replaced
    before = (out / "a_labels.tif").read_bytes()
    assert main(["predict", str(d), "-o", str(out), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.count("already exists") == 2
    assert (out / "a_labels.tif").read_bytes() == before
    assert main(["predict", str(d), "-o", str(out), "--model", str(model), "--overwrite"]) == 0


def test_results_next_to_the_images_with_o_the_same_folder_and_zarr(batch, capsys):
    d, model = batch
    rc = main(["predict", str(d / "a.tif"), str(d / "b.tif"), "-o", str(d), "--model",
               str(model), "--zarr"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    from napari_unet.bigimage import open_prediction

    assert open_prediction(d / "a_labels.zarr").labels[0].shape == (60, 70)
    assert open_prediction(d / "b_labels.zarr").labels[0].shape == (40, 90)


def test_one_image_into_an_existing_folder(batch, tmp_path, capsys):
    d, model = batch
    out = tmp_path / "out"
    out.mkdir()
    assert main(["predict", str(d / "a.tif"), "-o", str(out), "--model", str(model)]) == 0
    assert [p.name for p in out.iterdir()] == ["a_labels.tif"]


@pytest.mark.parametrize(
    "case, expect",
    [
        ("output_is_a_file", "is a file"),
        ("output_looks_like_a_file", "looks like a file name"),
        ("probabilities", "--probabilities"),
        ("empty_folder", "holds no images"),
        ("diameter_into_zarr", "zarr"),
    ],
)
def test_batch_bad_input_gives_one_line_and_writes_nothing(batch, tmp_path, capsys, case, expect):
    d, model = batch
    out = tmp_path / "out"
    args = ["predict", str(d / "a.tif"), str(d / "b.tif"), "-o", str(out), "--model", str(model)]
    if case == "output_is_a_file":
        out.write_text("keep me")
    elif case == "output_looks_like_a_file":
        args[4] = str(tmp_path / "labels.tif")
    elif case == "probabilities":
        args += ["--probabilities", str(tmp_path / "p.tif")]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[1:3] = [str(tmp_path / "empty")]
    elif case == "diameter_into_zarr":
        args += ["--zarr", "--rescale", "0.5"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1 and expect in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if case == "output_is_a_file":
        assert out.read_text() == "keep me"
    else:
        assert not out.exists()
    assert not (tmp_path / "labels.tif").exists()


# -- one rule for "is this input a zarr store" (the CLI and the batch used to differ)


def test_zarr_input_is_a_folder_named_zarr_or_holding_zarr_metadata(tmp_path):
    from napari_unet.fileio import is_zarr_input

    for name, marker in (
        ("a.zarr", None),
        ("B.ZARR", None),
        ("c.ome.zarr", None),
        ("v3", "zarr.json"),
        ("v2group", ".zgroup"),
        ("v2array", ".zarray"),
    ):
        (tmp_path / name).mkdir()
        if marker:
            (tmp_path / name / marker).write_text("{}")
        assert is_zarr_input(tmp_path / name), name
    (tmp_path / "plain").mkdir()
    (tmp_path / "file.zarr").write_text("not a store")
    for name in ("plain", "file.zarr", "missing.zarr"):
        assert not is_zarr_input(tmp_path / name), name


@pytest.mark.parametrize("case", ["missing", "file"])
def test_a_zarr_name_that_is_no_folder_is_read_as_a_file(batch, tmp_path, capsys, case):
    """The one image's own problem is named (it used to ask for an OUT.zarr output)."""
    _, model = batch
    image = tmp_path / "in.zarr"
    if case == "file":
        image.write_text("not a store")
    out = tmp_path / "out.tif"
    rc = main(["predict", str(image), "-o", str(out), "--model", str(model)])
    err = capsys.readouterr().err
    expect = "does not exist" if case == "missing" else "could not be read as an image"
    assert rc == 1 and expect in err and "OUT.zarr" not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
