"""How long the Train dock's line takes to judge a training set's stray dabs, per image.

Run:  .venv/bin/python benchmarks/bench_set_judgement.py [--images 4] [--size 512] [--repeats 3]

Each image of a synthetic training set has 8 whole nuclei and 3 tiny dabs on
background painted. The dock's worker judges every image with the start model
(the bundled one) as a round does (:class:`napari_unet._qt.scope_judge.StartJudge`,
``planned_area``): *first* (the model copied, the foreground predicted around
every painted cell), *after a stroke* (one more nucleus painted: predicted
around it only), *unchanged* (the other images of the set when one is painted:
a copy and a comparison). Reference in the same run: the round's own
preparation of the same set (``prepare_training_data``: the same judgement, the
weight maps and the split). Medians over images and repeats; prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi

from napari_unet._qt.scope_judge import SharedModel, StartJudge
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.training import TrainConfig
from napari_unet.training.data import prepare_training_data


def painted_set(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, 8 nuclei and 3 dabs painted, the 9th nucleus) per image."""
    out = []
    for seed in range(n):
        image, truth = make_cells((size, size), style="fluorescence", seed=100 + seed)
        ids = np.unique(truth)[1:10]
        painted = np.where(np.isin(truth, ids[:8]), truth, 0)
        far = ndi.distance_transform_edt(truth == 0) > 12
        far[:24], far[-24:], far[:, :24], far[:, -24:] = False, False, False, False
        spots = np.argwhere(far)
        top = int(truth.max())
        for k, (y, x) in enumerate(spots[[0, len(spots) // 2, len(spots) - 1]], start=1):
            painted[y - 1 : y + 2, x - 1 : x + 2] = top + k
        out.append((image, painted, np.where(truth == ids[8], truth, 0)))
    return out


def _ms(f) -> tuple[float, object]:
    t = time.perf_counter()
    got = f()
    return 1000 * (time.perf_counter() - t), got


def main() -> None:
    """Judge each image first, after a stroke and unchanged; the round's preparation beside."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = TrainConfig.interactive()
    model = load_bundled_model()
    data = painted_set(args.images, args.size)
    times: dict[str, list[float]] = {"first": [], "stroke": [], "unchanged": [], "round": []}
    left = []
    for _ in range(args.repeats):
        shared = SharedModel(lambda: model)
        for i, (image, painted, more) in enumerate(data):
            judge = StartJudge(("bundled", i), shared, image, False, cfg)
            ms, (_, summary) = _ms(lambda j=judge, p=painted: j.judged(p.copy(), None))
            times["first"].append(ms)
            left.append(len(summary["left_out"]))
            grown = np.where(more > 0, more, painted)
            times["stroke"].append(_ms(lambda j=judge, g=grown: j.judged(g.copy(), None))[0])
            times["unchanged"].append(_ms(lambda j=judge, g=grown: j.judged(g.copy(), None))[0])
        ms, _ = _ms(
            lambda: prepare_training_data(
                [d[0] for d in data], [d[1] for d in data], model=model, config=cfg
            )
        )
        times["round"].append(ms / len(data))
    print(f"{args.images} images {args.size}x{args.size}, 8 nuclei + 3 dabs each, bundled model")
    print(f"dabs left out per image: {sorted(set(left))} (of 3)")
    print("| per image | median ms | range |")
    print("|---|---:|---|")
    for name, label in (
        ("first", "first judgement (model copied, foreground around every cell)"),
        ("stroke", "after a stroke on it (one more nucleus)"),
        ("unchanged", "unchanged (another image was painted)"),
        ("round", "reference: the round's preparation, per image"),
    ):
        t = times[name]
        print(f"| {label} | {np.median(t):.1f} | {min(t):.1f}-{max(t):.1f} |")


if __name__ == "__main__":
    main()
