"""Images bigger than memory: peak memory and throughput of lazy prediction into zarr.

A ``--size`` x ``--size`` uint8 zarr image (synthetic nuclei, 1024 x 1024 chunks) is
segmented by :func:`napari_unet.bigimage.predict_to_zarr` with a small U-Net
(depth 5, ``--width`` base channels, briefly trained on synthetic nuclei so that the
labels are realistic), and compared with in-memory prediction
(:func:`predict_tiled` + :func:`labels_from_probabilities`, default settings) of a
``--crop`` x ``--crop`` crop. Every measurement runs in a fresh process, so its peak
RSS (``ru_maxrss``) is its own. Then a LocalCluster with ``--workers`` single-thread
workers runs the same job; worker RSS is read on the workers.

    python benchmarks/bench_bigimage.py [--size 16384] [--crop 4096] [--width 4]
        [--chunk 1024] [--workers 2] [--skip-cluster] [--work /tmp/bench_bigimage]

Prints a markdown section. The machine is shared: read the ratios, and rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """CPU seconds of this process, all threads: less sensitive than wall time to the
    other jobs of a shared machine."""
    t = os.times()
    return t.user + t.system


def make_input(path: Path, size: int) -> None:
    """Tile a 2048 x 2048 synthetic nuclei image, flipped per tile, into a zarr array."""
    import zarr

    from napari_unet.synthetic import make_cells

    if (path / "zarr.json").exists():
        z = zarr.open_array(path, mode="r")
        if z.shape == (size, size):
            return
    patch, _ = make_cells((2048, 2048), seed=0, diameter=(12, 30), dtype=np.uint8)
    z = zarr.open_array(path, mode="w", shape=(size, size), chunks=(1024, 1024), dtype="uint8")
    p = 2048
    for i in range(0, size, p):
        for j in range(0, size, p):
            tile = patch[:: (-1) ** (i // p), :: (-1) ** (j // p)]
            z[i : i + p, j : j + p] = tile[: size - i, : size - j]


def make_model(path: Path, width: int, seconds: float) -> None:
    from napari_unet import save_model
    from napari_unet.synthetic import make_cells
    from napari_unet.training import TrainConfig, train_model

    if path.exists():
        return
    image, labels = make_cells((512, 512), seed=1, diameter=(12, 30), dtype=np.uint8)
    config = TrainConfig(base_channels=width, steps=None, time_limit=seconds)
    model = train_model([image], [labels], config=config, device="cpu")
    save_model(model, path)


def run_inmemory(args) -> dict:
    import zarr

    from napari_unet import labels_from_probabilities, load_model, predict_tiled

    model = load_model(args.model)
    z = zarr.open_array(args.input, mode="r")
    c = args.crop
    y0 = (z.shape[0] - c) // 2
    image = np.asarray(z[y0 : y0 + c, y0 : y0 + c])
    predict_tiled(model, image[:256, :256])  # warm-up
    t, cpu = time.perf_counter(), cpu_s()
    prob = predict_tiled(model, image)
    t_pred, cpu_pred = time.perf_counter() - t, cpu_s() - cpu
    t, cpu = time.perf_counter(), cpu_s()
    labels = labels_from_probabilities(prob)
    t_lab, cpu_lab = time.perf_counter() - t, cpu_s() - cpu
    return {
        "pixels": c * c,
        "predict_s": t_pred,
        "label_s": t_lab,
        "predict_cpu_s": cpu_pred,
        "label_cpu_s": cpu_lab,
        "objects": int(labels.max()),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_lazy(args, cluster: bool) -> dict:
    from napari_unet import load_model
    from napari_unet.bigimage import iter_predict_to_zarr, open_image_lazily

    model = load_model(args.model)
    image = open_image_lazily(args.input)
    out = Path(args.work) / ("out-cluster.zarr" if cluster else "out.zarr")
    client = None
    if cluster:
        import distributed

        cl = distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, dashboard_address=None
        )
        client = distributed.Client(cl)
        client.run(lambda: __import__("napari_unet.bigimage"))  # imports outside the clock
        worker_cpu0 = sum(client.run(cpu_s).values())
    phases: dict[str, float] = {}
    cpus: dict[str, float] = {}
    t0 = last = time.perf_counter()
    cpu_last = cpu_s()
    phase = None
    gen = iter_predict_to_zarr(
        model,
        image,
        out,
        chunk=args.chunk,
        overwrite=True,
        scheduler=client,
        num_workers=args.threads,
    )
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if event.phase != phase:
            now, cpu_now = time.perf_counter(), cpu_s()
            if phase is not None:
                phases[phase] = phases.get(phase, 0.0) + now - last
                cpus[phase] = cpus.get(phase, 0.0) + cpu_now - cpu_last
            phase, last, cpu_last = event.phase, now, cpu_now
    total = time.perf_counter() - t0
    info = {
        "pixels": int(np.prod(image.shape)),
        "total_s": total,
        "phases_s": phases,
        "phases_cpu_s": cpus,
        "objects": result.n_objects,
        "peak_rss_mb": peak_rss_mb(),
    }
    if client is not None:
        info["worker_cpu_s"] = sum(client.run(cpu_s).values()) - worker_cpu0
        rss = client.run(peak_rss_mb)
        info["worker_peak_rss_mb"] = sorted(rss.values())
        client.close()
        cl.close()
    return info


def child(args) -> None:
    if args.run == "inmemory":
        info = run_inmemory(args)
    else:
        info = run_lazy(args, cluster=args.run == "cluster")
    print("RESULT " + json.dumps(info))


def measure(args, what: str, threads: int | None = None) -> dict:
    cmd = [
        sys.executable, __file__, "--child", what, "--input", str(args.input),
        "--model", str(args.model), "--work", args.work, "--crop", str(args.crop),
        "--chunk", str(args.chunk), "--workers", str(args.workers),
    ]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--crop", type=int, default=4096)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="local scheduler threads")
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--work", default="/tmp/bench_bigimage")
    ap.add_argument("--child", dest="run", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--input", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        child(args)
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.input = work / f"input-{args.size}.zarr"
    args.model = work / f"model-w{args.width}.safetensors"
    make_input(args.input, args.size)
    make_model(args.model, args.width, args.train_seconds)

    import torch

    # the baseline before and after the long runs, to bracket the machine's load
    mem = [measure(args, "inmemory")]
    lazy = measure(args, "threads", args.threads)
    mem.append(measure(args, "inmemory"))
    cluster = None if args.skip_cluster else measure(args, "cluster")
    for name in ("out.zarr", "out-cluster.zarr"):
        shutil.rmtree(work / name, ignore_errors=True)
    (Path(args.work) / "results.json").write_text(
        json.dumps({"inmemory": mem, "threads": lazy, "cluster": cluster}, indent=1)
    )
    report(args, mem, lazy, cluster, torch)


def report(args, mem: list[dict], lazy: dict, cluster: dict | None, torch) -> None:
    def rate(pixels: float, seconds: float) -> str:
        return f"{pixels / seconds / 1e6:.2f}"

    print(
        f"\n### Images bigger than memory ({platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__})\n"
    )
    print(
        f"U-Net depth 5, base width {args.width} (trained {args.train_seconds:.0f} s on synthetic "
        f"nuclei), uint8 synthetic nuclei, chunk {args.chunk}, default tiles, default "
        "post-processing (watershed). MPx/s of wall time and, in brackets, per CPU-second "
        "(less sensitive to the other jobs of this shared machine).\n"
    )
    print("| run | predict MPx/s | labels MPx/s | end to end MPx/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for k, m in enumerate(mem):
        px = m["pixels"]
        print(
            f"| in memory, {args.crop}² crop ({'before' if k == 0 else 'after'}) "
            f"| {rate(px, m['predict_s'])} ({rate(px, m['predict_cpu_s'])}) "
            f"| {rate(px, m['label_s'])} ({rate(px, m['label_cpu_s'])}) "
            f"| {rate(px, m['predict_s'] + m['label_s'])} | {m['peak_rss_mb']:.0f} |"
        )
    for name, r in (("threaded", lazy), (f"LocalCluster {args.workers}x1 thread", cluster)):
        if r is None:
            continue
        px, ph, cpu = r["pixels"], r["phases_s"], r["phases_cpu_s"]
        rss = f"{r['peak_rss_mb']:.0f}"
        if "worker_peak_rss_mb" in r:
            rss = (
                "client "
                + rss
                + ", workers "
                + ", ".join(f"{v:.0f}" for v in r["worker_peak_rss_mb"])
            )
            pred, lab = rate(px, ph["predict"]), rate(px, ph["label"])
        else:
            pred = f"{rate(px, ph['predict'])} ({rate(px, cpu['predict'])})"
            lab = f"{rate(px, ph['label'])} ({rate(px, cpu['label'])})"
        print(
            f"| lazy {name}, {args.size}² zarr | {pred} | {lab} "
            f"| {rate(px, r['total_s'])} | {rss} |"
        )
    print()
    for name, r in (("threaded", lazy), ("cluster", cluster)):
        if r:
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in r["phases_s"].items())
            extra = f", worker CPU {r['worker_cpu_s']:.0f} s" if "worker_cpu_s" in r else ""
            print(f"- lazy {name}: {phases}; {r['objects']} objects{extra}")
    for k, m in enumerate(mem):
        print(
            f"- in memory ({'before' if k == 0 else 'after'}): predict {m['predict_s']:.0f} s, "
            f"labels {m['label_s']:.0f} s, {m['objects']} objects"
        )


if __name__ == "__main__":
    main()
