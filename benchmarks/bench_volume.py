"""Z-stacks as 3D objects: 3D AP@0.5 and speed of planes, linked and three views.

Synthetic 3D nuclei (:func:`napari_unet.synthetic.make_nuclei_3d`, touching pairs
included) at anisotropy 1:1 and 1:4 (Z step 4x the pixel size) are segmented by
the bundled model in the three stack modes. 3D objects are matched to the truth
by IoU (:func:`napari_unet.instance_scores` on the whole volume: a "planes" object
is one plane of a nucleus, so its 3D AP is near 0 by design). Time per megavoxel is
wall time over the stack's voxels. The bundled model's 2D AP on the XY planes says
whether the synthetic stacks look like what it was trained on.

    python benchmarks/bench_volume.py [--seeds 2] [--sweep]
    python benchmarks/bench_volume.py --big [--shape 64,1024,1024] [--voxel 4,1,1]

``--sweep`` also scores the linking IoU and the views' seed settings. ``--big``
segments one large synthetic stack in "views" mode in a fresh process and reports
its wall time and peak RSS. Prints markdown. The machine is shared: note the load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

CASES = {"1:1": ((48, 192, 192), (1.0, 1.0, 1.0)), "1:4": ((12, 192, 192), (4.0, 1.0, 1.0))}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def ap2d_xy(model, image, truth) -> float:
    """Mean 2D AP@0.5 of the bundled model on the stack's XY planes (the planes it knows)."""
    from napari_unet import instance_scores
    from napari_unet.segment import segment

    labels = segment(model, image, stack="planes").labels
    planes = [z for z in range(image.shape[0]) if truth[z].any()]
    return float(np.mean([instance_scores(truth[z], labels[z]).ap50 for z in planes]))


def accuracy(seeds: int, sweep: bool) -> None:
    from napari_unet import instance_scores, load_bundled_model
    from napari_unet.segment import segment
    from napari_unet.synthetic import make_nuclei_3d

    model = load_bundled_model()
    print(f"# 3D objects, bundled model, {seeds} seeds, {load()}\n")
    print("| anisotropy | stack | mode | 3D AP@0.5 | mean IoU | objects (true) | s/Mvoxel |")
    print("|---|---|---|---|---|---|---|")
    extra = []
    for name, (shape, voxel) in CASES.items():
        rows: dict[str, list] = {"planes": [], "linked": [], "views": []}
        ap2d = []
        for seed in range(seeds):
            image, truth = make_nuclei_3d(shape, voxel_size=voxel, seed=seed)
            ap2d.append(ap2d_xy(model, image, truth))
            mvox = image.size / 1e6
            for mode in rows:
                t = time.perf_counter()
                result = segment(model, image, stack=mode, voxel_size=voxel)
                dt = time.perf_counter() - t
                s = instance_scores(truth, result.labels)
                rows[mode].append((s.ap50, s.mean_iou, s.n_pred, s.n_true, dt / mvox))
                if sweep and mode == "linked":
                    extra += sweep_linked(model, image, truth, voxel, name, seed)
                if sweep and mode == "views":
                    extra += sweep_views(result.probabilities, truth, voxel, name, seed)
        for mode, r in rows.items():
            a = np.array(r, dtype=float)
            print(
                f"| {name} | {'x'.join(map(str, shape))} | {mode} | {a[:, 0].mean():.3f} | "
                f"{a[:, 1].mean():.3f} | {a[:, 2].mean():.0f} ({a[:, 3].mean():.0f}) | "
                f"{statistics.median(a[:, 4]):.1f} |"
            )
        print(f"| {name} | | 2D AP@0.5 of XY planes | {np.mean(ap2d):.3f} | | | |")
    if extra:
        print("\n| anisotropy | seed | setting | 3D AP@0.5 |\n|---|---|---|---|")
        for row in extra:
            print("| " + " | ".join(map(str, row)) + " |")
    print(f"\nafter: {load()}")


def sweep_linked(model, image, truth, voxel, name, seed):
    from napari_unet import instance_scores
    from napari_unet.segment import segment
    from napari_unet.volume.linking import link_planes
    from napari_unet.volume.pipeline import default_min_volume

    planes = segment(model, image, stack="planes").labels
    mv = default_min_volume(16, voxel)
    out = []
    for iou in (0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
        for mvol in (0, mv, 2 * mv):
            ap = instance_scores(truth, link_planes(planes, iou=iou, min_volume=mvol)).ap50
            out.append((name, seed, f"linked iou {iou} min_volume {mvol}", f"{ap:.3f}"))
    return out


def sweep_views(prob, truth, voxel, name, seed):
    from napari_unet import instance_scores
    from napari_unet.volume.instances import labels_3d
    from napari_unet.volume.pipeline import default_min_volume

    fg = 1 - prob[0]
    mv = default_min_volume(16, voxel)
    out = []
    for h in (0.5, 1.0, 2.0):
        for smoothing in (0.0, 1.5):
            for st in (0.5, 0.7, 0.9):
                labels = labels_3d(
                    fg, sampling=voxel, min_volume=mv, h=h, smoothing=smoothing, seed_threshold=st
                )
                ap = instance_scores(truth, labels).ap50
                out.append(
                    (name, seed, f"views h {h} smoothing {smoothing} seeds>{st}", f"{ap:.3f}")
                )
    return out


def big(shape: tuple[int, ...], voxel: tuple[float, ...]) -> None:
    """One big stack in views mode, in this process: wall time, peak RSS."""
    from napari_unet import load_bundled_model
    from napari_unet.segment import describe_stack_mode, segment
    from napari_unet.synthetic import make_nuclei_3d

    # a 256x256 patch tiled (flipped) over the plane: realistic content, quick to make
    patch, _ = make_nuclei_3d((shape[0], 256, 256), voxel_size=voxel, seed=0)
    image = np.empty(shape, patch.dtype)
    for i in range(0, shape[1], 256):
        for j in range(0, shape[2], 256):
            tile = patch[:, :: (-1) ** (i // 256), :: (-1) ** (j // 256)]
            image[:, i : i + 256, j : j + 256] = tile[:, : shape[1] - i, : shape[2] - j]
    del patch
    model = load_bundled_model()
    rss0 = peak_rss_mb()
    print(describe_stack_mode(shape, "views", voxel))
    print(f"before: {load()}, peak RSS so far {rss0:.0f} MB")
    t = time.perf_counter()
    c = os.times()
    done = [0.0]

    def progress(d, n):
        now = time.perf_counter()
        if now - done[0] > 60:
            done[0] = now
            print(f"  {d}/{n} tiles, {now - t:.0f} s", flush=True)

    result = segment(model, image, stack="views", voxel_size=voxel, progress=progress)
    wall = time.perf_counter() - t
    cpu = sum(os.times()[:2]) - sum(c[:2])
    print(
        f"| {'x'.join(map(str, shape))} | {':'.join(f'{v:g}' for v in voxel)} | views | "
        f"{wall:.0f} s | {cpu:.0f} s | {peak_rss_mb():.0f} MB | {int(result.labels.max())} |"
    )
    print(f"after: {load()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--big", action="store_true")
    p.add_argument("--shape", default="64,1024,1024")
    p.add_argument("--voxel", default="4,1,1")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    print(f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    if not args.big:
        accuracy(args.seeds, args.sweep)
        return
    shape = tuple(int(v) for v in args.shape.split(","))
    voxel = tuple(float(v) for v in args.voxel.split(","))
    if args.in_process:
        big(shape, voxel)
        return
    print(
        "| stack | voxel | mode | wall | CPU | peak RSS | objects |\n|---|---|---|---|---|---|---|"
    )
    # a fresh process, so the peak RSS is this run's alone
    cmd = [sys.executable, __file__, "--big", "--in-process", "--shape", args.shape]
    subprocess.run(cmd + ["--voxel", args.voxel], check=True)


if __name__ == "__main__":
    main()
