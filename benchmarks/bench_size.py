"""The object size estimate: accuracy at 0.3x, 1x and 3x, and its cost against the prediction.

Run:  .venv/bin/python benchmarks/bench_size.py [--seeds N] [--targets] [--big]

Synthetic nuclei (``make_cells``, 12-30 px, the bundled model's 8-40 px range) are resized
to 0.3x (about 5.5 px) and 3x (about 55 px), image and labels alike (labels
nearest-neighbour). For each image, in one run:

* accuracy: the model-free estimate (``estimate_diameter(image)``) and the full one
  (``estimate_diameter(image, model)``) against the true median equivalent diameter;
* AP@0.5 of ``segment(model, image)`` (estimated), of ``rescale=1.0`` (as it is) and of the
  true diameter given;
* cost: the estimate alone against the prediction at the factor it chose, and
  ``segment(model, image)`` against ``segment(model, image, rescale=<that factor>)``
  (the two differ when the estimate's own whole-image pass is reused), in alternation,
  medians of ``--repeats``.

``--targets`` measures AP@0.5 against the diameter the objects are resized to (the rule of
``rescale_for_diameter``). ``--big`` times the estimate on 1024x1024 and 2048x2048 images
against their prediction (the estimate looks at a crop, so its cost stays flat). Prints
markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from skimage.transform import rescale as sk_rescale

from napari_unet import estimate_diameter, instance_scores, load_bundled_model
from napari_unet.segment import segment
from napari_unet.synthetic import make_cells

# base image side for each factor: the resized images hold 60-180 nuclei
BASES = {0.3: 512, 1.0: 384, 3.0: 256}


def resized(side: int, factor: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic nuclei at the model's sizes, resized by ``factor`` (labels nearest)."""
    image, labels = make_cells((side, side), seed=seed)
    if factor == 1.0:
        return image, labels
    image = sk_rescale(
        image.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True
    ).astype(np.float32)
    labels = sk_rescale(labels, factor, order=0, anti_aliasing=False, preserve_range=True)
    return image, labels.astype(np.int32)


def true_diameter(labels: np.ndarray) -> float:
    _, areas = np.unique(labels[labels > 0], return_counts=True)
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def accuracy_and_cost(model, seeds: int, repeats: int) -> None:
    print("| factor | seed | nuclei | true px | model-free px (err) | estimate px (err) | "
          "rescale | AP auto | AP as is | AP true diameter | estimate / prediction | "
          "auto / given factor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for factor, side in BASES.items():
        for seed in range(seeds):
            image, labels = resized(side, factor, seed)
            truth = true_diameter(labels)
            free = estimate_diameter(image)
            est = estimate_diameter(image, model, device="cpu")
            auto = segment(model, image, device="cpu")
            as_is = segment(model, image, rescale=1.0, device="cpu")
            given = segment(model, image, diameter=truth, device="cpu")
            aps = [instance_scores(labels, r.labels).ap50 for r in (auto, as_is, given)]
            t_est, t_pred, t_auto = [], [], []
            for _ in range(repeats):  # in alternation: a busy moment slows all alike
                t_est.append(timed(estimate_diameter, image, model, device="cpu")[1])
                t_pred.append(timed(segment, model, image, rescale=auto.rescale, device="cpu")[1])
                t_auto.append(timed(segment, model, image, device="cpu")[1])
            cost = statistics.median(t_est) / statistics.median(t_pred)
            overall = statistics.median(t_auto) / statistics.median(t_pred)
            e_free, e_est = free.diameter / truth - 1, est.diameter / truth - 1
            summary.setdefault(factor, []).append((e_free, e_est, *aps, cost, overall))
            print(
                f"| {factor:g}x | {seed} | {int(labels.max())} | {truth:.1f} | "
                f"{free.diameter:.1f} ({e_free:+.0%}) | {est.diameter:.1f} ({e_est:+.0%}) | "
                f"{auto.rescale:.2f} | {aps[0]:.3f} | {aps[1]:.3f} | {aps[2]:.3f} | "
                f"{cost:.2f} | {overall:.2f} |",
                flush=True,
            )
    print("\n| factor | max abs error model-free | max abs error estimate | mean AP auto | "
          "mean AP as is | mean AP true diameter | median estimate / prediction | "
          "median auto / given factor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for factor, rows in summary.items():
        a = np.array(rows)
        print(
            f"| {factor:g}x | {np.abs(a[:, 0]).max():.0%} | {np.abs(a[:, 1]).max():.0%} | "
            f"{a[:, 2].mean():.3f} | {a[:, 3].mean():.3f} | {a[:, 4].mean():.3f} | "
            f"{np.median(a[:, 5]):.2f} | {np.median(a[:, 6]):.2f} |"
        )


def targets(model, seeds: int, first_seed: int, side: int | None) -> None:
    """AP@0.5 when the median object is resized to a given diameter."""
    for factor, choices in ((3.0, (40, 32, 26.7, 18, 12)), (0.3, (8, 12, 18))):
        base = side or BASES[factor]
        print(f"\n{factor:g}x of {base}x{base} px, seeds {first_seed}-{first_seed + seeds - 1}: "
              "mean AP@0.5 by the diameter the median nucleus is resized to\n")  # fmt: skip
        print("| resized to (px) | " + " | ".join(f"{c:g}" for c in choices) + " |")
        print("|---|" + "---|" * len(choices))
        scores = []
        for seed in range(first_seed, first_seed + seeds):
            image, labels = resized(base, factor, seed)
            truth = true_diameter(labels)
            scores.append(
                [
                    instance_scores(
                        labels, segment(model, image, rescale=c / truth, device="cpu").labels
                    ).ap50
                    for c in choices
                ]
            )
        print("| AP@0.5 | " + " | ".join(f"{v:.3f}" for v in np.mean(scores, axis=0)) + " |")


def big(model, repeats: int) -> None:
    """Bigger images: the estimate looks at a crop and a window, so its cost stays flat."""
    print("| image | nuclei | true px | estimate px | estimate s | prediction s (at the "
          "factor chosen) | estimate / prediction | auto / given factor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for side, factor in ((1024, 1.0), (2048, 1.0), (2048, 3.0)):
        image, labels = resized(round(side / factor), factor, 0)
        truth = true_diameter(labels)
        t_est, t_pred, t_auto = [], [], []
        for _ in range(repeats):  # in alternation
            est, t = timed(estimate_diameter, image, model, device="cpu")
            t_est.append(t)
            auto, t = timed(segment, model, image, device="cpu")
            t_auto.append(t)
            t_pred.append(timed(segment, model, image, rescale=auto.rescale, device="cpu")[1])
        e, p, a = (statistics.median(t) for t in (t_est, t_pred, t_auto))
        shape = "x".join(str(n) for n in image.shape)
        print(
            f"| {shape} at {factor:g}x | {int(labels.max())} | {truth:.1f} | {est.diameter:.1f} | "
            f"{e:.2f} | {p:.1f} | {e / p:.3f} | {a / p:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--targets", action="store_true", help="AP by the diameter resized to")
    parser.add_argument("--big", action="store_true", help="cost on a 2048x2048 image")
    parser.add_argument("--first-seed", type=int, default=0, help="--targets: first seed")
    parser.add_argument("--side", type=int, default=None, help="--targets: base image side")
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, {platform.python_version()}\n")
    model = load_bundled_model()
    if args.targets:
        targets(model, args.seeds, args.first_seed, args.side)
    elif args.big:
        big(model, args.repeats)
    else:
        accuracy_and_cost(model, args.seeds, args.repeats)


if __name__ == "__main__":
    main()
