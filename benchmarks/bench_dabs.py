"""Tiny dabs: does a Fine-tune on a few brush clicks light up the background?

Run:  .venv/bin/python benchmarks/bench_dabs.py [--steps 20 80] [--cells 5] [--only sample]

A user paints N cells of an image with one tiny stroke each (a 5-px brush,
0-4 px long): ``--paints dabs`` somewhere inside N nuclei
(:func:`~napari_unet.synthetic.scribbles.dab_cells`); ``--paints anywhere`` at
random places, as a click-through that does not aim leaves them (most on
background). Then it Fine-tunes the bundled model for a fixed number of steps.
Scored on the image itself (what the user looks at) and, for HeLa, on a later
frame: the predicted foreground share of the image, the number of objects,
AP@0.5 against every true cell. Arms, interleaved in one process: ``ring``
flags a cell as partly painted by its ring alone and trains on every cell (the
rule before the dab fix); ``partial`` (the default) also flags cells far
smaller than the start model's object at that place, and leaves out tiny marks
on what the model is sure is background. ``--paints whole`` checks that whole
cells train as before (same numbers). Prints a table.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from itertools import product

import numpy as np
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet._sample_data import nuclei_sample
from napari_unet.bundled import load_bundled_model
from napari_unet.errors import NapariUnetError
from napari_unet.synthetic.scribbles import dab_cells
from napari_unet.training import TrainConfig, train_model
from napari_unet.training import partial as partial_module


@contextmanager
def rule_used(rule: str):
    """``"ring"``: only the ring test flags cells (no size test, no stray dabs left out)."""
    kept = partial_module.SMALL_SHARE, partial_module.stray_dabs
    if rule == "ring":
        partial_module.SMALL_SHARE = 0.0
        partial_module.stray_dabs = lambda *args: np.zeros(0, np.int32)
    try:
        yield
    finally:
        partial_module.SMALL_SHARE, partial_module.stray_dabs = kept


def score(model, image: np.ndarray, truth: np.ndarray) -> tuple[float, int, float]:
    """Foreground share of the image, number of objects, AP@0.5 against every true cell."""
    probs = predict_tiled(model, image)
    pred = labels_from_probabilities(probs, model=model)
    ap = float(instance_scores(truth, pred).ap50)
    return float((probs[0] < 0.5).mean()), int(len(np.unique(pred)) - 1), ap


def anywhere(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    """``n`` dabs of a 5-px brush at random places, ids 1..n (a later one wins overlaps)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        y, x = rng.integers(10, np.asarray(shape) - 10)
        out[(yy - y) ** 2 + (xx - x) ** 2 <= 2.5**2] = i
    return out


def datasets(which: str) -> dict[str, tuple[np.ndarray, ...]]:
    """name -> (train image, train labels, test image, test labels)."""
    out = {}
    if which in ("all", "sample"):
        (img, _, _), (lab, _, _) = nuclei_sample()
        out["sample"] = (img, lab, img, lab)
    if which in ("all", "real"):
        from bench_sparse import datasets as real

        out.update(real("real"))
    return out


def main() -> None:
    """Every (data, painting, rule, steps) with one seed; a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--cells", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", choices=["all", "sample", "real"], default="all")
    ap.add_argument("--paints", nargs="+", choices=["dabs", "anywhere", "whole"], default=["dabs"])
    ap.add_argument("--rules", nargs="+", choices=["partial", "ring"], default=["ring", "partial"])
    args = ap.parse_args()
    rows = []
    for name, (img, lab, test_img, test_lab) in datasets(args.only).items():
        start = score(load_bundled_model(), test_img, test_lab)
        print(f"{name}: bundled fg {start[0]:.3f}, {start[1]} objects, AP@0.5 {start[2]:.3f}")
        for seed, paint, steps, rule in product(args.seeds, args.paints, args.steps, args.rules):
            ids = np.random.default_rng(seed).choice(np.unique(lab)[1:], args.cells, replace=False)
            if paint == "dabs":
                labels = dab_cells(lab, ids, seed)
            elif paint == "anywhere":
                labels = anywhere(lab.shape, args.cells, seed)
            else:
                labels = np.where(np.isin(lab, ids), lab, 0)
            torch.manual_seed(seed)
            cfg = TrainConfig.fine_tune(steps=steps, seed=seed)
            t0 = time.perf_counter()
            with rule_used(rule):
                try:
                    model = train_model(
                        img, labels, model=load_bundled_model(), config=cfg, device="cpu"
                    )
                except NapariUnetError as exc:  # every dab left out: nothing to train on
                    print(f"  {name} seed {seed} {paint} {rule} {steps} steps: refused: {exc}")
                    rows.append((name, seed, paint, rule, steps, start, None))
                    continue
            flagged = model.metadata["training"]["data"][0].get("partial", "-")
            left = model.metadata["training"]["data"][0].get("left_out", "-")
            got = score(model, test_img, test_lab)
            rows.append((name, seed, paint, rule, steps, start, got))
            print(
                f"  {name} seed {seed} {paint} {rule} {steps} steps: fg {got[0]:.3f}, "
                f"{got[1]} objects, AP@0.5 {got[2]:.3f} (flagged {flagged}, left out {left}; "
                f"{time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    print("\n| data | seed | painted | rule | steps | bundled fg / objects / AP | after |")
    print("|---|---:|---|---|---:|---:|---:|")
    for name, seed, paint, rule, steps, s, g in rows:
        if g is None:
            print(f"| {name} | {seed} | {paint} | {rule} | {steps} | - | refused (one sentence) |")
            continue
        print(
            f"| {name} | {seed} | {paint} | {rule} | {steps} | {s[0]:.3f} / {s[1]} / {s[2]:.3f} "
            f"| {g[0]:.3f} / {g[1]} / {g[2]:.3f} |"
        )


if __name__ == "__main__":
    main()
