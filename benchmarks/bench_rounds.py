"""Rounds of annotation: does fine-tuning the bundled model in rounds keep improving it?

Run:  .venv/bin/python benchmarks/bench_rounds.py [--seed 0] [--seconds 60] [--cells 20]
      .venv/bin/python benchmarks/bench_rounds.py --compare-bundled
      .venv/bin/python benchmarks/bench_rounds.py --compare-bundled --steps 80

The user's loop from issue 14 on a domain the bundled model never saw: round 0 is
the bundled model zero-shot; in each of rounds 1-3 the user annotates ``--cells``
more cells (cumulative: 20, 40, 60) and fine-tunes for ``--seconds`` from the
previous round's model with the Train dock's defaults (``TrainConfig.interactive()``,
only the time budget changed). Every round is scored on a separate held-out image
of the same domain: AP@0.5, AP@0.75 and mean IoU. ``--steps`` replaces the time
budget by a step budget, so that the load of a shared machine does not decide
how much each round trains (fairer for ``--compare-bundled``, which fine-tunes from
the bundled model every round instead).

The domain shift: the bundled model was trained on fluorescent nuclei only
(``scripts/train_bundled.py``); here the generator's ``"brightfield"`` style draws
phase-contrast-like cells (a bright textured background, cells seen through their
optical thickness with dark and bright halo edges, more irregular outlines), which
inverts the contrast the model learnt.

What the user annotates: cells in the order a person paints them, outward from one
spot, so the annotated area grows as one patch. The annotated region is where the
annotation is complete: every pixel whose nearest true cell (``expand_labels``) is an
annotated one, within ``REGION_MARGIN`` pixels of it. So the background between
annotated cells is in the region, and an unannotated cell never is (its own pixels
are nearest to itself).

Each round also checks the "Correct the mistakes" ranking
(:func:`napari_unet.correction.rank_uncertain`) on the held-out prediction: the share
of wrong cells (no true cell with IoU > 0.5) among the ``TOP`` least sure, against
the share among all predicted cells. A useful ranking puts more mistakes on top.

Nothing is asserted; the script prints a table and a verdict ("rising: yes/no").
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import expand_labels

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.correction import rank_uncertain
from napari_unet.metrics import iou_matrix
from napari_unet.postprocess import foreground_probability
from napari_unet.synthetic import SyntheticConfig
from napari_unet.training import TrainConfig, TrainState, train_model

SHAPE = (384, 384)
# Inside the bundled model's trained diameter range (8 to 40 px): the shift is the contrast.
DIAMETER = (14.0, 28.0)
# Background (in pixels) around annotated cells that counts as annotated.
REGION_MARGIN = 8
# How many of the least sure cells the ranking check looks at.
TOP = 10


@dataclass
class World:
    """A training image and a held-out test image of one shifted domain."""

    config: SyntheticConfig
    train_image: np.ndarray
    train_labels: np.ndarray
    test_image: np.ndarray
    test_labels: np.ndarray


@dataclass
class Round:
    """One round's result."""

    index: int
    cells: int
    steps: int
    seconds: float
    ap50: float
    ap75: float
    mean_iou: float
    wrong_top: float = float("nan")  # share of wrong cells among the TOP least sure
    wrong_all: float = float("nan")  # share of wrong cells among all predicted cells


def shifted_domain(shape: tuple[int, int] = SHAPE) -> SyntheticConfig:
    """The shifted domain: brightfield-like cells (the bundled model saw fluorescence only)."""
    return SyntheticConfig(shape=shape, style="brightfield", diameter=DIAMETER)


def make_world(seed: int, shape: tuple[int, int] = SHAPE) -> World:
    """Draw the training image and a held-out test image (another seed) of the domain."""
    config = shifted_domain(shape)
    train_image, train_labels = config.generate(seed=[seed, 0])
    test_image, test_labels = config.generate(seed=[seed, 1])
    return World(config, train_image, train_labels, test_image, test_labels)


def annotation_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Cell ids in the order a user paints them: outward from a random spot.

    Cells cut by the image border come last (people annotate whole cells first).
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    centres = np.array(ndi.center_of_mass(labels > 0, labels, ids)).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.25, 0.75, 2) * np.array(labels.shape)
    distance = np.hypot(*(centres - start).T)
    border = np.zeros(labels.max() + 1, bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border[edge] = True
    order = np.lexsort((distance, border[ids]))
    return ids[order]


def annotation(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The user's annotation of cells ``ids`` and the region where it is complete."""
    chosen = np.isin(labels, ids)
    painted = np.where(chosen, labels, 0).astype(np.int32)
    nearest = expand_labels(labels, distance=REGION_MARGIN)
    region = np.isin(nearest, ids)
    return painted, region


def ap_at(true: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    """Average precision ``TP / (TP + FP + FN)`` with matches above IoU ``threshold``."""
    iou = iou_matrix(true, pred)
    nt, npred = iou.shape
    if nt == 0 or npred == 0:
        return float(nt == npred)
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] > threshold).sum())
    return tp / (nt + npred - tp)


def score(model, image: np.ndarray, truth: np.ndarray) -> tuple[float, ...]:
    """AP@0.5, AP@0.75, mean IoU, and the wrong shares of the ranking (see :class:`Round`)."""
    probabilities = predict_tiled(model, image, device="cpu")
    pred = labels_from_probabilities(probabilities)
    s = instance_scores(truth, pred)
    return (
        s.ap50,
        ap_at(truth, pred, 0.75),
        s.mean_iou,
        *ranking_check(probabilities, pred, truth),
    )


def ranking_check(probabilities, pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Share of wrong cells among the ``TOP`` least sure, and among all predicted cells.

    A predicted cell is wrong when no true cell overlaps it with IoU above 0.5.
    """
    ids = np.unique(pred[pred > 0])
    if ids.size == 0:
        return float("nan"), float("nan")
    best = iou_matrix(truth, pred).max(axis=0, initial=0.0)  # columns follow sorted ids
    wrong = dict(zip(ids.tolist(), (best <= 0.5).tolist()))
    ranked = rank_uncertain(foreground_probability(probabilities), pred, top=TOP)
    return float(np.mean([wrong[c.label] for c in ranked])), float(np.mean(list(wrong.values())))


def fine_tune(model, image, labels, region, seconds, seed: int, steps: int | None = None):
    """Fine-tune ``model`` in place with the Train dock's defaults; returns (model, steps, s).

    ``seconds`` and ``steps`` are the budgets (None: no such limit; one must be given).
    """
    config = TrainConfig.interactive().replace(time_limit=seconds, steps=steps, seed=seed)
    last = []

    def progress(event):
        if event.state in (TrainState.DONE, TrainState.STOPPED):
            last.append(event.step)

    start = time.perf_counter()
    model = train_model(
        image, labels, region, model=model, config=config, device="cpu", progress=progress
    )
    return model, (last[-1] if last else 0), time.perf_counter() - start


def warm_up() -> None:
    """Do the one-time loading the Train dock does when it opens.

    The weight-map kernels are compiled and torch's optimizer code is loaded, so round
    1's budget is spent training, as the user's is.
    """
    from napari_unet.model import UNet
    from napari_unet.weightmap import warm_up as warm_weightmap

    warm_weightmap()
    tiny = UNet(base_channels=1, depth=1)
    optimizer = torch.optim.Adam(tiny.parameters())
    tiny(torch.zeros(1, 1, 5, 5)).sum().backward()
    optimizer.step()


def run_rounds(
    world: World,
    *,
    rounds: int = 3,
    cells: int = 20,
    seconds: float | None = 60.0,
    steps: int | None = None,
    seed: int = 0,
    chained: bool = True,
) -> list[Round]:
    """Round 0 (bundled, zero-shot) and ``rounds`` rounds of annotating and fine-tuning.

    ``chained``: each round starts from the previous round's model (the user's loop);
    otherwise every round starts from the bundled model again.
    """
    order = annotation_order(world.train_labels, seed)
    model = load_bundled_model()
    results = [Round(0, 0, 0, 0.0, *score(model, world.test_image, world.test_labels))]
    for r in range(1, rounds + 1):
        ids = order[: cells * r]
        painted, region = annotation(world.train_labels, ids)
        start = model if chained else load_bundled_model()
        model, done, took = fine_tune(
            start, world.train_image, painted, region, seconds, seed + r, steps
        )
        results.append(
            Round(r, len(ids), done, took, *score(model, world.test_image, world.test_labels))
        )
    return results


def rising(results: list[Round]) -> bool:
    """Whether AP@0.5 goes up from each round to the next."""
    aps = [r.ap50 for r in results]
    return all(b > a for a, b in zip(aps, aps[1:]))


def table(results: list[Round], title: str) -> str:
    """A markdown table of the rounds."""
    lines = [
        f"**{title}**",
        "",
        "| round | annotated cells | steps | seconds | AP@0.5 | AP@0.75 | mean IoU "
        f"| wrong among {TOP} least sure | wrong among all |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        start = "bundled, zero-shot" if r.index == 0 else f"{r.index}"
        lines.append(
            f"| {start} | {r.cells} | {r.steps} | {r.seconds:.0f} | {r.ap50:.3f} | "
            f"{r.ap75:.3f} | {r.mean_iou:.3f} | {r.wrong_top:.0%} | {r.wrong_all:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the rounds and print the table and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", type=int, default=20, help="cells annotated per round")
    parser.add_argument("--seconds", type=float, default=60.0, help="fine-tuning per round")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per round instead of --seconds"
    )
    parser.add_argument(
        "--compare-bundled",
        action="store_true",
        help="also fine-tune from the bundled model every round (costs rounds - 1 more runs)",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    warm_up()
    world = make_world(args.seed)
    n_train, n_test = int(world.train_labels.max()), int(world.test_labels.max())
    print(
        f"{platform.machine()}, {torch.get_num_threads()} torch threads; "
        f"brightfield-like {SHAPE[0]}x{SHAPE[1]} images: {n_train} cells to annotate from, "
        f"{n_test} held-out cells",
        flush=True,
    )
    seconds = None if args.steps else args.seconds
    kwargs = dict(
        rounds=args.rounds, cells=args.cells, seconds=seconds, steps=args.steps, seed=args.seed
    )
    chained = run_rounds(world, **kwargs)
    print(table(chained, "From the previous round's model (the user's loop)"))
    print(f"\nrising: {'yes' if rising(chained) else 'no'}", flush=True)
    if args.compare_bundled:
        fresh = run_rounds(world, chained=False, **kwargs)
        print()
        print(table(fresh, "From the bundled model every round"))
        print(f"\nrising: {'yes' if rising(fresh) else 'no'}")


if __name__ == "__main__":
    main()
