"""Calibrate the instance post-processing on held-out synthetic nuclei with realistic edges.

Run:  .venv/bin/python benchmarks/bench_instances.py [--model PATH] [--images 2] [--tta]

The probabilities of the model (the bundled one by default) are computed once for
``--images`` images of every setting of the bundled model's recipe
(``scripts/train_bundled.py``, generator version 2: labels at the half-maximum edge,
lobed nuclei, dim next to bright, overlapping clumps, debris), drawn from a seed
stream that neither training nor the recipe's evaluation uses. Then every variant of
:func:`napari_unet.labels_from_probabilities` in the grid below labels the same
probabilities and is scored: AP at IoU 0.5, 0.75 and 0.9 (pooled over images), and
the median predicted/true area of matched nuclei (1 = no size bias). Rows are sorted
by AP@0.75; the current default is marked.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet import labels_from_probabilities, load_model, match_instances, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.metrics import pooled_ap

CALIBRATION_STREAM = 20_000
GRID = {
    "threshold": (0.4, 0.5, 0.6),
    "seed_threshold": (None, 0.7, 0.9),
    "h": (0.5, 1.0, 2.0),
    "smoothing": (0.5, 1.5),
    "min_confidence": (0.0, 0.7, 0.8),
}
#: labels_from_probabilities' defaults with the bundled model's recommended min_confidence
DEFAULT = {
    "threshold": 0.5, "seed_threshold": None, "h": 0.5, "smoothing": 1.5, "min_confidence": 0.7,
}  # fmt: skip


def recipe():
    path = Path(__file__).parents[1] / "scripts" / "train_bundled.py"
    spec = importlib.util.spec_from_file_location("train_bundled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--images", type=int, default=2, help="images per recipe setting")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation, if available")
    args = parser.parse_args()
    model = load_bundled_model() if args.model is None else load_model(args.model)
    settings = recipe().SYNTHETIC
    start = time.perf_counter()
    data = []
    for k, cfg in enumerate(settings):
        for j in range(args.images):
            image, truth = cfg.generate(seed=[0, CALIBRATION_STREAM, k, j])
            extra = {"tta": True} if args.tta else {}
            prob = predict_tiled(model, image, device="cpu", **extra)
            data.append((k, truth, prob))
    print(f"{len(data)} images predicted in {time.perf_counter() - start:.0f} s")
    rows = []
    for values in itertools.product(*GRID.values()):
        options = dict(zip(GRID, values))
        if (
            options["seed_threshold"] is not None
            and options["seed_threshold"] <= options["threshold"]
        ):
            continue
        found = [match_instances(t, labels_from_probabilities(p, **options)) for _, t, p in data]
        ratios = np.concatenate([m.area_ratio for m in found])
        rows.append(
            (
                options,
                pooled_ap(found, 0.5),
                pooled_ap(found, 0.75),
                pooled_ap(found, 0.9),
                float(np.median(ratios)) if ratios.size else float("nan"),
                [
                    pooled_ap([m for m, (k, _, _) in zip(found, data) if k == s], 0.75)
                    for s in range(len(settings))
                ],
            )
        )
    rows.sort(key=lambda r: -r[2])
    print(
        f"\n{platform.machine()}, {torch.get_num_threads()} threads; "
        f"{args.images} images x {len(settings)} settings; tta={args.tta}\n"
    )
    print(
        "| threshold | seed threshold | h | smoothing | min confidence | AP@0.5 | AP@0.75 | AP@0.9 "
        "| area ratio | AP@0.75 per setting |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for options, ap50, ap75, ap90, ratio, per in rows[:15] + [
        r for r in rows[15:] if r[0] == DEFAULT
    ]:
        mark = " **(default)**" if options == DEFAULT else ""
        print(
            f"| {options['threshold']} | {options['seed_threshold'] or '-'} | {options['h']} | "
            f"{options['smoothing']} | {options['min_confidence']} | "
            f"{ap50:.3f} | {ap75:.3f} | {ap90:.3f} | {ratio:.3f} | "
            f"{' '.join(f'{a:.2f}' for a in per)}{mark} |"
        )


if __name__ == "__main__":
    main()
