"""The rule search with shared labelling steps against labelling every rule afresh.

Run:  .venv/bin/python benchmarks/bench_rule_search.py [--repeats 3] [--budgets 1 3]

The calibration (:func:`napari_unet.postprocess.calibration.calibrate`) labels
each calibration window with about a hundred rules. Its
:class:`~napari_unet.postprocess.rules.PlaneLabeller` keeps what rules share (a
threshold's distance map, a seeded watershed's seeds); the reference here labels
every rule from scratch, as :func:`~napari_unet.postprocess.label_instances`
does (and as the search did before). In the same run, alternating:

- the whole search's seconds, median of ``--repeats``, and their ratio; whether
  both chose the same rule with the same score (they must: the labels are equal);
- for each time budget of ``--budgets`` (seconds; live mode's share is about 3 s
  every 30 s, a two-minute Fine-tune's 12 s): how many labellings each searched,
  and the AP@0.5 of the chosen rule on a second image.

Samples: touching rods (``bench_live.py``'s seed-0 task: the bundled model
fine-tuned ``--steps`` steps on every cell of its training image, calibrated on
that image, scored on its held-out one) and real HeLa nuclei (the bundled model
as it is, calibrated on hela_t0's cells, scored on hela_t19; ``bench_live.py``'s
HeLa task, from ``../shared/data/real`` or ``tests/data/real``).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from napari_unet import (
    TrainConfig,
    instance_scores,
    labels_from_probabilities,
    load_bundled_model,
    predict_tiled,
    train_model,
)
from napari_unet.postprocess import calibration, resolve_postprocess
from napari_unet.postprocess.calibration import CalibrationSample, calibrate
from napari_unet.postprocess.rules import PlaneLabeller

sys.path.insert(0, str(Path(__file__).parent))
from bench_live import hela_task, synthetic_task  # noqa: E402


class _Afresh(PlaneLabeller):
    """The reference: every rule labelled from scratch, nothing kept between rules."""

    def label(self, **rule) -> np.ndarray:
        return PlaneLabeller(self.p).label(**rule)


@contextmanager
def _labeller(kind: type[PlaneLabeller]):
    saved = calibration.PlaneLabeller
    calibration.PlaneLabeller = kind
    try:
        yield
    finally:
        calibration.PlaneLabeller = saved


def rods(steps: int, side: int) -> tuple[str, list[CalibrationSample], Callable, dict | None]:
    """Fine-tuned on one rods image, calibrated on its cells, scored on another."""
    image, labels, test, truth = synthetic_task(0, side)
    config = TrainConfig.fine_tune(steps=steps, tile_size=188, calibrate=False, seed=0)
    model = train_model(image, labels, model=load_bundled_model(), config=config, device="cpu")
    prob = predict_tiled(model, image, device="cpu")
    test_prob = predict_tiled(model, test, device="cpu")
    sample = CalibrationSample(prob, labels, np.ones(labels.shape, bool))
    return f"rods {side}x{side}", [sample], _scorer(test_prob, truth), resolve_postprocess(model)


def hela() -> tuple[str, list[CalibrationSample], Callable, dict | None] | None:
    """The bundled model on real HeLa nuclei: calibrated on t0, scored on t19."""
    task = hela_task()
    if task is None:
        return None
    image, labels, test, truth = task
    model = load_bundled_model()
    prob = predict_tiled(model, image, device="cpu")
    sample = CalibrationSample(prob, labels, np.ones(labels.shape, bool))
    name = "HeLa {}x{} (real)".format(*labels.shape)
    test_prob = predict_tiled(model, test, device="cpu")
    return name, [sample], _scorer(test_prob, truth), resolve_postprocess(model)


def _scorer(prob: np.ndarray, truth: np.ndarray) -> Callable:
    return lambda rule: instance_scores(truth, labels_from_probabilities(prob, **rule)).ap50


def compare(name, samples, ap, previous, repeats: int, budgets: list[float]) -> float:
    """Print the figures of one sample; returns the speed ratio (afresh / shared)."""
    seconds: dict[str, list[float]] = {"shared": [], "afresh": []}
    found = {}
    for _ in range(repeats):
        for what, kind in (("shared", PlaneLabeller), ("afresh", _Afresh)):
            with _labeller(kind):
                start = time.perf_counter()
                found[what] = calibrate(samples, previous=previous)
                seconds[what].append(time.perf_counter() - start)
    shared, afresh = (statistics.median(seconds[k]) for k in ("shared", "afresh"))
    same = found["shared"].rule == found["afresh"].rule
    same &= found["shared"].score == found["afresh"].score
    print(f"| {name} | {found['shared'].rules_tried} | {afresh:.2f} | {shared:.2f} | "
          f"{afresh / shared:.2f}x | {'yes' if same else 'NO'} |")  # fmt: skip
    for budget in budgets:
        cells = []
        for kind in (_Afresh, PlaneLabeller):
            with _labeller(kind):
                got = calibrate(samples, previous=previous, time_limit=budget)
            cells.append(f"{got.rules_tried} labellings, AP@0.5 {ap(got.rule):.3f}")
        print(f"|   {name}, {budget:g} s budget | afresh: {cells[0]} | shared: {cells[1]} |")
    return afresh / shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", type=float, nargs="*", default=[1.0, 3.0])
    parser.add_argument("--steps", type=int, default=60, help="fine-tuning steps on rods")
    parser.add_argument("--side", type=int, default=256, help="rods image side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)")
    print("| sample | labellings | afresh s | shared s | speed-up | same rule |")
    print("|---|---:|---:|---:|---:|---|")
    ratios = []
    for task in (rods(args.steps, args.side), hela()):
        if task is not None:
            ratios.append(compare(*task, args.repeats, args.budgets))
    print(f"median speed-up {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
