"""Over-painted nuclei over several rounds: how the over-paint rule holds when fine-tuned again.

Run:  .venv/bin/python benchmarks/bench_overpaint_rounds.py [--seeds 11 21 31 41 51 61]
      .venv/bin/python benchmarks/bench_overpaint_rounds.py --quick

Six nuclei of a synthetic image (``make_cells``, 256x256) are painted as boxes 2 px past
each (a generous brush; the boxes cover parts of touching neighbours), and the bundled
model is fine-tuned on them in ``--rounds`` rounds of ``--steps`` steps (Fine-tune's
settings), each round from the last. AP@0.5 on the next seed's image is printed after every
round, for these variants on the same images:

- ``exact``: the nuclei painted exactly (the reference); ``exact-each-round``: the same,
  judged again by each round's start model;
- ``main``: boxes with the product's rule (the rim past the start model's sure object left
  unknown), judged as the Train dock judges: one
  :class:`~napari_unet.training.first_sight.ForegroundMemory` for all rounds, so the
  first round's start model judges the paint in every round;
- ``each-round``: the same, judged again by each round's start model (the rule before the
  memory: no memory shared between rounds);
- ``oracle``: boxes, every painted pixel off the own nucleus left unknown (exact knowledge);
- ``background-once``: boxes whose rim, as the bundled model judges it before round 1, is
  taught as background in every round (the paint minus that rim, which is what the user
  would have painted had they followed the model's edge).

``--hela``: real HeLa nuclei instead (t0 painted from its labels, t19 scored; the seeds
pick the six nuclei). docs/benchmarks.md, "Over-painted cells over several rounds" and
"The first judgement is kept". Nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.synthetic.scribbles import box_cells
from napari_unet.training import TrainConfig, train_model
from napari_unet.training import partial as partial_rule
from napari_unet.training.data import model_normalization
from napari_unet.training.first_sight import ForegroundMemory
from napari_unet.training.known import ring_width

sys.path.insert(0, str(Path(__file__).parent))
from bench_live import hela_task  # noqa: E402

VARIANTS = ("exact", "exact-each-round", "main", "each-round", "oracle", "background-once")


def rim_of_bundled(image: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """The over-painted rim as the bundled model judges it (the product's rule, once)."""
    model = load_bundled_model()
    norm = model_normalization(model, TrainConfig.fine_tune())
    x = norm.apply(image, norm.statistics(image), channel_axis=None)[None].astype(np.float32)
    rule = partial_rule.PartialRule(model)
    return rule(x, labels, ring_width(labels, TrainConfig.fine_tune().sigma), 0)[3]


def scene(seed: int, side: int, hela: bool) -> tuple[np.ndarray, ...]:
    """Painted image and labels, held-out image and labels, and the six nuclei painted."""
    if hela:  # real: t0 painted, t19 scored; the seed picks the nuclei
        image, truth, test_image, test_truth = hela_task()
        pick = np.random.default_rng(seed)
    else:
        image, truth = make_cells((side, side), style="fluorescence", seed=seed)
        test_image, test_truth = make_cells((side, side), style="fluorescence", seed=seed + 1)
        pick = np.random.default_rng(0)
    ids = np.sort(pick.choice(np.unique(truth)[1:], 6, replace=False))
    return image, truth, test_image, test_truth, ids


def run(
    variant: str, seed: int, rounds: int, steps: int, side: int, hela: bool = False
) -> list[float]:
    image, truth, test_image, test_truth, ids = scene(seed, side, hela)
    labels = box_cells(truth, ids)
    real = partial_rule.overhang
    if variant.startswith("exact"):
        labels = np.where(np.isin(truth, ids), truth, 0).astype(np.int32)
    elif variant == "oracle":
        off = (labels > 0) & (truth != labels)
        partial_rule.overhang = lambda *_a, **_k: off.copy()
    elif variant == "background-once":
        rim = rim_of_bundled(image, labels)
        if rim is not None:
            labels = np.where(rim, 0, labels).astype(np.int32)
    config = TrainConfig.fine_tune(tile_size=220, seed=0).replace(steps=steps, time_limit=None)
    model, aps = load_bundled_model(), []
    memory = None if variant.endswith("each-round") else ForegroundMemory()
    try:
        for r in range(rounds + 1):
            probs = predict_tiled(model, test_image, device="cpu")
            pred = labels_from_probabilities(probs, model=model)
            aps.append(instance_scores(test_truth, pred).ap50)
            if r < rounds:
                model = train_model(
                    image, labels, model=model, config=config, device="cpu", memory=memory
                )
    finally:
        partial_rule.overhang = real
    return aps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 21, 31, 41, 51, 61])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hela", action="store_true", help="real HeLa nuclei (t0 -> t19)")
    parser.add_argument("--quick", action="store_true", help="one seed, one 5-step round")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rounds, args.steps, args.side = args.seeds[:1], 1, 5, 192
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    print("| variant | seed | AP@0.5 after round 0, 1, ... |")
    print("|---|---|---|")
    means = {}
    for variant in args.variants:
        rows = []
        for seed in args.seeds:
            aps = run(variant, seed, args.rounds, args.steps, args.side, args.hela)
            rows.append(aps)
            print(f"| {variant} | {seed} | {' / '.join(f'{a:.3f}' for a in aps)} |", flush=True)
        means[variant] = np.mean(rows, axis=0)
    for variant, m in means.items():
        print(f"mean {variant}: {' / '.join(f'{a:.3f}' for a in m)}")
    print(f"ran {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
