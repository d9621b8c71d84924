import os
import pickle
import struct

import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError, UNet, load_model, predict_tiled, save_model
from napari_unet.modelfile import read_model_info


def test_round_trip(tmp_path, tiny_model, rng):
    path = tmp_path / "m.safetensors"
    tiny_model.metadata = {"normalization": {"method": "percentile", "low": 2.0, "high": 99.0}}
    save_model(tiny_model, path, steps=np.int64(12), scores={"ap50": np.float32(0.5)})
    loaded = load_model(path)
    assert loaded.config == tiny_model.config
    assert loaded.metadata["steps"] == 12
    assert loaded.metadata["normalization"]["low"] == 2.0
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    img = rng.random((40, 40)).astype(np.float32)
    np.testing.assert_array_equal(predict_tiled(tiny_model, img), predict_tiled(loaded, img))
    assert read_model_info(path)["config"]["base_channels"] == 4


def test_save_is_atomic(tmp_path, tiny_model, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, version=1)
    before = path.read_bytes()

    import napari_unet.modelfile as mf

    def broken_jsonable(value):
        raise KeyboardInterrupt  # an interruption in the middle of a save

    real_write = mf.atomic_write

    class Boom(Exception):
        pass

    def failing_atomic_write(p):
        cm = real_write(p)

        class Wrapper:
            def __enter__(self):
                fh = cm.__enter__()
                fh.write(b"partial")
                return self

            def write(self, data):
                raise Boom("disk full")

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(mf, "atomic_write", failing_atomic_write)
    with pytest.raises(Boom):
        save_model(tiny_model, path, version=2)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert load_model(path).metadata["version"] == 1


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("evil.pt", "evil.safetensors", "evil.bin"):
        p = tmp_path / name
        with open(p, "wb") as fh:
            pickle.dump(Evil(), fh)
        with pytest.raises(NapariUnetError):
            load_model(p)
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.safetensors")
    with pytest.raises(NapariUnetError, match="zip archive"):
        load_model(tmp_path / "zip.safetensors")
    assert not marker.exists()


def test_corrupt_truncated_and_foreign_files(tmp_path, tiny_model):
    good = tmp_path / "good.safetensors"
    save_model(tiny_model, good)
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(NapariUnetError, match="truncated|corrupt"):
        load_model(tmp_path / "trunc.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(NapariUnetError, match="too short"):
        load_model(tmp_path / "empty.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(NapariUnetError, match="not a napari-unet model"):
        load_model(tmp_path / "foreign.safetensors")
    # weights that do not match the stated architecture
    other = UNet(base_channels=8, depth=3)
    save_model(other, tmp_path / "other.safetensors")
    raw = (tmp_path / "other.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + n].replace(b'\\"base_channels\\": 8', b'\\"base_channels\\": 4')
    assert header != raw[8 : 8 + n]
    header = header.ljust(n)
    (tmp_path / "mismatch.safetensors").write_bytes(raw[:8] + header + raw[8 + n :])
    with pytest.raises(NapariUnetError, match="do not match"):
        load_model(tmp_path / "mismatch.safetensors")
    with pytest.raises(NapariUnetError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(NapariUnetError, match="folder"):
        load_model(tmp_path)


def test_model_argument_is_a_model_or_a_loader(tiny_model):
    from napari_unet.modelfile import resolve_model_arg

    assert resolve_model_arg(tiny_model) is tiny_model
    assert resolve_model_arg(lambda: tiny_model) is tiny_model
