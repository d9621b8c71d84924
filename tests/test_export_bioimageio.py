"""bioimage.io export and import, checked with bioimageio.core's own model test, offline."""

import os
import socket
import sys
import tempfile
import zipfile
from pathlib import Path

# bioimageio.spec reads its settings at import: keep its cache out of the home folder
os.environ.setdefault(
    "BIOIMAGEIO_CACHE_PATH", str(Path(tempfile.gettempdir()) / "napari-unet-test-bioimageio")
)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from napari_unet import NapariUnetError, UNet, export_bioimageio, load_model  # noqa: E402
from napari_unet.bundled import load_bundled_model  # noqa: E402
from napari_unet.export.bioimageio import iter_export_bioimageio  # noqa: E402
from napari_unet.model import halo, input_size_for_output  # noqa: E402
from napari_unet.modelfile import save_model  # noqa: E402
from napari_unet.synthetic import make_cells  # noqa: E402
from napari_unet.tiling import predict_tiled  # noqa: E402
from napari_unet.training import TrainConfig, train_model  # noqa: E402

FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def bundled_package(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundled") / "nuclei.zip"
    events = []
    export_bioimageio(load_bundled_model(), path, authors=["Test Person"], progress=events.append)
    return path, events


@pytest.fixture(scope="module")
def fine_tuned():
    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    cfg = TrainConfig(base_channels=4, depth=3, tile_size=92, steps=3, validation_fraction=0)
    model = train_model([image], [labels], config=cfg, device="cpu")
    model.metadata["name"] = "tiny fine-tuned"
    return model, image


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rdf(path):
    return yaml.safe_load(_members(path)["rdf.yaml"])


def _bioimageio_test(path):
    from bioimageio.core import test_model

    summary = test_model(path)
    tested = {
        f
        for d in summary.details
        for f in FORMATS
        if f"Reproduce test outputs from test inputs ({f})" in d.name
    }
    failed = [d.name for d in summary.details if d.status != "passed"]
    return summary.status, tested, failed


def _run_formats(path, tmp_path):
    """Each weight format run directly on the normalised test input, with the softmax."""
    import onnxruntime as ort

    from napari_unet.normalization import Normalization

    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(path) as z:
        z.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    raw = np.load(folder / "test_input.npy")
    norm = Normalization.from_dict(rdf["config"]["napari_unet"]["metadata"].get("normalization"))
    x = norm.apply(raw[0], norm.statistics(raw[0], channel_axis=0), channel_axis=0)[None]
    xt = torch.from_numpy(x)
    import importlib.util

    spec = importlib.util.spec_from_file_location("shipped_arch", folder / "unet_architecture.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    net = arch.UNet(**rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]).eval()
    # our own file, written by the test above: weights_only refuses anything but tensors
    net.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    scripted = torch.jit.load(str(folder / "weights.torchscript.pt")).eval()
    session = ort.InferenceSession(str(folder / "weights.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        logits = {
            "pytorch_state_dict": net(xt).numpy(),
            "torchscript": scripted(xt).numpy(),
            "onnx": session.run(None, {"raw": x})[0],
        }
    expected = np.load(folder / "test_output.npy")
    probs = {k: torch.softmax(torch.from_numpy(v), 1).numpy() for k, v in logits.items()}
    return raw, expected, probs


def test_bundled_package_passes_the_bioimageio_model_test(bundled_package, offline):
    path, _ = bundled_package
    status, tested, failed = _bioimageio_test(path)
    assert failed == [] and status == "passed"
    assert tested == set(FORMATS)


def test_bundled_package_content(bundled_package, tmp_path):
    path, events = bundled_package
    rdf = _rdf(path)
    assert rdf["format_version"].startswith("0.5.")
    assert set(rdf["weights"]) == set(FORMATS)
    assert rdf["weights"]["torchscript"]["parent"] == "pytorch_state_dict"
    assert rdf["weights"]["onnx"]["parent"] == "pytorch_state_dict"
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (
        arch["kwargs"] == load_bundled_model().config and arch["source"] == "unet_architecture.py"
    )
    # sizes follow the valid-convolution arithmetic: min input, pooling step, context cropped
    y_in = rdf["inputs"][0]["axes"][2]
    assert y_in["size"] == {"min": input_size_for_output(1, 5), "step": 16}
    assert rdf["outputs"][0]["axes"][2]["size"]["offset"] == -2 * halo(5) == -184
    pre = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range"][0]
    assert pre["kwargs"]["min_percentile"] == 1.0 and pre["kwargs"]["max_percentile"] == 99.8
    assert [p["id"] for p in rdf["outputs"][0]["postprocessing"]][0] == "softmax"
    assert {c.get("doi") for c in rdf["cite"]} >= {"10.1007/978-3-319-24574-4_28"}
    assert rdf["authors"] == [{"name": "Test Person"}]
    trained = load_bundled_model().metadata["training"]["steps"]
    assert rdf["config"]["napari_unet"]["metadata"]["training"]["steps"] == trained
    members = _members(path)
    assert members["cover.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Validation" in members["README.md"].decode()
    assert "napari_unet_model.safetensors" in members
    assert [e.done for e in events] == list(range(8)) and events[-1].step == "done"


def test_all_weight_formats_reproduce_napari_unet(bundled_package, tmp_path):
    path, _ = bundled_package
    raw, expected, probs = _run_formats(path, tmp_path)
    for fmt, p in probs.items():
        np.testing.assert_allclose(p, expected, atol=1e-4, rtol=0, err_msg=fmt)
    # the test output is napari-unet's own network on the normalised input, softmaxed
    from napari_unet.normalization import Normalization

    model = load_bundled_model()
    norm = Normalization.from_dict(model.metadata["normalization"])
    x = norm.apply(raw[0], norm.statistics(raw[0], channel_axis=0), channel_axis=0)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x[None])), 1).numpy()
    np.testing.assert_allclose(expected, ref, atol=1e-5)
    assert expected.shape[-1] == raw.shape[-1] - 2 * halo(5)
    # and it is a segmentation, not noise: part of the synthetic image is foreground
    assert 0.05 < (expected[0, 1] > 0.5).mean() < 0.95


def test_round_trip_restores_weights_and_metadata(bundled_package, tmp_path):
    path, _ = bundled_package
    original = load_bundled_model()
    folder = tmp_path / "folder"
    with zipfile.ZipFile(path) as z:
        z.extractall(folder)
    for source in (path, folder):
        back = load_model(source)
        assert back.config == original.config
        assert back.metadata == original.metadata
        a, b = original.state_dict(), back.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuned_model_exports_and_passes(fine_tuned, tmp_path, offline):
    model, image = fine_tuned
    path = export_bioimageio(model, tmp_path / "tiny.zip", test_image=image)
    status, tested, failed = _bioimageio_test(path)
    assert failed == [] and status == "passed" and tested == set(FORMATS)
    raw, expected, probs = _run_formats(path, tmp_path)
    for fmt, p in probs.items():
        np.testing.assert_allclose(p, expected, atol=1e-4, rtol=0, err_msg=fmt)
    # the test input is the centre of the given image, cropped to a valid size
    n = raw.shape[-1]
    y0, x0 = (image.shape[0] - n) // 2, (image.shape[1] - n) // 2
    np.testing.assert_array_equal(raw[0, 0], image[y0 : y0 + n, x0 : x0 + n].astype(np.float32))
    back = load_model(path)
    assert back.metadata == model.metadata and back.metadata["training"]["steps"] == 3
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values())
    )
    card = _members(path)["README.md"].decode()
    assert "Steps: 3" in card and "tiny fine-tuned" in card


def test_package_output_is_predict_tiled_of_the_image(tiny_model, tmp_path):
    """The package's probabilities for a crop are predict_tiled's for the same pixels.

    predict_tiled's tiles start on the pooling grid of the mirror-padded image, i.e. at
    image coordinates -context + k * 2**(depth-1); a crop starting there, fed to the
    package, sees the same grid. The normalisation is off so that both see the same values
    (the package normalises each input on its own statistics, as napari-unet normalises
    each image on its own).
    """
    tiny_model.metadata["normalization"] = {"method": "none", "low": 1.0, "high": 99.8}
    image, _ = make_cells((200, 200), diameter=(10, 18), seed=1)
    image = image.astype(np.float32) / image.max()
    c, f = halo(3), tiny_model.pooling_factor
    start = (-c) % f
    n = input_size_for_output(100, 3)
    crop = image[start : start + n, start : start + n]
    path = export_bioimageio(tiny_model, tmp_path / "t.zip", test_image=crop, name="tiny none")
    raw, expected, probs = _run_formats(path, tmp_path)
    np.testing.assert_array_equal(raw[0, 0], crop)
    full = predict_tiled(tiny_model, image, device="cpu")
    same = full[None, :, start + c : start + n - c, start + c : start + n - c]
    np.testing.assert_allclose(expected, same, atol=1e-4, rtol=0)
    for fmt, p in probs.items():
        np.testing.assert_allclose(p, same, atol=1e-4, rtol=0, err_msg=fmt)


# -- bad input: one sentence each, no partial files


def test_model_without_config_is_refused(tmp_path):
    class Bare(UNet):
        config = property(lambda self: None)

    with pytest.raises(NapariUnetError, match="no architecture config"):
        export_bioimageio(Bare(base_channels=4, depth=3), tmp_path / "m.zip")
    with pytest.raises(NapariUnetError, match="Only napari-unet U-Nets"):
        export_bioimageio(torch.nn.Conv2d(1, 2, 3), tmp_path / "m.zip")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_without_overwrite_is_kept(tiny_model, tmp_path):
    target = tmp_path / "m.zip"
    target.write_bytes(b"keep me")
    with pytest.raises(NapariUnetError, match="already exists; pass --overwrite"):
        export_bioimageio(tiny_model, target)
    assert target.read_bytes() == b"keep me" and list(tmp_path.iterdir()) == [target]


def test_read_only_destination(tiny_model, tmp_path, monkeypatch):
    """Root ignores permissions (CI runs as root), so os.access is stubbed for the folder."""
    out = tmp_path / "ro"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if str(p) == str(out) and m == os.W_OK else real(p, m)
    )
    with pytest.raises(NapariUnetError, match="not writable"):
        export_bioimageio(tiny_model, out / "m.zip")
    assert list(out.iterdir()) == []


def test_cancelled_export_leaves_nothing(tiny_model, tmp_path):
    gen = iter_export_bioimageio(tiny_model, tmp_path / "m.zip", name="tiny model")
    for event in gen:
        if event.step == "converting to ONNX":
            break
    gen.close()
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_it(tiny_model, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(NapariUnetError, match=r'pip install "napari-unet\[export\]"'):
        export_bioimageio(tiny_model, tmp_path / "m.zip")
    assert list(tmp_path.iterdir()) == []


def test_export_leaves_the_callers_model_alone(tiny_model, tmp_path):
    """The export works on a CPU copy: the model in use keeps its mode (and device)."""
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    modes = []
    export_bioimageio(
        tiny_model,
        tmp_path / "m.zip",
        name="tiny model",
        progress=lambda e: modes.append(tiny_model.training),
    )
    assert len(modes) == 8 and all(modes)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_file_that_appears_during_the_export_is_kept(tiny_model, tmp_path):
    """Without overwrite, a file created at the target while exporting is not replaced."""
    target = tmp_path / "m.zip"

    def someone_else(event):
        if event.step == "writing the package":
            target.write_bytes(b"not ours")

    with pytest.raises(NapariUnetError, match="appeared"):
        export_bioimageio(tiny_model, target, name="tiny model", progress=someone_else)
    assert target.read_bytes() == b"not ours" and list(tmp_path.iterdir()) == [target]


@pytest.fixture
def tiny_package(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.zip"
    tiny_model.metadata["name"] = "tiny model"
    return export_bioimageio(tiny_model, path)


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "rdf.yaml":
                rdf = yaml.safe_load(data)
                change(rdf)
                data = yaml.safe_dump(rdf).encode()
            zout.writestr(name, data)
    return dst


def test_truncated_zip_is_refused(tiny_package, tmp_path):
    cut = tmp_path / "cut.zip"
    data = tiny_package.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NapariUnetError, match="not a complete zip file"):
        load_model(cut)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.zip"]


def test_bomb_sized_package_is_refused_before_unpacking(tiny_package, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("rdf.yaml", "type: model\n")
        z.writestr("napari_unet_model.safetensors", b"\0" * (64 << 20))
    with pytest.raises(NapariUnetError, match="zip bomb"):
        load_model(bomb)
    # a package whose sizes add up past the limit is refused from the directory alone
    from napari_unet.export import package

    monkeypatch.setattr(package, "_MAX_TOTAL", 1000)
    with pytest.raises(NapariUnetError, match="claims .* bytes unpacked"):
        load_model(tiny_package)


def test_foreign_and_pickle_only_packages_are_refused(tiny_package, tmp_path):
    def foreign(rdf):
        del rdf["config"]["napari_unet"]

    with pytest.raises(NapariUnetError, match="another tool; napari-unet loads only"):
        load_model(_rewrite(tiny_package, tmp_path / "f.zip", foreign))

    def pickle_only(rdf):
        foreign(rdf)
        rdf["weights"] = {"pytorch_state_dict": rdf["weights"]["pytorch_state_dict"]}

    with pytest.raises(NapariUnetError, match="only pickle weights"):
        load_model(_rewrite(tiny_package, tmp_path / "p.zip", pickle_only))

    def tampered(rdf):
        rdf["config"]["napari_unet"]["weights"] = "weights.pt"

    with pytest.raises(NapariUnetError, match="never loaded"):
        load_model(_rewrite(tiny_package, tmp_path / "t.zip", tampered))


def test_missing_rdf_is_refused(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.onnx", b"123")
    with pytest.raises(NapariUnetError, match="no rdf.yaml"):
        load_model(path)


def test_damaged_weights_fail_the_checksum(tiny_package, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(tiny_package) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "napari_unet_model.safetensors":
                data = data[:-4] + b"\x00\x00\x80\x7f"
            zout.writestr(name, data)
    with pytest.raises(NapariUnetError, match="checksum"):
        load_model(bad)


# -- the command line


def test_cli_export_and_predict_with_the_package(tiny_model, tmp_path, capsys):
    import tifffile

    from napari_unet.cli import main

    model_file = save_model(tiny_model, tmp_path / "m.safetensors", name="tiny cli model")
    out = tmp_path / "m.zip"
    assert main(["export", str(model_file), "-o", str(out), "--author", "A Person"]) == 0
    assert _rdf(out)["authors"] == [{"name": "A Person"}]
    assert main(["export", str(model_file), "-o", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, make_cells((64, 64), diameter=(8, 12), seed=2)[0])
    assert main(["predict", str(image), "-o", str(tmp_path / "l.tif"), "--model", str(out)]) == 0
    assert (tmp_path / "l.tif").exists()
    assert main(["export", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "n.zip")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_damaged_compressed_member_is_one_sentence(tiny_package, tmp_path):
    """A deflate stream that zlib cannot decode (not only a bad CRC) is refused in words."""
    packed = tmp_path / "packed.zip"
    with zipfile.ZipFile(tiny_package) as zin, zipfile.ZipFile(packed, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(packed.read_bytes())
    with zipfile.ZipFile(packed) as z:
        info = z.getinfo("napari_unet_model.safetensors")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(start + 64, start + info.compress_size - 64, 97):
        data[k] ^= 0x5A
    packed.write_bytes(bytes(data))
    with pytest.raises(NapariUnetError, match="damaged or truncated"):
        load_model(packed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed.zip"]


def test_encrypted_member_is_one_sentence(tiny_package, tmp_path):
    """zipfile cannot write encrypted members: the flag bit is set by hand, as a tool might."""
    enc = tmp_path / "enc.zip"
    data = bytearray(tiny_package.read_bytes())
    with zipfile.ZipFile(tiny_package) as z:
        info = z.getinfo("napari_unet_model.safetensors")
        pos = z.start_dir  # the central directory
    data[info.header_offset + 6] |= 0x1  # local header: general purpose flag, bit 0
    while True:  # the member's central directory entry: the same flag at offset 8
        name_len = int.from_bytes(data[pos + 28 : pos + 30], "little")
        if data[pos + 46 : pos + 46 + name_len] == info.filename.encode():
            data[pos + 8] |= 0x1
            break
        pos = data.index(b"PK\x01\x02", pos + 4)
    enc.write_bytes(bytes(data))
    with pytest.raises(NapariUnetError, match="encrypted"):
        load_model(enc)


def _folder_package(tiny_package, folder):
    with zipfile.ZipFile(tiny_package) as z:
        z.extractall(folder)
    return folder


def test_folder_package_loads(tiny_package, tiny_model, tmp_path):
    model = load_model(_folder_package(tiny_package, tmp_path / "pkg"))
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="Unix and macOS only: makes symbolic links (Windows needs rights)",
)
def test_folder_package_links_out_of_the_folder_are_refused(tiny_package, tmp_path):
    """A package folder may not point its description or weights at files elsewhere."""
    folder = _folder_package(tiny_package, tmp_path / "pkg")
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "napari_unet_model.safetensors").rename(outside)
    (folder / "napari_unet_model.safetensors").symlink_to(outside)
    with pytest.raises(NapariUnetError, match="outside the package folder"):
        load_model(folder)

    folder2 = _folder_package(tiny_package, tmp_path / "pkg2")
    rdf = tmp_path / "rdf-elsewhere.yaml"
    (folder2 / "rdf.yaml").rename(rdf)
    (folder2 / "rdf.yaml").symlink_to(rdf)
    with pytest.raises(NapariUnetError, match="outside the package folder"):
        load_model(folder2)


def test_folder_package_description_is_read_with_a_limit(tiny_package, tmp_path, monkeypatch):
    """The size check does not trust stat (a file that grows, a device that reports 0)."""
    from napari_unet.export import package

    folder = _folder_package(tiny_package, tmp_path / "pkg")
    real_stat = Path.stat
    monkeypatch.setattr(package, "_MAX_RDF", 100)

    def zero_size(self, *args, **kwargs):
        st = real_stat(self, *args, **kwargs)
        if self.name == "rdf.yaml":
            return os.stat_result((st.st_mode, *st[1:6], 0, *st[7:]))
        return st

    monkeypatch.setattr(Path, "stat", zero_size)
    with pytest.raises(NapariUnetError, match="too large"):
        load_model(folder)


def test_package_refusals_are_one_sentence(tiny_package, tmp_path):
    plain = tmp_path / "dataset.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("rdf.yaml", "type: dataset\nname: cells\n")
    with pytest.raises(NapariUnetError) as info:
        load_model(plain)
    message = str(info.value)
    assert "not a bioimage.io model package" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_model_fine_tuned_through_the_cli_exports_under_its_default_name(tmp_path, capsys):
    """`napari-unet train` a few steps from the bundled model, then `napari-unet export`."""
    import tifffile

    from napari_unet.cli import main

    image, truth = make_cells((96, 128), diameter=(10, 18), seed=3)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lbl.tif", truth)
    tuned = tmp_path / "round-001.safetensors"
    train = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lbl.tif")]
    assert main([*train, "-o", str(tuned), "--steps", "2", "--tile", "204"]) == 0
    out = tmp_path / "m.zip"
    assert main(["export", str(tuned), "-o", str(out)]) == 0, capsys.readouterr().err
    assert _rdf(out)["name"] == "napari-unet nuclei (fine-tuned)"
    back = load_model(out)
    assert back.metadata["name"] == "napari-unet nuclei (fine-tuned)"
    assert back.metadata["training"]["steps"] == 2


def test_names_from_older_model_files_are_made_valid(tiny_model, tmp_path):
    """A model fine-tuned before the name had parentheses still exports (its comma goes)."""
    tiny_model.metadata["name"] = "napari-unet nuclei, fine-tuned"
    path = export_bioimageio(tiny_model, tmp_path / "old.zip")
    assert _rdf(path)["name"] == "napari-unet nuclei fine-tuned"
    path = export_bioimageio(tiny_model, tmp_path / "named.zip", name="Lab nuclei: v2/3")
    assert _rdf(path)["name"] == "Lab nuclei v2 3"
