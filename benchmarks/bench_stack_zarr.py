"""3D objects on a zarr stack, slab by slab, against the same stack segmented in memory.

A synthetic nuclei stack (:func:`napari_unet.synthetic.make_nuclei_3d`) is written
to a zarr array, then segmented by the bundled model twice, each in a fresh process
so the peak RSS is that run's alone: in memory (``segment(..., stack=MODE)`` on the
whole array) and through the zarr path in Z-slabs (``predict_to_zarr(..., stack=MODE,
z_chunk=N)``). Reports wall time (median of ``--repeats``), their ratio, peak RSS and
how many objects are identical voxel for voxel, and the largest probability difference.
Prints markdown.

    python benchmarks/bench_stack_zarr.py [--shape 64,256,256] [--voxel 4,1,1]
        [--mode views] [--z-chunk 16] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make(path: Path, shape: tuple[int, ...], voxel: tuple[float, ...]) -> None:
    """The stack as a zarr array of one-plane chunks."""
    import zarr

    from napari_unet.synthetic import make_nuclei_3d

    image, _ = make_nuclei_3d(shape, voxel_size=voxel, seed=0)
    arr = zarr.open_array(
        str(path), mode="w", shape=image.shape, chunks=(1, *image.shape[1:]), dtype=image.dtype
    )
    arr[:] = image


def run(how: str, src: Path, out: Path, mode: str, voxel, z_chunk: int) -> None:
    """One run in this process; prints a JSON line: wall time, peak RSS, labels file."""
    import zarr

    from napari_unet import load_bundled_model

    model = load_bundled_model()
    t = time.perf_counter()
    if how == "memory":
        from napari_unet.segment import segment

        image = np.asarray(zarr.open_array(str(src), mode="r"))
        result = segment(model, image, stack=mode, voxel_size=voxel)
        labels, n = result.labels, int(result.labels.max())
        np.save(out.with_suffix(".prob.npy"), result.probabilities)
    else:
        from napari_unet.bigimage import predict_to_zarr

        result = predict_to_zarr(
            model, src, out, stack=mode, voxel_size=voxel, z_chunk=z_chunk, overwrite=True,
            probabilities=True,
        )  # fmt: skip
        labels, n = None, result.n_objects
    wall = time.perf_counter() - t
    if labels is not None:
        np.save(out.with_suffix(".npy"), labels)
    print(json.dumps({"wall": wall, "rss": peak_rss_mb(), "objects": n}))


def identical_objects(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Objects of ``a`` that ``b`` has voxel for voxel (ids may differ), and ``a``'s count."""
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    pairs = np.unique(np.stack([a, b]), axis=1)
    ca = np.bincount(pairs[0], minlength=a.max() + 1)
    cb = np.bincount(pairs[1], minlength=b.max() + 1)
    one = (ca[pairs[0]] == 1) & (cb[pairs[1]] == 1) & (pairs[0] > 0) & (pairs[1] > 0)
    return int(one.sum()), int(a.max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64,256,256")
    p.add_argument("--voxel", default="4,1,1")
    p.add_argument("--mode", default="views", choices=["linked", "views"])
    p.add_argument("--z-chunk", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--in-process", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    voxel = tuple(float(v) for v in args.voxel.split(","))
    if args.in_process:
        how, src, out = args.in_process
        run(how, Path(src), Path(out), args.mode, voxel, args.z_chunk)
        return
    print(f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "stack.zarr"
        make(src, shape, voxel)
        rows = {}
        for how in ("memory", "slabs"):
            walls = []
            for _ in range(args.repeats):
                cmd = [sys.executable, __file__, "--in-process", how, str(src), str(tmp / how)]
                cmd += ["--shape", args.shape, "--voxel", args.voxel, "--mode", args.mode]
                cmd += ["--z-chunk", str(args.z_chunk)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                res = json.loads(done.stdout.strip().splitlines()[-1])
                walls.append(res["wall"])
            rows[how] = {**res, "wall": statistics.median(walls)}
        from napari_unet.bigimage import open_prediction

        memory = np.load(tmp / "memory.npy")
        result = open_prediction(tmp / "slabs")
        same, n_objects = identical_objects(memory, np.asarray(result.labels[0]))
        dp = np.abs(np.load(tmp / "memory.prob.npy") - np.asarray(result.probabilities)).max()
    stack = "x".join(map(str, shape))
    vox = ":".join(f"{v:g}" for v in voxel)
    print("| stack | voxel | mode | run | wall | peak RSS | objects |")
    print("|---|---|---|---|---|---|---|")
    for how, r in rows.items():
        run_name = "in memory" if how == "memory" else f"zarr, slabs of {args.z_chunk}"
        print(
            f"| {stack} | {vox} | {args.mode} | {run_name} | {r['wall']:.1f} s | "
            f"{r['rss']:.0f} MB | {r['objects']} |"
        )
    ratio = rows["slabs"]["wall"] / rows["memory"]["wall"]
    print(f"\nslabs / in memory: {ratio:.2f}x the time; max |probability difference| {dp:.1e}")
    print(f"objects identical voxel for voxel: {same} of {n_objects}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
