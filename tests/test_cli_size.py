"""The CLI and object sizes: the estimate printed, bad diameters refused, empty images."""

import numpy as np
import pytest
import tifffile
from skimage.transform import rescale as sk_rescale

from napari_unet import save_model
from napari_unet.cli import main
from napari_unet.synthetic import make_cells


@pytest.fixture(scope="module")
def large_nuclei(tmp_path_factory):
    """Nuclei 3x the bundled model's sizes (about 55 px across)."""
    image, labels = make_cells((160, 160), seed=40)
    big = sk_rescale(image.astype(np.float32), 3.0, order=1, preserve_range=True)
    path = tmp_path_factory.mktemp("size") / "large.tif"
    tifffile.imwrite(path, big.astype(np.uint16))
    truth = sk_rescale(labels, 3.0, order=0, anti_aliasing=False, preserve_range=True)
    return path, truth.astype(np.int32)


def test_predict_prints_the_estimate_and_the_resize(large_nuclei, tmp_path, capsys):
    from napari_unet import instance_scores

    path, truth = large_nuclei
    out = tmp_path / "labels.tif"
    assert main(["predict", str(path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "Estimated object diameter" in line]
    assert len(lines) == 1 and "outside the model's 8-40 px, resized x0." in lines[0]
    labels = tifffile.imread(out)
    assert labels.shape == truth.shape and instance_scores(truth, labels).ap50 > 0.7
    # --rescale 1 keeps the image as it is and estimates nothing
    assert main(["predict", str(path), "-o", str(out), "--overwrite", "--rescale", "1"]) == 0
    assert "Estimated" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", "positive number"),
        ("-4", "positive number"),
        ("nan", "positive number"),
        ("inf", "positive number"),
        ("600", "larger than the image (480x480 px)"),
        ("5000", "too far from the 8-40 px"),
    ],
)
def test_bad_diameters_exit_non_zero_in_one_line(large_nuclei, tmp_path, capsys, value, words):
    path, _ = large_nuclei
    out = tmp_path / "labels.tif"
    rc = main(["predict", str(path), "-o", str(out), f"--diameter={value}"])
    err = capsys.readouterr().err
    assert rc == 1 and words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_bad_diameter_in_a_batch_is_refused_before_any_image(large_nuclei, tmp_path, capsys):
    path, _ = large_nuclei
    rc = main(["predict", str(path), str(path), "-o", str(tmp_path / "out"), "--diameter", "-1"])
    err = capsys.readouterr().err
    assert rc == 1 and "positive number" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["zeros", "noise"])
def test_an_empty_image_writes_empty_labels_and_a_note(tmp_path, capsys, kind):
    rng = np.random.default_rng(6)
    pixels = np.zeros((80, 80), np.uint16)
    if kind == "noise":
        pixels = (rng.poisson(30, (80, 80)) + 100).astype(np.uint16)
    img, out = tmp_path / "empty.tif", tmp_path / "labels.tif"
    tifffile.imwrite(img, pixels)
    assert main(["predict", str(img), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no objects." in err and "0 objects written" in err
    labels = tifffile.imread(out)
    assert labels.shape == (80, 80) and not labels.any()


def test_zarr_inputs_say_the_size_but_keep_their_scale(large_nuclei, tmp_path, capsys):
    path, _ = large_nuclei
    out = tmp_path / "out.zarr"
    assert main(["predict", str(path), "-o", str(out), "--chunk", "256"]) == 0
    err = capsys.readouterr().err
    assert "is not resized; resize it x0." in err


def test_a_model_without_sizes_says_so(tmp_path, tiny_model, capsys):
    image, _ = make_cells((128, 128), seed=41)
    img, model, out = tmp_path / "i.tif", tmp_path / "m.safetensors", tmp_path / "l.tif"
    tifffile.imwrite(img, image)
    save_model(tiny_model, model)
    assert main(["predict", str(img), "-o", str(out), "--model", str(model)]) == 0
    assert "records no object sizes, so the image was not resized" in capsys.readouterr().err
