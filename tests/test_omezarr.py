"""The big-image output as OME-Zarr (NGFF), checked with ome-zarr-py and ome-zarr-models."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr_models.v04.image import Image as Image04
from ome_zarr_models.v05.image import Image as Image05
from ome_zarr_models.v05.image_label import ImageLabel as ImageLabel05

from napari_unet import NapariUnetError, UNet, bigimage
from napari_unet.bigimage import open_prediction, predict_to_zarr
from napari_unet.cli import main


@pytest.fixture
def model():
    torch.manual_seed(1)
    return UNet(base_channels=4, depth=3, dropout=0.0)


@pytest.fixture
def two_levels(monkeypatch):
    """Display levels from 64 pixels on, so that small images get a pyramid."""
    monkeypatch.setattr(bigimage.levels, "_PYRAMID_STOP", 64)


def _nodes(path):
    """What ome-zarr-py's reader (napari-ome-zarr's engine) finds, by path."""
    return {Path(str(n.zarr.path)).resolve(): n for n in Reader(parse_url(str(path)))()}


def _scales(node):
    return [
        next(t["scale"] for t in level if t["type"] == "scale")
        for level in node.metadata["coordinateTransformations"]
    ]


def _ome_image(path, data, axes, scale, version, translation=None):
    """An OME-Zarr image with two levels, as another tool would have written it."""
    v2 = version == "0.4"
    g = zarr.open_group(str(path), mode="w", zarr_format=2 if v2 else 3)
    kw = (
        {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        if v2
        else {"dimension_names": [a["name"] for a in axes]}
    )
    g.create_array("0", data=data, chunks=(*data.shape[:-2], 16, 16), **kw)
    g.create_array("1", data=data[..., ::2, ::2], chunks=(*data.shape[:-2], 16, 16), **kw)
    datasets = []
    for lv in range(2):
        s = [v * (2**lv if i >= len(scale) - 2 else 1) for i, v in enumerate(scale)]
        t = [{"type": "scale", "scale": s}]
        if translation is not None:
            t.append({"type": "translation", "translation": list(translation)})
        datasets.append({"path": str(lv), "coordinateTransformations": t})
    ms = [{"name": "raw", "axes": axes, "datasets": datasets}]
    if v2:
        ms[0]["version"] = "0.4"
        g.attrs["multiscales"] = ms
    else:
        g.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    return g


def _hashes(root, skip="labels"):
    """Every file's bytes under ``root`` except the ``skip`` folder."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != skip
    }


def test_result_is_a_multiscale_ome_zarr_image_with_labels(model, tmp_path, two_levels):
    image = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    out = tmp_path / "out.zarr"
    r = predict_to_zarr(
        model, image, out, chunk=64, probabilities=True, scale=(0.5, 0.25), min_size=3
    )
    assert r.scale == (0.5, 0.25) and len(r.labels) == 2 and r.n_objects > 5
    nodes = _nodes(out)
    img = nodes[out.resolve()]
    assert img.load(Multiscales) and not img.load(Label)
    assert [a["type"] for a in img.metadata["axes"]] == ["channel", "space", "space"]
    assert _scales(img) == [[1.0, 0.5, 0.25], [1.0, 1.0, 0.5]]
    full = r.probabilities.compute()
    np.testing.assert_array_equal(img.data[0].compute(), full)
    np.testing.assert_array_equal(img.data[1].compute(), full[:, ::2, ::2])

    seg = nodes[(out / "labels" / "segmentation").resolve()]
    assert seg.load(Label) is not None  # napari-ome-zarr makes it a Labels layer
    assert [a["name"] for a in seg.metadata["axes"]] == ["y", "x"]
    assert _scales(seg) == [[0.5, 0.25], [1.0, 0.5]]
    labels = r.labels[0].compute()
    np.testing.assert_array_equal(seg.data[0].compute(), labels)
    np.testing.assert_array_equal(seg.data[1].compute(), labels[::2, ::2])
    assert sorted(seg.metadata["color"]) == list(range(r.n_objects + 1))
    areas = {k: v["area (pixels)"] for k, v in seg.metadata["properties"].items() if k}
    assert areas == {i: int((labels == i).sum()) for i in range(1, r.n_objects + 1)}

    # the spec's own models accept the whole store, labels included
    Image05.from_zarr(zarr.open_group(str(out), mode="r"))
    ImageLabel05.from_zarr(zarr.open_group(str(out / "labels" / "segmentation"), mode="r"))
    meta = zarr.open_group(str(out / "labels" / "segmentation"), mode="r").attrs["napari_unet"]
    assert meta["complete"] is True and meta["model"] == model.config
    assert meta["normalization"]["statistics"] == r.metadata["normalization"]["statistics"]


def test_without_probabilities_the_image_is_an_empty_placeholder(model, tmp_path, two_levels):
    image = np.random.default_rng(1).random((130, 100)).astype(np.float32)
    out = tmp_path / "out.zarr"
    r = predict_to_zarr(model, image, out, chunk=64)
    assert r.probabilities is None
    # levels with no chunk written: metadata only, nothing to store
    for lv in ("0", "1"):
        assert sorted(p.name for p in (out / lv).iterdir()) == ["zarr.json"]
    img = _nodes(out)[out.resolve()]
    assert [d.shape for d in img.data] == [(130, 100), (65, 50)]
    assert not img.data[1].compute().any()
    assert not (out / "labels" / "segmentation" / "_work").exists()
    Image05.from_zarr(zarr.open_group(str(out), mode="r"))


def test_many_objects_leave_colours_to_the_viewer(mask_net, tmp_path, monkeypatch):
    monkeypatch.setattr(bigimage.ngff, "MAX_LISTED_LABELS", 3)
    monkeypatch.setattr(
        bigimage.output,
        "image_label",
        lambda sizes, source, version: bigimage.ngff.image_label(
            sizes, source, version, max_listed=3
        ),
    )
    image = np.zeros((40, 40), np.float32)
    for k in range(4):
        image[2 + 9 * k : 6 + 9 * k, 5:9] = 1
    r = predict_to_zarr(mask_net, image, tmp_path / "o.zarr", normalization=False, min_size=1)
    assert r.n_objects == 4
    attrs = zarr.open_group(str(tmp_path / "o.zarr/labels/segmentation")).attrs["ome"]
    assert "colors" not in attrs["image-label"] and "properties" not in attrs["image-label"]
    assert attrs["image-label"]["source"] == {"image": "../../"}


@pytest.fixture
def mask_net():
    """Foreground probability = the binary input (as in test_bigimage)."""
    net = UNet(in_channels=1, n_classes=2, base_channels=1, depth=1, dropout=0.0)
    with torch.no_grad():
        for conv in net.down[0][::2]:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
        net.head.weight[:, 0, 0, 0] = torch.tensor([-20.0, 20.0])
        net.head.bias[:] = torch.tensor([10.0, -10.0])
    return net.eval()


def test_ome_zarr_input_gives_scale_units_offset_and_source(model, tmp_path):
    stack = (np.random.default_rng(2).random((2, 40, 48)) * 1000).astype(np.uint16)
    axes = [
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    _ome_image(tmp_path / "raw.zarr", stack, axes, [2.0, 0.5, 0.5], "0.5", (10.0, 1.0, 1.0))
    out = tmp_path / "out.zarr"
    r = predict_to_zarr(model, tmp_path / "raw.zarr", out, chunk=16)
    assert r.scale == (2.0, 0.5, 0.5) and r.translation == (10.0, 1.0, 1.0)
    assert r.labels[0].shape == stack.shape
    nodes = _nodes(out)
    seg = nodes[(out / "labels" / "segmentation").resolve()]
    assert seg.metadata["axes"] == axes
    assert seg.metadata["coordinateTransformations"][0] == [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]},
        {"type": "translation", "translation": [10.0, 1.0, 1.0]},
    ]
    # "source" leads to the input image: the reader loads it under the labels
    source = zarr.open_group(str(out / "labels/segmentation")).attrs["ome"]["image-label"]
    assert (out / "labels/segmentation" / source["source"]["image"]).resolve() == (
        tmp_path / "raw.zarr"
    ).resolve()
    assert (tmp_path / "raw.zarr").resolve() in nodes
    # the same labels as predicting the array itself
    plain = predict_to_zarr(model, stack, tmp_path / "plain.zarr", chunk=16)
    np.testing.assert_array_equal(r.labels[0].compute(), plain.labels[0].compute())
    assert plain.scale == (1.0, 1.0, 1.0)


def test_into_input_writes_only_its_label_image(model, tmp_path):
    image = (np.random.default_rng(3).random((48, 64)) * 255).astype(np.uint8)
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    raw = tmp_path / "raw.zarr"
    g = _ome_image(raw, image, axes, [0.3, 0.3], "0.5")
    # labels another tool wrote: kept, listed first
    nuclei = g.create_group("labels", attributes={"ome": {"version": "0.5", "labels": ["nuclei"]}})
    nuclei = nuclei.create_group("nuclei")
    nuclei.create_array("0", data=np.ones((48, 64), np.uint8), dimension_names=["y", "x"])
    nuclei.create_array("1", data=np.ones((24, 32), np.uint8), dimension_names=["y", "x"])
    nuclei.attrs["ome"] = {"version": "0.5", "image-label": {}, "multiscales": [
        {"axes": axes, "datasets": [
            {"path": str(lv), "coordinateTransformations": [
                {"type": "scale", "scale": [0.3 * 2**lv, 0.3 * 2**lv]}]}
            for lv in range(2)]}]}  # fmt: skip
    before = _hashes(raw)
    nuclei_before = _hashes(raw / "labels" / "nuclei", skip="")

    r = predict_to_zarr(model, raw, into_input=True, chunk=32)
    assert _hashes(raw) == before  # the image's arrays and metadata: byte for byte
    assert _hashes(raw / "labels" / "nuclei", skip="") == nuclei_before
    listed = json.loads((raw / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert listed["labels"] == ["nuclei", "segmentation"]
    assert r.scale == (0.3, 0.3) and r.label_path == "labels/segmentation"
    separate = predict_to_zarr(model, raw, tmp_path / "sep.zarr", chunk=32)
    np.testing.assert_array_equal(r.labels[0].compute(), separate.labels[0].compute())

    nodes = _nodes(raw)
    seg = nodes[(raw / "labels" / "segmentation").resolve()]
    assert seg.load(Label) is not None
    # as many levels as the image, of the same shapes and scales
    assert _scales(seg) == [[0.3, 0.3], [0.6, 0.6]]
    assert [d.shape for d in seg.data] == [(48, 64), (24, 32)]
    Image05.from_zarr(zarr.open_group(str(raw), mode="r"))  # image, labels and all
    assert open_prediction(raw).n_objects == r.n_objects

    with pytest.raises(NapariUnetError, match="--overwrite"):
        predict_to_zarr(model, raw, into_input=True, chunk=32)
    again = predict_to_zarr(model, raw, into_input=True, chunk=32, overwrite=True)
    np.testing.assert_array_equal(again.labels[0].compute(), r.labels[0].compute())
    assert (
        listed["labels"]
        == json.loads((raw / "labels/zarr.json").read_text())["attributes"]["ome"]["labels"]
    )
    # another tool's labels of the same name are never replaced
    with pytest.raises(NapariUnetError, match="did not write"):
        predict_to_zarr(model, raw, into_input=True, label_name="nuclei", overwrite=True)
    assert _hashes(raw / "labels" / "nuclei", skip="") == nuclei_before
    assert _hashes(raw) == before
    with pytest.raises(NapariUnetError, match="2 napari-unet label images"):
        predict_to_zarr(model, raw, into_input=True, label_name="second", chunk=32)
        open_prediction(raw)
    assert open_prediction(raw, label="second").n_objects == r.n_objects


def test_into_input_follows_a_version_04_image_and_its_axes(model, tmp_path):
    image = (np.random.default_rng(4).random((1, 1, 1, 40, 56)) * 255).astype(np.uint8)
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    raw = tmp_path / "raw04.zarr"
    _ome_image(raw, image, axes, [1.0, 1.0, 3.0, 0.2, 0.2], "0.4")
    before = _hashes(raw)
    r = predict_to_zarr(model, raw, into_input=True, chunk=32)
    assert _hashes(raw) == before
    assert r.labels[0].shape == (40, 56) and r.scale == (0.2, 0.2)
    label = zarr.open_group(str(raw / "labels/segmentation"), mode="r")
    assert label.metadata.zarr_format == 2 and label["0"].shape == (1, 1, 1, 40, 56)
    attrs = label.attrs.asdict()
    assert attrs["multiscales"][0]["version"] == "0.4" and attrs["image-label"]["version"] == "0.4"
    assert (raw / "labels/segmentation/0/0/0/0/0/0").exists()  # "/" between chunk indices
    assert json.loads((raw / "labels/.zattrs").read_text())["labels"] == ["segmentation"]
    Image04.from_zarr(zarr.open_group(str(raw), mode="r"))
    seg = _nodes(raw)[(raw / "labels" / "segmentation").resolve()]
    assert _scales(seg)[0] == [1.0, 1.0, 3.0, 0.2, 0.2]


def test_into_input_refusals(model, tmp_path):
    image = np.random.default_rng(5).random((32, 32)).astype(np.float32)
    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(32, 32), dtype="f4")
    plain[:] = image
    for args, kwargs, message in [
        (image, {}, "OME-Zarr image"),
        (tmp_path / "plain.zarr", {}, "OME-Zarr image"),
        (tmp_path / "plain.zarr", {"probabilities": True}, "separate output"),
    ]:
        with pytest.raises(NapariUnetError, match=message):
            predict_to_zarr(model, args, into_input=True, **kwargs)
    with pytest.raises(NapariUnetError, match="give no output"):
        predict_to_zarr(model, image, tmp_path / "o.zarr", into_input=True)
    with pytest.raises(NapariUnetError, match="Name the zarr store"):
        predict_to_zarr(model, image)
    with pytest.raises(NapariUnetError, match="label name"):
        predict_to_zarr(model, image, tmp_path / "o.zarr", label_name="../x")
    with pytest.raises(NapariUnetError, match="scale"):
        predict_to_zarr(model, image, tmp_path / "o.zarr", scale=(1.0,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.zarr"]
    assert sorted(p.name for p in (tmp_path / "plain.zarr").iterdir()) == ["c", "zarr.json"]


def test_format_version_1_still_opens(tmp_path):
    """A store that napari-unet wrote before the OME-Zarr layout."""
    labels = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) % 5
    prob = np.random.default_rng(6).random((2, 12, 10)).astype(np.float32)
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    root.create_array("labels/0", data=labels)
    root.create_array("labels/1", data=labels[::2, ::2])
    root.create_array("probabilities", data=prob)
    root["labels"].attrs["ome"] = {"version": "0.5", "multiscales": [{"datasets": []}]}
    root.attrs["napari_unet"] = {
        "format_version": 1,
        "complete": True,
        "n_objects": 4,
        "labels": {"threshold": 0.5, "levels": 2, "dtype": "uint16"},
        "probabilities": "probabilities",
    }
    r = open_prediction(tmp_path / "old.zarr")
    np.testing.assert_array_equal(r.labels[0].compute(), labels)
    np.testing.assert_array_equal(r.labels[1].compute(), labels[::2, ::2])
    np.testing.assert_array_equal(r.probabilities.compute(), prob)
    assert r.n_objects == 4 and r.scale == (1.0, 1.0) and r.label_path == "labels"


def test_cli_into_input(tmp_path, tiny_model, capsys):
    from napari_unet import save_model

    save_model(tiny_model, tmp_path / "m.safetensors")
    image = (np.random.default_rng(7).random((40, 40)) * 255).astype(np.uint8)
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    _ome_image(tmp_path / "raw.zarr", image, axes, [0.7, 0.7], "0.5")
    before = _hashes(tmp_path / "raw.zarr")
    model = ["--model", str(tmp_path / "m.safetensors")]
    rc = main(["predict", str(tmp_path / "raw.zarr"), "--into-input", "--label-name", "unet",
               "--chunk", "32", *model])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "raw.zarr/labels/unet" in capsys.readouterr().err
    assert _hashes(tmp_path / "raw.zarr") == before
    assert open_prediction(tmp_path / "raw.zarr").scale == (0.7, 0.7)

    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(40, 40), dtype="u1")
    plain[:] = image
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", image)
    for argv, message in [
        ([str(tmp_path / "plain.zarr"), "--into-input"], "needs an OME-Zarr image"),
        ([str(tmp_path / "img.tif"), "--into-input"], "needs an OME-Zarr image"),
        ([str(tmp_path / "raw.zarr"), "--into-input", "-o", "x.zarr"], "leave out -o"),
        ([str(tmp_path / "raw.zarr"), "--into-input", "--label-name", "unet"], "--overwrite"),
        ([str(tmp_path / "raw.zarr")], "Name the output"),
    ]:
        rc = main(["predict", *argv, *model])
        err = capsys.readouterr().err
        assert rc == 1 and message in err and "Traceback" not in err, (argv, err)
        assert err.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "plain.zarr").iterdir()) == ["c", "zarr.json"]


def test_a_result_from_a_newer_napari_unet_is_refused(tmp_path):
    root = zarr.open_group(str(tmp_path / "new.zarr"), mode="w")
    root.attrs["napari_unet"] = {"format_version": 99, "complete": True}
    with pytest.raises(NapariUnetError, match="newer napari-unet"):
        open_prediction(tmp_path / "new.zarr")


def test_batch_keeps_an_ome_zarr_images_pixel_size(model, tmp_path):
    from napari_unet import segment_files
    from napari_unet._generators import run_to_end

    image = (np.random.default_rng(8).random((40, 40)) * 255).astype(np.uint8)
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    _ome_image(tmp_path / "a.ome.zarr", image, axes, [0.4, 0.4], "0.5")
    (tmp_path / "out").mkdir()
    run_to_end(segment_files([tmp_path / "a.ome.zarr"], tmp_path / "out", model=model))
    assert open_prediction(tmp_path / "out" / "a_labels.zarr").scale == (0.4, 0.4)


def test_into_input_lists_the_labels_before_marking_them_complete(model, tmp_path, monkeypatch):
    """A run that stops while listing its labels is not taken for a finished one."""
    image = (np.random.default_rng(9).random((40, 40)) * 255).astype(np.uint8)
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    raw = tmp_path / "raw.zarr"
    _ome_image(raw, image, axes, [1.0, 1.0], "0.5")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bigimage.output, "_update_labels_list", crash)
    with pytest.raises(OSError, match="disk full"):
        predict_to_zarr(model, raw, into_input=True, chunk=32)
    with pytest.raises(NapariUnetError, match="incomplete"):
        open_prediction(raw)
