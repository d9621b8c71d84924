"""Where a calibrated rule moves: to the best rule, or to the nearest of those that tie with it.

Run:  .venv/bin/python benchmarks/bench_rule_move.py            (20 cases, about 20 min)
      .venv/bin/python benchmarks/bench_rule_move.py --quick    (2 small cases)

Each case fine-tunes the bundled model for a fixed number of steps on ``cells``
random true cells of one image (sparse rule, Fine-tune's settings, no calibration
while training), then calibrates the instance rule on the painted cells exactly as
``calibrate_model`` does after a Fine-tune (the bundled model's rule in use), twice
on the same cached probabilities: ``move="best"`` (the winner, as before) and
``move="nearest"`` (the rule nearest the one in use among those within the switch
margin of the winner). Both are scored on a held-out image of the same domain
(AP@0.5 and AP@0.75), beside the start rule on the same probabilities. Domains:
the rods, lobed and spreading scenes of ``napari_unet.synthetic.colonies``, the
inverted-contrast brightfield world of ``bench_rounds.py``, and real HeLa nuclei
(t0 painted from its labels, t19 scored; measured only, never trained on for the
bundled model). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet import labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.postprocess import resolve_postprocess
from napari_unet.postprocess.calibration import calibrate
from napari_unet.synthetic.colonies import make_scene
from napari_unet.training import TrainConfig, prepare_training_data, train_model
from napari_unet.training.calibrate import calibration_samples

sys.path.insert(0, str(Path(__file__).parent))
from bench_live import hela_task, synthetic_task  # noqa: E402

# (domain, seed, painted cells, steps): 16 steps a cell, as a round of bench_live does
CASES = [
    ("rods", 0, 20, 320), ("rods", 1, 20, 320), ("rods", 2, 20, 320), ("rods", 0, 40, 640),
    ("rods", 1, 40, 640), ("rods", 2, 40, 640), ("rods", 3, 30, 480), ("rods", 4, 25, 400),
    ("rods", 5, 35, 560), ("rods", 6, 15, 240), ("rods", 7, 50, 800), ("lobed", 0, 15, 240),
    ("lobed", 1, 10, 160), ("spreading", 0, 15, 240), ("spreading", 1, 10, 160),
    ("brightfield", 0, 20, 320), ("hela", 0, 10, 160), ("hela", 1, 20, 320),
    ("hela", 2, 10, 160), ("hela", 3, 15, 240),
]  # fmt: skip
QUICK = [("rods", 0, 8, 40), ("hela", 0, 5, 20)]


def task(domain: str, seed: int):
    """Painted image, its labels, held-out image, its labels."""
    if domain == "hela":
        return hela_task()
    if domain in ("rods", "brightfield"):
        return synthetic_task(seed, 256, domain)
    a = make_scene(domain, (256, 256), seed=2 * seed + 1)
    b = make_scene(domain, (256, 256), seed=2 * seed + 2)
    return a[0], a[1].astype(np.int32), b[0], b[1].astype(np.int32)


def scores(truth: np.ndarray, probs: np.ndarray, rule: dict) -> tuple[float, float]:
    pred = labels_from_probabilities(probs, **rule)
    m = [match_instances(truth, pred)]
    return pooled_ap(m, 0.5), pooled_ap(m, 0.75)


def run_case(domain: str, seed: int, cells: int, steps: int) -> dict | None:
    found = task(domain, seed)
    if found is None:
        return None
    image, truth, test_image, test_truth = found
    ids = np.unique(truth)
    order = np.random.default_rng(seed).permutation(ids[ids > 0])
    labels = np.where(np.isin(truth, order[:cells]), truth, 0).astype(np.int32)
    config = TrainConfig.interactive().replace(
        steps=steps, time_limit=None, seed=seed, tile_size=220, calibrate=False
    )
    model = train_model(image, labels, model=load_bundled_model(), config=config, device="cpu")
    data = prepare_training_data(image, labels, model=model, config=config)
    samples, held_out = calibration_samples(model, data, "cpu")
    start = resolve_postprocess(load_bundled_model())
    probs = predict_tiled(model, test_image, device="cpu")
    row = {"case": f"{domain} {seed}: {cells} cells, {steps} steps", "start": scores(
        test_truth, probs, start)}  # fmt: skip
    for move in ("best", "nearest"):
        c = calibrate(samples, held_out=held_out, previous=start, move=move)
        row[move] = scores(test_truth, probs, c.rule)
        row[move + " rule"] = "kept" if c.kept else c.rule["method"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    print("| case | start rule AP@0.5/0.75 | to the best | to the nearest tie |")
    print("|---|---|---|---|")
    rows = []
    for case in QUICK if args.quick else CASES:
        row = run_case(*case)
        if row is None:
            continue
        rows.append(row)
        ap = {k: f"{row[k][0]:.3f} / {row[k][1]:.3f}" for k in ("start", "best", "nearest")}
        print(f"| {row['case']} | {ap['start']} | {ap['best']} ({row['best rule']}) | "
              f"{ap['nearest']} ({row['nearest rule']}) |", flush=True)  # fmt: skip
    a = np.array([[r["best"][0], r["nearest"][0], r["start"][0]] for r in rows])
    d = a[:, 1] - a[:, 0]
    below = (a[:, :2] < a[:, 2:] - 0.01).sum(axis=0)
    print(f"mean AP@0.5: best {a[:, 0].mean():.3f}, nearest {a[:, 1].mean():.3f}; nearest - best: "
          f"median {np.median(d):+.3f}, better by > 0.01 in {(d > 0.01).sum()}, worse in "
          f"{(d < -0.01).sum()} of {len(d)}; below the start rule by > 0.01: best "
          f"{below[0]}, nearest {below[1]}")  # fmt: skip
    print(f"ran {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
