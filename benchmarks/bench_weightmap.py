"""Speed of the U-Net weight map against a brute force and against one distance transform.

Run:  .venv/bin/python benchmarks/bench_weightmap.py [--repeats N]

Two measurements, in the same run, on seeded images of crowded, touching ellipses:

* 512 x 512 with 125 nuclei: ``unet_weight_map`` against the brute force (one full scipy
  distance transform per cell, sort, two smallest). Goal: at least 200x faster.
* 2048 x 2048 with 2000 cells: ``unet_weight_map`` against one
  ``scipy.ndimage.distance_transform_edt`` of the image's background. Goal: at most 1.5x.

It also checks that both agree to 1e-3 on the 512 x 512 image, and prints medians as a
markdown table. Baseline and ours run in alternation, so that a machine shared with other
work slows both alike. The first call (numba compilation or cache load) is timed apart
and left out of the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy import ndimage as ndi

from napari_unet.paper import SIGMA, W0
from napari_unet.weightmap import unet_weight_map


def crowded_ellipses(shape: tuple[int, int], n_cells: int, seed: int = 0) -> np.ndarray:
    """Seeded crowd of touching ellipses on a jittered grid; later cells cover earlier ones."""
    rng = np.random.default_rng(seed)
    h, w = shape
    cols = int(np.ceil(np.sqrt(n_cells * w / h)))
    rows = int(np.ceil(n_cells / cols))
    step_y, step_x = h / rows, w / cols
    labels = np.zeros(shape, np.int32)
    for k in range(n_cells):
        i, j = divmod(k, cols)
        cy = (i + 0.5 + rng.uniform(-0.25, 0.25)) * step_y
        cx = (j + 0.5 + rng.uniform(-0.25, 0.25)) * step_x
        # semi-axes of 0.45-0.7 grid steps: neighbours overlap, so cells touch
        a, b = rng.uniform(0.45, 0.7) * step_y, rng.uniform(0.45, 0.7) * step_x
        theta = rng.uniform(0, np.pi)
        r = int(max(a, b)) + 1
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        u = (yy - cy) * np.cos(theta) + (xx - cx) * np.sin(theta)
        v = -(yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)
        labels[y0:y1, x0:x1][(u / a) ** 2 + (v / b) ** 2 <= 1] = k + 1
    return labels


def brute_force(labels: np.ndarray, w0: float = W0, sigma: float = SIGMA) -> np.ndarray:
    """The definition: one distance transform per cell, sorted; balanced class weights."""
    n, n_fg = labels.size, np.count_nonzero(labels)
    w = np.where(labels > 0, n / (2 * n_fg), n / (2 * (n - n_fg)))
    ids = np.unique(labels)
    d = np.stack([ndi.distance_transform_edt(labels != i) for i in ids[ids != 0]])
    d.sort(axis=0)
    return w + np.where(labels == 0, w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2)), 0)


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def interleaved(baseline, ours, rounds: int, ours_per_round: int) -> tuple[float, float]:
    """Median times of both, measured in alternation so that both see the same load."""
    base_times, our_times = [], []
    for _ in range(rounds):
        base_times.append(timed(baseline))
        our_times.extend(timed(ours) for _ in range(ours_per_round))
    return float(np.median(base_times)), float(np.median(our_times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each measurement")
    args = parser.parse_args()
    repeats = max(1, args.repeats)

    small = crowded_ellipses((512, 512), 125, seed=0)
    large = crowded_ellipses((2048, 2048), 2000, seed=1)

    start = time.perf_counter()
    ours_small = unet_weight_map(small, W0, SIGMA)
    first_call = time.perf_counter() - start
    error = float(np.abs(ours_small - brute_force(small)).max())

    t_brute, t_small = interleaved(
        lambda: brute_force(small), lambda: unet_weight_map(small, W0, SIGMA), repeats, 10
    )
    background = large == 0
    t_edt, t_large = interleaved(
        lambda: ndi.distance_transform_edt(background),
        lambda: unet_weight_map(large, W0, SIGMA),
        repeats,
        1,
    )

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"U-Net weight map, w0={W0}, sigma={SIGMA}; {platform.processor() or platform.machine()}")
    print(
        f"{cpus} CPU(s); medians over {repeats} interleaved rounds (ours: 10 runs per brute "
        f"force, 1 per EDT); first call {first_call:.2f} s"
    )
    print(f"max |ours - brute force| on 512x512: {error:.1e} (promised <= 1e-3)\n")
    print("| image | cells | baseline | baseline time | unet_weight_map | ratio | goal |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    print(
        f"| 512x512 | 125 | brute force | {t_brute * 1e3:.0f} ms | {t_small * 1e3:.1f} ms "
        f"| {t_brute / t_small:.0f}x faster | >= 200x faster |"
    )
    print(
        f"| 2048x2048 | 2000 | one scipy EDT | {t_edt * 1e3:.0f} ms | {t_large * 1e3:.0f} ms "
        f"| {t_large / t_edt:.2f}x the EDT | <= 1.5x |"
    )


if __name__ == "__main__":
    main()
