"""float32 against mixed precision (bfloat16; float16 on a GPU without it), side by side.

Run:  .venv/bin/python benchmarks/bench_precision.py [--size 2048] [--budget 120] [--device cpu]

In one process, every measurement alternates the two precisions (so that other work on a
shared machine slows both alike) and reports medians and ratios:

- the machine: CPU (and whether it has AMX), GPU, torch version and threads;
- what ``precision="auto"`` decides here: the probe (:func:`napari_unet.precision.probe`),
  its speedups and its cost in seconds;
- the matmul peak of each precision (``torch.mm`` of 1024^2 matrices, GFLOP/s);
- prediction: :func:`napari_unet.segment.segment` of a ``--size``^2 synthetic image and of
  the real HeLa frame ``hela_t19`` (700x1100), seconds and AP@0.5/AP@0.75 of the labels
  against the truth, and how far the mixed labels are from the float32 ones (AP of one
  against the other);
- training: the bundled model fine-tuned on ``hela_t0``: seconds per step, then each
  precision trained for the number of steps that fit ``--budget`` seconds at its own
  measured speed (a fixed step count, so that the machine's load cannot change the
  model) and scored on ``hela_t19``; the same on a synthetic image (left half annotated,
  scored on a fresh image).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet import load_bundled_model
from napari_unet.fileio import read_image
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.precision import autocast, machine_key, probe
from napari_unet.segment import segment
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig, Trainer, prepare_training_data

_ROOT = Path(__file__).resolve().parents[1]
# the workplace's shared folder beside the checkout (../shared, or ../../shared for a worktree)
REAL = (
    next(
        (
            p
            for p in (_ROOT.parent / "shared", _ROOT.parents[1] / "shared")
            if (p / "data").is_dir()
        ),
        _ROOT.parent / "shared",
    )
    / "data"
    / "real"
)


def machine(device: torch.device) -> str:
    """One line: CPU and AMX, GPU, torch, threads."""
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = "AMX" if "amx_bf16" in text else "no AMX"
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    key = machine_key("cpu").split(" | ")[0].removeprefix("cpu: ")
    return (
        f"{key} ({flags}, {torch.get_num_threads()} threads){gpu}, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(precisions, device, n=1024, repeats=5) -> dict[str, float]:
    """GFLOP/s of ``torch.mm`` under each precision's autocast, alternating blocks."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = {p: [] for p in precisions}
    for p in precisions:  # warm-up
        with autocast(p, device):
            torch.mm(a, b)
    for _ in range(repeats):
        for p in precisions:
            _sync(device)
            t0 = time.perf_counter()
            with autocast(p, device):
                for _ in range(4):
                    torch.mm(a, b)
            _sync(device)
            times[p].append((time.perf_counter() - t0) / 4)
    return {p: 2 * n**3 / statistics.median(t) / 1e9 for p, t in times.items()}


def _ap(true, pred, threshold):
    return pooled_ap([match_instances(true, pred)], threshold)


def predict_side_by_side(model, images, precisions, device, repeats) -> list[dict]:
    """Seconds and AP of :func:`segment` per image and precision, alternating."""
    rows = []
    for name, image, truth in images:
        times = {p: [] for p in precisions}
        labels = {}
        for _ in range(repeats):
            for p in precisions:
                t0 = time.perf_counter()
                result = segment(model, image, rescale=1.0, precision=p, device=device)
                times[p].append(time.perf_counter() - t0)
                labels[p] = result.labels
        for p in precisions:
            rows.append(
                {
                    "image": name,
                    "precision": p,
                    "seconds": statistics.median(times[p]),
                    "ap50": _ap(truth, labels[p], 0.5),
                    "ap75": _ap(truth, labels[p], 0.75),
                    "vs_fp32": _ap(labels["fp32"], labels[p], 0.5),
                }
            )
    return rows


def _trainer(model_factory, image, labels, precision, steps, device, region=None):
    cfg = TrainConfig.fine_tune(steps=steps, precision=precision, validation_fraction=0.0)
    model = model_factory()
    data = prepare_training_data(image, labels, region, model=model, config=cfg)
    return Trainer(model, data, cfg, device=device)


def _fine_tune_ap(task, precision, steps, device) -> tuple[float, float]:
    """AP@0.5 and AP@0.75 on the task's test image after ``steps`` steps in ``precision``."""
    _, image, labels, region, test_image, test_truth = task
    trainer = _trainer(load_bundled_model, image, labels, precision, steps, device, region)
    for _ in trainer.run():
        pass
    pred = segment(trainer.model, test_image, rescale=1.0, precision="fp32").labels
    return _ap(test_truth, pred, 0.5), _ap(test_truth, pred, 0.75)


def train_side_by_side(tasks, precisions, device, budget, probe_steps) -> list[dict]:
    """Seconds per step (alternating blocks), then ``budget`` seconds' worth of steps each,
    and float32 again for the mixed run's step count (the same steps: numerics alone)."""
    rows = []
    for task in tasks:
        name, image, labels, region = task[:4]
        per_step = {p: [] for p in precisions}
        trainers = {
            p: _trainer(load_bundled_model, image, labels, p, 10**6, device, region)
            for p in precisions
        }
        for p in precisions:  # warm-up step
            trainers[p].train_step(3e-4)
        for _ in range(probe_steps):
            for p in precisions:
                _sync(device)
                t0 = time.perf_counter()
                trainers[p].train_step(3e-4)
                _sync(device)
                per_step[p].append(time.perf_counter() - t0)
        counts = {}
        for p in precisions:
            step_s = statistics.median(per_step[p])
            counts[p] = steps = max(1, int(budget / step_s))
            ap50, ap75 = _fine_tune_ap(task, p, steps, device)
            rows.append(
                {
                    "task": name,
                    "precision": p,
                    "steps_per_s": 1.0 / step_s,
                    "steps": steps,
                    "ap50": ap50,
                    "ap75": ap75,
                }
            )
        fewest = min(counts.values())
        for p in precisions:
            if counts[p] > fewest:
                ap50, ap75 = _fine_tune_ap(task, p, fewest, device)
                row = {"task": name, "precision": f"{p}, same steps", "steps": fewest}
                rows.append({**row, "steps_per_s": float("nan"), "ap50": ap50, "ap75": ap75})
    return rows


def _table(rows: list[dict], keys: list[str]) -> str:
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="synthetic image side (px)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating predictions each")
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds each")
    ap.add_argument("--probe-steps", type=int, default=3, help="timed training steps each")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-predict", action="store_true")
    ap.add_argument("--no-real", action="store_true", help="skip the HeLa images")
    ap.add_argument("--real", type=Path, default=REAL, help="folder of hela_t0/t19 (+ labels)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    mixed = "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"
    precisions = ["fp32", mixed]
    print(f"Machine: {machine(device)}")
    for flags in (True, False):  # as "auto" runs it, then timed whatever the CPU's flags
        result = probe(device, flags=flags)
        auto = result.choice("predict").describe()
        print(
            f"Probe{'' if flags else ' (timed)'}: {result.seconds:.2f} s; predict speedup "
            f"{result.predict_speedup}, train speedup {result.train_speedup}; {auto}"
        )
    peak = matmul_peak(precisions, device)
    print("matmul peak (GFLOP/s): " + ", ".join(f"{p} {g:.3g}" for p, g in peak.items()))
    model = load_bundled_model()
    img, truth = make_cells((args.size, args.size), seed=11)
    images = [(f"synthetic {args.size}^2", img, truth)]
    real = args.real.resolve()
    if not args.no_real and (real / "hela_t19.tif").exists():
        images.append(
            (
                "HeLa t19",
                read_image(real / "hela_t19.tif"),
                read_image(real / "hela_t19_labels.tif"),
            )
        )
    if not args.no_predict:
        rows = predict_side_by_side(model, images, precisions, device, args.repeats)
        print("\nPrediction (segment, medians):\n")
        print(_table(rows, ["image", "precision", "seconds", "ap50", "ap75", "vs_fp32"]))
        for name, *_ in images:
            s = {r["precision"]: r["seconds"] for r in rows if r["image"] == name}
            print(f"{name}: float32 / {mixed} time = {s['fp32'] / s[mixed]:.2f}x")
    if args.no_train:
        return 0
    tasks = []
    if not args.no_real and (real / "hela_t0.tif").exists():
        t0, l0 = read_image(real / "hela_t0.tif"), read_image(real / "hela_t0_labels.tif")
        tasks.append(("HeLa t0 -> t19", t0, l0, None, images[-1][1], images[-1][2]))
    simg, slab = make_cells((512, 512), seed=21)
    region = np.zeros(slab.shape, bool)
    region[:, :256] = True  # the left half annotated
    timg, tlab = make_cells((512, 512), seed=22)
    tasks.append(("synthetic 512^2", simg, slab, region, timg, tlab))
    rows = train_side_by_side(tasks, precisions, device, args.budget, args.probe_steps)
    print(f"\nTraining (fine-tune of the bundled model, {args.budget:g} s of steps each):\n")
    print(_table(rows, ["task", "precision", "steps_per_s", "steps", "ap50", "ap75"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
