"""The GPU path: float32 against mixed precision on a CUDA GPU, in under 5 minutes.

Run:  .venv/bin/python benchmarks/bench_gpu.py

Without CUDA it says so and exits (status 0: nothing to measure is not a failure).
With a GPU, each measurement alternates float32 and the mixed precision (bfloat16
where the GPU has it, else float16 with a gradient scaler) and reports medians:

- one 512^2-output tile forward of the bundled model (ms; 696^2 input, batch 1);
- :func:`napari_unet.predict_tiled` of a 4096^2 image (s; automatic tiles);
- fine-tuning steps per second (380 px tiles, batch 1 and 4, synthetic nuclei);
- the peak GPU memory of each (``torch.cuda.max_memory_allocated``);
- what ``precision="auto"`` picks on this GPU (the probe, and its cost).

The path under test is the library's own: channels-last, ``cudnn.benchmark``, pinned
host memory with non-blocking copies (:func:`napari_unet.tiling.batch_to_device`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from napari_unet import load_bundled_model, predict_tiled
from napari_unet.model import input_size_for_output
from napari_unet.precision import autocast, probe
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig, Trainer, prepare_training_data


def _timed(fn, device) -> float:
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _peak(fn, device) -> float:
    """GiB of GPU memory ``fn`` peaks at."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def tile_forward(model, precisions, device, repeats=20) -> dict:
    n = input_size_for_output(512, model.depth)
    x = torch.randn(1, 1, n, n, device=device).contiguous(memory_format=torch.channels_last)
    model.to(device, memory_format=torch.channels_last).eval()

    def run(p):
        with torch.inference_mode(), autocast(p, device):
            model(x)

    times = {p: [] for p in precisions}
    for p in precisions:
        for _ in range(3):
            run(p)  # cudnn.benchmark picks its algorithms here
    for _ in range(repeats):
        for p in precisions:
            times[p].append(_timed(lambda p=p: run(p), device))
    return {
        p: (statistics.median(t) * 1e3, _peak(lambda p=p: run(p), device)) for p, t in times.items()
    }


def big_predict(model, precisions, device, size, repeats=2) -> dict:
    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    predict_tiled(model, image[:1024, :1024], device=device)  # warm-up
    times = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            times[p].append(
                _timed(lambda p=p: predict_tiled(model, image, device=device, precision=p), device)
            )
    return {
        p: (
            statistics.median(t),
            _peak(lambda p=p: predict_tiled(model, image, device=device, precision=p), device),
        )
        for p, t in times.items()
    }


def train_speed(precisions, device, batch_size, steps=20) -> dict:
    image, labels = make_cells((1024, 1024), seed=5)
    trainers = {}
    for p in precisions:
        cfg = TrainConfig.fine_tune(
            steps=10**6, precision=p, batch_size=batch_size, validation_fraction=0.0
        )
        model = load_bundled_model()
        data = prepare_training_data(image, labels, model=model, config=cfg)
        trainers[p] = Trainer(model, data, cfg, device=str(device))
        for _ in range(3):
            trainers[p].train_step(3e-4)
    times = {p: [] for p in precisions}
    for _ in range(steps):
        for p in precisions:
            times[p].append(_timed(lambda p=p: trainers[p].train_step(3e-4), device))
    return {
        p: (1.0 / statistics.median(t), _peak(lambda p=p: trainers[p].train_step(3e-4), device))
        for p, t in times.items()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="side of the big prediction")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "No CUDA GPU here (torch.cuda.is_available() is False): nothing measured. "
            "Run this on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
        return 0
    start = time.perf_counter()
    device = torch.device("cuda")
    mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    precisions = ["fp32", mixed]
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    result = probe(device)
    print(
        f"Probe: {result.seconds:.2f} s, predict x{result.predict_speedup}, train "
        f"x{result.train_speedup}: {result.choice('predict').describe()}"
    )
    model = load_bundled_model()
    rows = [("512^2 tile forward", "ms", tile_forward(model, precisions, device))]
    rows.append(
        (f"{args.size}^2 predict_tiled", "s", big_predict(model, precisions, device, args.size))
    )
    for b in (1, 4):
        rows.append((f"training, batch {b}", "steps/s", train_speed(precisions, device, b)))
    print(f"\n| measurement | unit | fp32 | {mixed} | ratio | peak GiB fp32 | peak GiB {mixed} |")
    print("|---|---|---|---|---|---|---|")
    for name, unit, r in rows:
        (a, ma), (b, mb) = r["fp32"], r[mixed]
        ratio = b / a if unit == "steps/s" else a / b
        print(f"| {name} | {unit} | {a:.3g} | {b:.3g} | {ratio:.2f}x | {ma:.2f} | {mb:.2f} |")
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
