"""A few painted cells: does the sparse rule learn without unlearning, and the dense rule?

Run:  .venv/bin/python benchmarks/bench_sparse.py [--steps 24] [--tile 252] [--cells 5 10 20]
      .venv/bin/python benchmarks/bench_sparse.py --only real

The user paints N cells of an image, draws no annotated region, and fine-tunes the
bundled model. Two rules for the unpainted pixels:

- sparse (the default since issue 29): unknown; the loss covers the painted cells,
  a thin ring and the narrow gaps around them (:mod:`napari_unet.training.known`);
- dense (``TrainConfig(complete=True)``, the paper's setting): every unpainted pixel
  is background, so every unpainted cell is taught as background.

Synthetic: the "Synthetic nuclei" sample's generator (fluorescence, 512x512); the
cells are painted on one image and AP@0.5 is measured against all the labels of
another image of the same kind. Real: HeLa t0 (``../shared/data/real``) with N of
its nuclei painted from ``hela_t0_labels.tif``, scored on ``hela_t19``. The
painted cells are drawn at random (seeded), the same for both rules. Fixed step
counts (a shared machine's load then decides only how long it takes), both rules
of one setting run one after the other in the same process. Nothing is asserted;
it prints a table (median over ``--seeds``).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig, train_model

REAL = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data" / "real"
SHAPE = (512, 512)


def real_folder() -> Path:
    """The shared real images (the worktree's or the main checkout's neighbour)."""
    for base in (REAL, Path("/work/shared/data/real")):
        if (base / "hela_t0.tif").exists():
            return base
    raise SystemExit("The real images (hela_t0.tif, ...) were not found.")


def datasets(which: str) -> dict[str, tuple[np.ndarray, ...]]:
    """name -> (train image, train labels, test image, test labels)."""
    out = {}
    if which in ("all", "synthetic"):
        a = make_cells(SHAPE, style="fluorescence", seed=11)
        b = make_cells(SHAPE, style="fluorescence", seed=12)
        out["synthetic"] = (*a, *b)
    if which in ("all", "real"):
        f = real_folder()
        out["HeLa"] = tuple(
            tifffile.imread(f / n)
            for n in ("hela_t0.tif", "hela_t0_labels.tif", "hela_t19.tif", "hela_t19_labels.tif")
        )
    return out


def ap50(model, image: np.ndarray, truth: np.ndarray) -> float:
    """AP@0.5 of the model's instances against every true cell."""
    pred = labels_from_probabilities(predict_tiled(model, image))
    return float(instance_scores(truth, pred).ap50)


def painted(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` cells of ``labels`` drawn at random (the rest unpainted)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    pick = np.random.default_rng(seed).choice(ids, min(n, len(ids)), replace=False)
    return np.where(np.isin(labels, pick), labels, 0)


def main() -> None:
    """Run every (data set, cell count, rule) and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--tile", type=int, default=252)
    ap.add_argument("--cells", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", choices=["all", "synthetic", "real"], default="all")
    ap.add_argument("--rules", nargs="+", choices=["sparse", "dense"], default=["sparse", "dense"])
    args = ap.parse_args()
    print(
        f"{platform.machine()}, {torch.get_num_threads()} torch threads; {args.steps} steps, "
        f"tile {args.tile}, seeds {args.seeds}",
        flush=True,
    )
    rows = []
    for name, (img, lab, test_img, test_lab) in datasets(args.only).items():
        start = ap50(load_bundled_model(), test_img, test_lab)
        print(f"{name}: bundled model AP@0.5 {start:.3f}", flush=True)
        for n in args.cells:
            scores = {"sparse": [np.nan], "dense": [np.nan]}
            for rule in args.rules:
                scores[rule] = []
            for seed in range(args.seeds):
                sparse_labels = painted(lab, n, seed)
                for rule in args.rules:  # interleaved: the same load for both
                    cfg = TrainConfig.fine_tune(
                        steps=args.steps, tile_size=args.tile, seed=seed, complete=rule == "dense"
                    )
                    t0 = time.perf_counter()
                    model = train_model(img, sparse_labels, model=load_bundled_model(), config=cfg)
                    scores[rule].append(ap50(model, test_img, test_lab))
                    print(
                        f"  {name} {n} cells seed {seed} {rule}: {scores[rule][-1]:.3f} "
                        f"({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
            rows.append((name, n, start, np.median(scores["sparse"]), np.median(scores["dense"])))
    print("\n| data | painted cells | bundled | sparse (default) | dense (complete) |")
    print("|---|---:|---:|---:|---:|")
    for name, n, start, s, d in rows:
        print(f"| {name} | {n} | {start:.3f} | {s:.3f} | {d:.3f} |")


if __name__ == "__main__":
    main()
