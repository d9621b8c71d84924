"""Partly painted cells: does a round on scribbles unlearn, with live mode and with Fine-tune?

Run:  .venv/bin/python benchmarks/bench_scribbles.py [--steps 80] [--cells 6] [--only synthetic]

A user paints N cells of an image, each either whole or with a scribble that
covers 20-50% of it (the innermost pixels, as a brush pass over the middle of
a nucleus leaves them), and trains the bundled model for a fixed number of
steps, in live mode (:class:`~napari_unet.training.live.LiveTrainer`, constant
learning rate) and with Fine-tune (:func:`~napari_unet.training.train_model`).
Scored on another image: AP@0.5 against all its cells, and the predicted
foreground (probability above 0.5) over the true foreground. Synthetic: the
"Synthetic nuclei" generator (fluorescence, 384x384, seeds 11 and 12); real:
HeLa t0 painted from ``hela_t0_labels.tif``, scored on ``hela_t19``. Fixed
step counts and seeds, the arms interleaved in one process. Prints a table.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from itertools import product

import numpy as np
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.synthetic.scribbles import scribble_cells
from napari_unet.training import TrainConfig, train_model
from napari_unet.training import partial as partial_module
from napari_unet.training.live import LiveState, LiveTrainer

TILE = 220


@contextmanager
def rule_used(rule: str):
    """``"ring"``: no cell is ever partly painted (the sparse rule before issue 28's fix)."""
    if rule == "partial":
        yield
        return
    kept = partial_module.partly_painted
    partial_module.partly_painted = lambda *args: np.zeros(0, np.int32)
    try:
        yield
    finally:
        partial_module.partly_painted = kept


def score(model, image: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """AP@0.5 against every true cell; predicted over true foreground pixels."""
    probs = predict_tiled(model, image)
    ap = float(instance_scores(truth, labels_from_probabilities(probs, model=model)).ap50)
    return ap, float((probs[0] < 0.5).sum() / max(1, (truth > 0).sum()))


def live_steps(image, labels, steps: int, seed: int):
    """The bundled model after ``steps`` live-mode steps on ``labels``; the live trainer."""
    torch.manual_seed(seed)
    cfg = TrainConfig.fine_tune(tile_size=TILE, seed=seed)
    live = LiveTrainer(load_bundled_model(), image, labels, config=cfg, device="cpu")
    run = live.run()
    for event in run:
        if event.state is LiveState.STEP and event.step >= steps:
            live.stop()
    return live.model, live


def fine_tune(image, labels, steps: int, seed: int):
    """The bundled model after a Fine-tune of ``steps`` steps on ``labels``."""
    cfg = TrainConfig.fine_tune(tile_size=TILE, steps=steps, seed=seed)
    return train_model(image, labels, model=load_bundled_model(), config=cfg, device="cpu")


def datasets(which: str) -> dict[str, tuple[np.ndarray, ...]]:
    """name -> (train image, train labels, test image, test labels)."""
    out = {}
    if which in ("all", "synthetic"):
        a = make_cells((384, 384), style="fluorescence", seed=11)
        b = make_cells((384, 384), style="fluorescence", seed=12)
        out["synthetic"] = (*a, *b)
    if which in ("all", "real"):
        from bench_sparse import datasets as real

        out.update(real("real"))
    return out


def main() -> None:
    """Every (data, painting, mode) at a fixed step count; a table of AP@0.5 and foreground."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--cells", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["all", "synthetic", "real"], default="all")
    ap.add_argument("--modes", nargs="+", default=["live", "fine-tune"])
    ap.add_argument("--paints", nargs="+", default=["whole", "scribbles"])
    ap.add_argument(
        "--rules", nargs="+", choices=["partial", "ring"], default=["partial"],
        help="partial: the partly painted rule (the default); ring: every cell whole (before it)",
    )  # fmt: skip
    args = ap.parse_args()
    rows = []
    for name, (img, lab, test_img, test_lab) in datasets(args.only).items():
        start = score(load_bundled_model(), test_img, test_lab)
        print(f"{name}: bundled AP@0.5 {start[0]:.3f}, foreground {start[1]:.2f}", flush=True)
        ids = np.random.default_rng(args.seed).choice(np.unique(lab)[1:], args.cells, replace=False)
        paints = {
            "whole": np.where(np.isin(lab, ids), lab, 0),
            "scribbles": scribble_cells(lab, ids, args.seed),
        }
        for mode, paint, rule in product(args.modes, args.paints, args.rules):
            t0 = time.perf_counter()
            with rule_used(rule):
                if mode == "live":
                    model, live = live_steps(img, paints[paint], args.steps, args.seed)
                    partial = live.live.partial_cells
                else:
                    model = fine_tune(img, paints[paint], args.steps, args.seed)
                    partial = model.metadata["training"]["data"][0].get("partial", "-")
            got = score(model, test_img, test_lab)
            rows.append((name, mode, f"{paint} ({rule} rule)", start, got))
            print(
                f"  {name} {mode} {paint} {rule}: AP@0.5 {got[0]:.3f}, foreground {got[1]:.2f} "
                f"(partly painted: {partial}; {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    print(f"\n| data | mode | painted | bundled AP / fg | after {args.steps} steps AP / fg |")
    print("|---|---|---|---:|---:|")
    for name, mode, paint, s, g in rows:
        print(f"| {name} | {mode} | {paint} | {s[0]:.3f} / {s[1]:.2f} | {g[0]:.3f} / {g[1]:.2f} |")


if __name__ == "__main__":
    main()
