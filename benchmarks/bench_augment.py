"""Elastic deformation speed: napari-unet against the ``elasticdeform`` package, side by side.

Run:  python benchmarks/bench_augment.py [--size 572] [--repeats 60]

The reference is ``elasticdeform.deform_random_grid([image, labels], sigma=10, points=3,
order=[3, 0], mode="mirror")``: a 3x3 grid, 10 px standard deviation, cubic image, nearest
labels, mirrored borders, i.e. the same work as ``napari_unet.augment.elastic_deform``. It is a
benchmark reference only, not a dependency; with NumPy 2 it must be built from source:

    pip install --no-binary elasticdeform --no-build-isolation elasticdeform

Every repeat runs each candidate once, in turn, so a busy machine slows all of them alike; the
table gives medians over the repeats and the ratio to the reference. A "plain torch" row shows a
straightforward ``grid_sample`` version (per-call base grid, bicubic upsampling of the coarse
field with ``F.interpolate``, labels sampled as floats) to show what the cached matrices and the
index gather add. The last rows time the whole ``augment_sample`` pipeline (default
``AugmentConfig``: flips, rot90, rotation, elastic, gray values) with labels and weights.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from napari_unet.augment import AugmentConfig, augment_sample, elastic_deform

try:
    import elasticdeform
except ImportError:  # pragma: no cover - depends on the environment
    elasticdeform = None


def plain_torch(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Straightforward grid_sample elastic deformation, rebuilt from scratch every call."""
    h, w = image.shape
    coarse = torch.from_numpy(rng.normal(0.0, 10.0, size=(1, 2, 3, 3)).astype(np.float32))
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    gx = (xx + field[1]) * (2.0 / (w - 1)) - 1.0
    gy = (yy + field[0]) * (2.0 / (h - 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    kw = {"padding_mode": "reflection", "align_corners": True}
    img = F.grid_sample(torch.from_numpy(image)[None, None], grid, mode="bicubic", **kw)
    lab = F.grid_sample(
        torch.from_numpy(labels.astype(np.float32))[None, None], grid, mode="nearest", **kw
    )
    return img[0, 0].numpy(), lab[0, 0].numpy().astype(labels.dtype)


def measure(cands: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per candidate, candidates interleaved within each repeat."""
    for fn in cands.values():  # warm-up: caches, lazy imports, thread pools
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
    parser.add_argument("--size", type=int, default=572, help="square image side (572)")
    parser.add_argument("--repeats", type=int, default=60, help="timed repeats (60)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    n = args.size
    rng = np.random.default_rng(0)
    image = rng.random((n, n), dtype=np.float32)
    labels = rng.integers(0, 20, size=(n, n)).astype(np.int32)
    weights = rng.random((n, n), dtype=np.float32) + 1.0
    cfg = AugmentConfig()

    cands: dict[str, Callable[[], object]] = {}
    if elasticdeform is not None:
        cands["elasticdeform.deform_random_grid"] = lambda: elasticdeform.deform_random_grid(
            [image, labels], sigma=10, points=3, order=[3, 0], mode="mirror"
        )
        # its default border mode, zero fill: less work than mirroring, for reference
        cands["elasticdeform, mode='constant'"] = lambda: elasticdeform.deform_random_grid(
            [image, labels], sigma=10, points=3, order=[3, 0]
        )
    cands["plain torch grid_sample"] = lambda: plain_torch(image, labels, rng)
    cands["napari_unet elastic_deform"] = lambda: elastic_deform(image, labels, seed=rng)
    cands["napari_unet elastic_deform + weights"] = lambda: elastic_deform(
        image, labels, weights=weights, seed=rng
    )
    cands["napari_unet augment_sample (defaults)"] = lambda: augment_sample(
        image, labels, weights, config=cfg, rng=rng
    )
    load = os.getloadavg()[0]
    medians = measure(cands, args.repeats)

    threads = torch.get_num_threads()
    print(
        f"{n}x{n} float32 image + int32 labels, {args.repeats} repeats, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({threads} threads), "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"load average {load:.1f} at start (other work on the CPUs slows multi-threaded torch)\n"
    )
    ref = medians.get("elasticdeform.deform_random_grid")
    print("| method | median (ms) | speed-up vs elasticdeform (mirror) |")
    print("|---|---:|---:|")
    for name, sec in medians.items():
        ratio = f"{ref / sec:.1f}x" if ref else "n/a"
        print(f"| {name} | {sec * 1e3:.2f} | {ratio} |")
    if elasticdeform is None:
        print(
            "\nelasticdeform is not installed; for the reference row run:\n"
            "    pip install --no-binary elasticdeform --no-build-isolation elasticdeform"
        )


if __name__ == "__main__":
    main()
