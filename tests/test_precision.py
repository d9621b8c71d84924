"""Precision as a setting: refusals, bf16 prediction and training, the measured "auto"."""

import threading
import time

import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError, UNet, load_bundled_model, predict_tiled
from napari_unet import precision as P
from napari_unet.cli import main
from napari_unet.postprocess import labels_from_probabilities
from napari_unet.segment import segment
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig, Trainer, new_model, prepare_training_data

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (none here): the CUDA autocast and GradScaler paths",
)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A data folder of its own, no pin, no results from earlier probes of this process."""
    monkeypatch.setenv("NAPARI_UNET_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NAPARI_UNET_PRECISION", raising=False)
    monkeypatch.setattr(P, "_results", {})
    monkeypatch.setattr(P, "_threads", {})
    return tmp_path


def _small_trainer(precision, steps, device):
    image, labels = make_cells((96, 128), diameter=(10, 18), seed=3)
    cfg = TrainConfig(base_channels=4, depth=3, tile_size=92, steps=steps, precision=precision)
    model = new_model(cfg)
    data = prepare_training_data(image, labels, model=model, config=cfg)
    return Trainer(model, data, cfg, device=device)


def _fake_probe(monkeypatch, predict, train, delay=0.0):
    calls = []

    def probe(device="cpu", **_):
        calls.append(P.machine_key(device))
        time.sleep(delay)
        return P.ProbeResult(P.machine_key(device), "bf16", predict, train, delay)

    monkeypatch.setattr(P, "probe", probe)
    return calls


# -- refusals


@pytest.mark.parametrize(
    "value, device, words",
    [
        ("fp8", "cpu", "'fp8' is not one of auto, fp32, bf16, fp16"),
        ("fp16", "cpu", "fp16 runs only on a CUDA GPU"),
        (16, "cpu", "16 is not one of"),
        ("bf16", "mps", "not supported; use fp32"),
    ],
)
def test_bad_precisions_are_refused_in_one_sentence(value, device, words):
    with pytest.raises(NapariUnetError, match=words) as info:
        P.check_precision(value, device)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_the_api_and_training_refuse_before_any_work(tiny_model):
    with pytest.raises(NapariUnetError, match="fp16 runs only on a CUDA GPU"):
        predict_tiled(tiny_model, np.zeros((40, 40)), precision="fp16", device="cpu")
    with pytest.raises(NapariUnetError, match="'fp8' is not one of"):
        TrainConfig(precision="fp8")
    TrainConfig(precision="fp16")  # the name is fine; the device is checked by the Trainer
    with pytest.raises(NapariUnetError, match="fp16 runs only on a CUDA GPU"):
        _small_trainer("fp16", 1, "cpu")


def test_cli_refuses_bad_precisions_in_one_line(tmp_path, capsys):
    import tifffile

    image = tmp_path / "im.tif"
    tifffile.imwrite(image, make_cells((64, 64), seed=1)[0])
    out = tmp_path / "out.tif"
    for value, words in (("fp8", "'fp8' is not one of"), ("fp16", "fp16 runs only on a CUDA")):
        argv = ["predict", str(image), "-o", str(out), "--precision", value, "--device", "cpu"]
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and "Traceback" not in err[0]
        assert not out.exists()


def test_cli_says_which_precision_ran(tmp_path, capsys, tiny_model):
    import tifffile

    from napari_unet import save_model

    image, labels = make_cells((64, 64), seed=1)
    tifffile.imwrite(tmp_path / "im.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    save_model(tiny_model, tmp_path / "m.safetensors")
    base = ["predict", str(tmp_path / "im.tif"), "--model", str(tmp_path / "m.safetensors")]
    base += ["--rescale", "1", "--device", "cpu", "--overwrite", "-o", str(tmp_path / "o.tif")]
    assert main([*base, "--precision", "bf16"]) == 0
    assert "Precision: bfloat16 (as asked)" in capsys.readouterr().err
    assert main(base) == 0  # auto, pinned to fp32 in the tests
    assert "Precision: float32 (auto: set by $NAPARI_UNET_PRECISION)" in capsys.readouterr().err
    train = ["train", "--image", str(tmp_path / "im.tif"), "--labels", str(tmp_path / "lab.tif")]
    train += ["--from", "scratch", "--width", "4", "--tile", "124", "--steps", "1"]
    train += ["--device", "cpu", "-o", str(tmp_path / "t.safetensors"), "--precision", "bf16"]
    assert main(train) == 0
    assert "Precision: bfloat16 (as asked)" in capsys.readouterr().err


# -- bf16 prediction: its own tolerance, and tiles agree with the whole image


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(1)
    return UNet(base_channels=4, depth=5, dropout=0.0)


def test_bf16_prediction_is_close_to_fp32_and_independent_of_tiling(small_net, rng):
    image = (rng.random((120, 104)) * 4000).astype(np.uint16)
    ref = predict_tiled(small_net, image, tile_shape=1000)
    whole = predict_tiled(small_net, image, tile_shape=1000, precision="bf16")
    assert whole.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: about 0.4% per rounding, some 20 layers deep
    diff = np.abs(whole - ref)
    assert 0 < diff.max() < 0.08 and diff.mean() < 5e-3, (diff.max(), diff.mean())
    for tile, batch in ((48, 1), ((64, 112), 2)):
        tiled = predict_tiled(small_net, image, tile_shape=tile, batch_size=batch, precision="bf16")
        np.testing.assert_allclose(tiled, whole, atol=1e-2)


def test_bf16_tiles_and_whole_image_give_the_same_labels():
    model = load_bundled_model()
    image = make_cells((96, 96), diameter=(12, 20), seed=4)[0]
    whole = predict_tiled(model, image, tile_shape=1000, precision="bf16")
    tiled = predict_tiled(model, image, tile_shape=32, batch_size=2, precision="bf16")
    a, b = labels_from_probabilities(whole), labels_from_probabilities(tiled)
    assert a.max() >= 3  # there are objects to compare
    np.testing.assert_array_equal(a, b)


def test_segment_says_which_precision_ran(small_net, rng, fresh, monkeypatch):
    image = make_cells((64, 64), seed=2)[0]
    result = segment(small_net, image, rescale=1.0, precision="bf16", device="cpu")
    assert result.precision.name == "bf16" and result.precision.reason == "as asked"
    assert result.precision.describe() == "Precision: bfloat16 (as asked)"
    monkeypatch.setenv("NAPARI_UNET_PRECISION", "fp32")
    result = segment(small_net, image, rescale=1.0, device="cpu")  # "auto" by default
    assert result.precision.name == "fp32"
    assert "NAPARI_UNET_PRECISION" in result.precision.describe()


def test_zarr_and_3d_paths_take_the_precision(small_net, tmp_path):
    from napari_unet.bigimage import predict_to_zarr

    image = make_cells((64, 80), seed=5)[0]
    fp32 = predict_to_zarr(small_net, image, tmp_path / "a.zarr", chunk=32, probabilities=True)
    bf16 = predict_to_zarr(
        small_net, image, tmp_path / "b.zarr", chunk=32, probabilities=True, precision="bf16"
    )
    assert fp32.metadata["precision"] == "fp32" and bf16.metadata["precision"] == "bf16"
    a, b = fp32.probabilities.compute(), bf16.probabilities.compute()
    assert 0 < np.abs(a - b).max() < 0.08
    in_memory = predict_tiled(small_net, image, precision="bf16")
    np.testing.assert_allclose(b, in_memory, atol=1e-2)
    stack = np.stack([image[:, :64]] * 3)
    views = segment(small_net, stack, stack="views", rescale=1.0, precision="bf16")
    assert views.precision.name == "bf16"


# -- "auto": the probe and its cache


def test_auto_probes_once_per_machine_and_reuses_the_cache(fresh, monkeypatch):
    calls = _fake_probe(monkeypatch, predict=2.5, train=1.9)
    first = P.resolve_precision("auto", "cpu")
    assert calls == [P.machine_key("cpu")]
    assert first.name == "bf16" and "2.5x faster" in first.reason
    assert P.resolve_precision("auto", "cpu", purpose="train").name == "bf16"
    assert (fresh / P.CACHE_FILE).exists()
    # a new process (no results in memory) reads the cache instead of probing
    monkeypatch.setattr(P, "_results", {})
    assert P.resolve_precision("auto", "cpu").name == "bf16"
    assert len(calls) == 1
    # another machine (or torch) probes again, and both stay cached
    monkeypatch.setattr(P, "_cpu_name", lambda: "Another CPU")
    monkeypatch.setattr(P, "_results", {})
    assert P.resolve_precision("auto", "cpu").name == "bf16"
    assert len(calls) == 2 and "Another CPU" in calls[1]
    assert len(P._read_cache()) == 2


def test_auto_keeps_fp32_where_bf16_is_not_fast_enough(fresh, monkeypatch):
    _fake_probe(monkeypatch, predict=1.2, train=None)
    choice = P.resolve_precision("auto", "cpu")
    assert choice.name == "fp32" and "only 1.20x" in choice.reason
    assert P.resolve_precision("auto", "cpu", purpose="train").name == "fp32"
    # faster for prediction, not for training: each follows its own measurement
    result = P.ProbeResult("k", "bf16", 1.6, 1.1, 0.1)
    assert result.choice("predict").name == "bf16"
    assert result.choice("train").name == "fp32"
    assert P.ProbeResult("k", "bf16", None, None, 0.1).choice("predict").name == "fp32"


def test_a_slow_probe_never_holds_up_the_run(fresh, monkeypatch):
    _fake_probe(monkeypatch, predict=3.0, train=3.0, delay=1.5)
    t0 = time.perf_counter()
    choice = P.resolve_precision("auto", "cpu", wait=0.2)
    assert time.perf_counter() - t0 < 1.0
    assert choice.name == "fp32" and "still measuring" in choice.reason
    for thread in list(P._threads.values()):
        thread.join()
    assert P.resolve_precision("auto", "cpu").name == "bf16"  # the next run uses it


def test_probe_runs_in_a_background_thread(fresh, monkeypatch):
    seen = []

    def probe(device="cpu", **_):
        seen.append(threading.current_thread() is threading.main_thread())
        return P.ProbeResult(P.machine_key(device), "bf16", None, None, 0.0)

    monkeypatch.setattr(P, "probe", probe)
    P.resolve_precision("auto", "cpu")
    assert seen == [False]


def test_a_failing_probe_means_fp32(fresh, monkeypatch):
    def probe(device="cpu", **_):
        raise RuntimeError("no bf16 kernels")

    monkeypatch.setattr(P, "probe", probe)
    assert P.resolve_precision("auto", "cpu").name == "fp32"
    assert P._read_cache() == {}  # not remembered: the next process measures again


def test_compare_stops_as_soon_as_mixed_is_clearly_slower():
    runs = []
    costs = {"fp32": 0.01, "bf16": 0.05}

    def timed(fn):  # a clock that the machine's load cannot move
        fn()
        return costs[runs[-1]]

    speedup = P._compare(runs.append, "bf16", timed, 3, time.perf_counter() + 10)
    assert speedup is None
    assert runs == ["fp32", "bf16", "fp32", "bf16"]  # warm-up and one pair only
    runs.clear()
    costs.update(fp32=0.03, bf16=0.01)
    assert P._compare(runs.append, "bf16", timed, 3, time.perf_counter() + 10) == 3.0
    assert len(runs) == 8  # warm-up and three pairs
    runs.clear()  # past the deadline: what is known so far
    assert P._compare(runs.append, "bf16", timed, 3, time.perf_counter() - 1) == 3.0
    assert len(runs) == 4


def test_cpu_flags_answer_without_timing_where_bf16_has_no_instructions(monkeypatch):
    timed = []

    def compare(run, mixed, timed_, pairs, deadline):
        timed.append(pairs)
        return 0.5  # as a CPU that emulates bf16 would measure

    monkeypatch.setattr(P, "_compare", compare)
    monkeypatch.setattr(P.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "fma"})
    result = P.probe("cpu")
    assert timed == [] and result.seconds < 0.5
    assert result.choice("predict").reason == (
        "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)"
    )
    P.probe("cpu", flags=False)  # timing asked for anyway
    assert timed == [3]
    timed.clear()
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    P.probe("cpu")  # an AMX CPU is timed
    assert timed == [3]
    monkeypatch.setattr(P, "_cpu_flags", lambda: None)  # flags unknown: timed
    P.probe("cpu")
    assert timed == [3, 3]


def test_real_probe_on_this_machine(fresh):
    result = P.probe("cpu", flags=False)
    assert result.key == P.machine_key("cpu") and result.mixed == "bf16"
    assert result.seconds < P.PROBE_BUDGET + 5  # bounded, whatever the machine
    if result.predict_speedup is None:  # bf16 slower already in the cheap first check
        assert result.train_speedup is None


# -- training in bf16


def test_bf16_training_keeps_float32_weights_and_learns():
    trainer = _small_trainer("bf16", 4, "cpu")
    model = trainer.model
    assert trainer.precision.name == "bf16" and trainer.scaler is None
    before = [p.detach().clone() for p in model.parameters()]
    events = list(trainer.run())
    assert "Precision: bfloat16" in events[0].message
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(np.isfinite(e.loss) for e in events if e.loss is not None)


# -- CUDA (run where a GPU is lent)


@needs_cuda
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_cuda_mixed_prediction_is_close_to_fp32(small_net, rng, name):
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    image = (rng.random((120, 104)) * 4000).astype(np.uint16)
    ref = predict_tiled(small_net, image, device="cuda")
    mixed = predict_tiled(small_net, image, device="cuda", precision=name)
    assert np.abs(mixed - ref).max() < 0.08
    tiled = predict_tiled(small_net, image, device="cuda", precision=name, tile_shape=32)
    np.testing.assert_allclose(tiled, mixed, atol=1e-2)


@needs_cuda
def test_cuda_fp16_training_uses_a_gradient_scaler():
    trainer = _small_trainer("fp16", 3, "cuda")
    assert trainer.scaler is not None
    list(trainer.run())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


@needs_cuda
def test_cuda_auto_probes_the_gpu(fresh):
    result = P.probe("cuda")
    assert result.key.startswith("cuda: ")
    assert result.predict_speedup is not None
