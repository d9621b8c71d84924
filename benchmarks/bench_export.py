"""Sharing a model: bioimage.io export time, and each weight format against predict_tiled.

Run:  python benchmarks/bench_export.py [--exports 3] [--repeats 15]

Part 1 exports the bundled model ``--exports`` times (``export_bioimageio``, default test
image) and gives the median time of the whole export and of each step.

Part 2 runs the package's three weight formats on its own test input, the way a consumer
does (normalised input, the network, the softmax): the shipped architecture with the state
dict (PyTorch, eager), TorchScript, and ONNX with onnxruntime (CPU). The reference, in the
same run, is ``napari_unet.predict_tiled`` on the same image (the test input): it mirrors
the image at its borders and predicts every pixel of it, so it computes more output pixels
than the package (whose output is the centre, without the network's context). Its tiles sit
on the pooling grid of the padded image, not of the test input, so its values are not
compared here (tests/test_export_bioimageio.py checks them on an aligned crop).
``predict_package_tile`` (napari-unet's one-tile routine, which made the test output) does
exactly the package's work. Every repeat
runs each candidate once, in turn; the table gives medians, the ratio to ``predict_tiled``
and the largest difference from the package's test output.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_unet import export_bioimageio, load_bundled_model, predict_tiled
from napari_unet.export.bioimageio import predict_package_tile
from napari_unet.normalization import Normalization


def time_exports(model, folder: Path, n: int) -> tuple[list[float], dict[str, list[float]]]:
    """Whole-export seconds, and seconds per step (the step an event announces, to the next)."""
    totals, steps = [], {}
    for k in range(n):
        marks = []
        t0 = time.perf_counter()
        export_bioimageio(
            model,
            folder / f"m{k}.zip",
            progress=lambda e, marks=marks: marks.append((e.step, time.perf_counter())),
        )
        totals.append(time.perf_counter() - t0)
        for (step, t), (_, t_next) in zip(marks, marks[1:], strict=False):
            steps.setdefault(step, []).append(t_next - t)
    return totals, steps


def load_formats(package: Path, folder: Path):
    """The package's test tensors and a callable per weight format (input: normalised x)."""
    import onnxruntime as ort

    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    spec = importlib.util.spec_from_file_location("shipped", folder / "unet_architecture.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    import yaml

    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    net = arch.UNet(**rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]).eval()
    # the file this script just wrote: weights_only refuses anything but tensors
    net.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    scripted = torch.jit.load(str(folder / "weights.torchscript.pt")).eval()
    session = ort.InferenceSession(str(folder / "weights.onnx"), providers=["CPUExecutionProvider"])

    def run_torch(module):
        def run(x):
            with torch.inference_mode():
                return torch.softmax(module(torch.from_numpy(x)), 1).numpy()

        return run

    def run_onnx(x):
        logits = session.run(None, {"raw": x})[0]
        return torch.softmax(torch.from_numpy(logits), 1).numpy()

    raw = np.load(folder / "test_input.npy")
    expected = np.load(folder / "test_output.npy")
    formats = {
        "pytorch_state_dict (eager)": run_torch(net),
        "torchscript": run_torch(scripted),
        "onnx (onnxruntime CPU)": run_onnx,
    }
    return raw, expected, formats


def measure(cands: dict[str, Callable[[], np.ndarray]], repeats: int) -> dict[str, float]:
    """Median seconds per candidate, candidates interleaved within each repeat."""
    for fn in cands.values():  # warm-up: lazy imports, thread pools, TorchScript profiling
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in cands}
    names = list(cands)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            cands[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=int, default=3, help="timed exports (3)")
    parser.add_argument("--repeats", type=int, default=15, help="timed inference repeats (15)")
    args = parser.parse_args()
    os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", tempfile.mkdtemp(prefix="bioimageio-"))
    load = os.getloadavg()[0]
    model = load_bundled_model()
    print(
        f"bundled model {model.config}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}, "
        f"load average {load:.1f} at start\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        totals, steps = time_exports(model, folder, args.exports)
        size = (folder / "m0.zip").stat().st_size
        print(f"Export of the bundled model ({args.exports} runs, package {size / 1e6:.1f} MB):\n")
        print("| step | median (s) |")
        print("|---|---:|")
        for step, ts in steps.items():
            print(f"| {step} | {statistics.median(ts):.2f} |")
        print(f"| **whole export** | **{statistics.median(totals):.2f}** |\n")

        raw, expected, formats = load_formats(folder / "m0.zip", folder / "unpacked")
        norm = Normalization.from_dict(model.metadata.get("normalization"))
        x = norm.apply(raw[0], norm.statistics(raw[0], channel_axis=0), channel_axis=0)[None]
        cands: dict[str, Callable[[], np.ndarray]] = {
            "napari_unet predict_tiled (reference)": lambda: predict_tiled(model, raw[0])[None],
            "napari_unet predict_package_tile": lambda: predict_package_tile(model, raw[0])[None],
        }
        for name, run in formats.items():
            cands[name] = lambda run=run: run(x)
        outputs = {name: fn() for name, fn in cands.items()}
        pixels = {name: out.shape[-2] * out.shape[-1] for name, out in outputs.items()}
        diffs = {
            name: f"{np.abs(out - expected).max():.1e}" if out.shape == expected.shape else "-"
            for name, out in outputs.items()
        }
        medians = measure(cands, args.repeats)

    ref = medians["napari_unet predict_tiled (reference)"]
    side_in, side_out = raw.shape[-1], expected.shape[-1]
    print(
        f"Inference on the test tensor ({side_in}x{side_in} in, {side_out}x{side_out} out, "
        f"batch 1), {args.repeats} repeats:\n"
    )
    print(
        "| candidate | output pixels | median (ms) | time vs predict_tiled "
        "| max abs diff vs test output |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, t in medians.items():
        print(f"| {name} | {pixels[name]:,} | {t * 1e3:.0f} | {t / ref:.2f} | {diffs[name]} |")


if __name__ == "__main__":
    main()
