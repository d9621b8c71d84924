"""Which cells should calibrate the object rule? Policies scored on held-out images.

Run:  .venv/bin/python benchmarks/bench_live.py --seed S --snapshots DIR ...   (first)
      .venv/bin/python benchmarks/bench_calibration_policy.py DIR [--rules 30]

``bench_live.py --snapshots DIR`` keeps, at every score of its arms, the model
and the labels painted so far. For each snapshot this script calibrates the
instance rule on the painted cells in several ways and scores each chosen rule
on the held-out image of the same task (AP@0.5, as ``bench_live.py`` scores):

- ``in use``: the rule the model carried in the run (the product's calibration
  with its history: the rule in use moves only when beaten by a margin);
- ``now``: the product's choice of cells from no history (held-out cells when 10
  or more, else all painted cells), the best rule of ``--rules`` labellings;
- ``all``: every painted cell, held out or trained on;
- ``held out``: only the cells never trained on (at least 2);
- ``best on test``: the best rule of the same search on the held-out image
  itself, the ceiling of any calibration.

And the product's choice (held-out cells when 10 or more, the rule in use moved
only when beaten, to the nearest rule within the margin) from the rule in use at
the snapshot before, with searches of 30 and 60 labellings and the whole grid
(``30 from prev``, ``60 from prev``, ``full from prev``): how much the budget of
the search costs. ``2 moments`` is the same from the rule before (30 labellings)
with the painted cells predicted by both this snapshot's weights and the one's
before: a rule that holds over two moments' weights, not one; ``full, 2 moments`` the
same with the whole grid. ``30 near first`` is the 30-labelling search from the rule
before with its labellings reordered: the neighbours of the rule in use first, then
the coarse grid nearest it first (a search that reaches the finer rules within its
budget, tried and not shipped).

The trained-on cells are predicted better than unseen ones (the network fitted
them), so a rule that needs clean gaps between touching cells looks better on
them than it is. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_unet import instance_scores, labels_from_probabilities, load_model, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.postprocess import calibration as _calibration
from napari_unet.postprocess import resolve_postprocess
from napari_unet.postprocess.calibration import CalibrationSample, calibrate
from napari_unet.postprocess.resolver import DEFAULTS
from napari_unet.training import TrainConfig, prepare_training_data
from napari_unet.training.calibrate import MIN_HELD_OUT, calibration_samples

sys.path.insert(0, str(Path(__file__).parent))
from bench_live import hela_task, synthetic_task  # noqa: E402

NAME = re.compile(r"(?P<task>\w+)_s(?P<seed>\d+)_(?P<arm>[\w-]+)_(?P<cells>\d+)\.safetensors")


def _samples_of(model, data, which: str) -> list[CalibrationSample]:
    """The calibration windows of ``which`` cells: "now", "all" or "held out".

    The product decides by :data:`MIN_HELD_OUT`; the study sets that threshold
    for one call (0: the held-out cells always; huge: every painted cell).
    """
    from napari_unet.training import calibrate as cal

    if which == "held out" and data.validation_cells < 2:
        return []
    saved = cal.MIN_HELD_OUT
    cal.MIN_HELD_OUT = {"now": saved, "all": 10**9, "held out": 0}[which]
    try:
        return calibration_samples(model, data, "cpu")[0]
    finally:
        cal.MIN_HELD_OUT = saved


@contextmanager
def _near_first(previous: dict | None):
    """The search's coarse labellings reordered for one call: those near ``previous`` first.

    The neighbours of the rule in use (the search's finer step around it), then the
    coarse grid by :func:`~napari_unet.postprocess.calibration.rule_distance` to it.
    """
    saved = _calibration._coarse
    if previous is not None:
        current = {**DEFAULTS, **previous}
        distance = _calibration.rule_distance
        grid = sorted(saved(), key=lambda lab: distance({**current, **lab}, current))
        _calibration._coarse = lambda: _calibration._finer(current) + grid
    try:
        yield
    finally:
        _calibration._coarse = saved


def study(
    path: Path, rules: int, previous: dict | None, before: Path | None
) -> dict[str, float] | None:
    """AP@0.5 on the held-out image of each policy's rule, for one snapshot."""
    m = NAME.fullmatch(path.name)
    if m is None:
        return None
    seed = int(m["seed"])
    task = hela_task() if m["task"] == "hela" else synthetic_task(seed, 256, m["task"])
    image, _, test_image, test_truth = task
    labels = np.load(str(path).replace(".safetensors", "_labels.npy"))
    model = load_model(path)
    config = TrainConfig.fine_tune(seed=seed, tile_size=220)
    data = prepare_training_data(image, labels, model=load_bundled_model(), config=config)
    prob = predict_tiled(model, test_image, device="cpu")

    def ap(rule) -> float:
        if rule is None:
            return float("nan")
        return instance_scores(test_truth, labels_from_probabilities(prob, **rule)).ap50

    in_use = labels_from_probabilities(prob, model=model)
    out = {"in use": instance_scores(test_truth, in_use).ap50}
    chosen = {which: _samples_of(model, data, which) for which in ("now", "all", "held out")}
    for which, samples in chosen.items():
        found = calibrate(samples, rule_limit=rules, move="best") if samples else None
        out[which] = ap(found.rule if found is not None else None)
    now = chosen["now"]
    for name, limit in (("30 from prev", 30), ("60 from prev", 60), ("full from prev", None)):
        out[name] = ap(calibrate(now, rule_limit=limit, previous=previous).rule)
    with _near_first(previous):
        out["30 near first"] = ap(calibrate(now, rule_limit=30, previous=previous).rule)
    out["2 moments"] = out["full, 2 moments"] = float("nan")
    if before is not None:  # the same cells, predicted by the weights of the score before
        both = now + _samples_of(load_model(before), data, "now")
        out["2 moments"] = ap(calibrate(both, rule_limit=30, previous=previous).rule)
        out["full, 2 moments"] = ap(calibrate(both, previous=previous).rule)
    whole = [CalibrationSample(prob, test_truth, np.ones(test_truth.shape, bool))]
    out["best on test"] = ap(calibrate(whole, rule_limit=rules, move="best").rule)
    out["cells"], out["held"] = int(m["cells"]), data.validation_cells
    out["name"] = f"{m['task']} s{seed} {m['arm']}"
    out["rule"] = resolve_postprocess(model)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rules", type=int, default=30, help="labellings per search")
    parser.add_argument("--min-cells", type=int, default=10, help="skip snapshots with fewer")
    args = parser.parse_args()
    keys = ("in use", "now", "all", "held out", "30 from prev", "60 from prev",
            "full from prev", "30 near first", "2 moments", "full, 2 moments",
            "best on test")  # fmt: skip
    rows, previous, run, before = [], None, None, None
    print(f"{'snapshot':20s} cells held | " + " | ".join(f"{k:>9s}" for k in keys))
    for path in sorted(args.folder.glob("*.safetensors")):
        m = NAME.fullmatch(path.name)
        if m is None:
            continue
        if run != m.group("task", "seed", "arm"):  # a new run: no rule before its first
            run, previous, before = m.group("task", "seed", "arm"), None, None
        if int(m["cells"]) < args.min_cells:
            previous, before = resolve_postprocess(load_model(path)), path
            continue
        row = study(path, args.rules, previous, before)
        previous, before = row.pop("rule"), path
        rows.append(row)
        print(f"{row['name']:20s} {row['cells']:5d} {row['held']:4d} | "
              + " | ".join(f"{row[k]:9.3f}" for k in keys), flush=True)  # fmt: skip
    if not rows:
        return
    print(f"\n{len(rows)} snapshots (MIN_HELD_OUT {MIN_HELD_OUT}); AP@0.5 on the held-out image:")
    for k in keys:
        v = np.array([r[k] for r in rows], float)
        gap = np.array([r["best on test"] for r in rows]) - v
        ok = np.isfinite(v)
        below = int((gap[ok] > 0.1).sum())
        print(f"  {k:14s}: mean {np.nanmean(v):.3f}, median {np.nanmedian(v):.3f}; "
              f"below the ceiling by > 0.1 in {below} of {ok.sum()}")  # fmt: skip


if __name__ == "__main__":
    main()
