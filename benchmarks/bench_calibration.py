"""The instance step: the fixed default rule vs the rule calibrated on the user's cells.

For each synthetic scene (rods, lobed, spreading, round nuclei; napari_unet.synthetic.colonies)
the bundled model is fine-tuned for a fixed number of steps on one image (its held-out cells
calibrate the rule), then a second image of the same kind is scored with the same
probabilities under: the fixed default rule (distance watershed), the bundled model's rule
(the default plus min_confidence 0.7), plain connected components, and the calibrated rule.
The calibration's cost is its own seconds against the training's.

``--real`` also scores the bundled model on ../shared/data/real (hela_t0, hela_t19) with
the options the resolver gives it (unchanged model metadata), the README's old first example
(labels_from_probabilities without the model), components, and a rule calibrated on hela_t0's
cells alone (no training) scored on hela_t19.

    python benchmarks/bench_calibration.py --steps 60 --real
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from napari_unet import (
    TrainConfig,
    labels_from_probabilities,
    load_bundled_model,
    predict_tiled,
    train_model,
)
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.postprocess import resolve_postprocess
from napari_unet.postprocess.calibration import CalibrationSample, calibrate
from napari_unet.postprocess.describe import describe_model_rule
from napari_unet.synthetic.colonies import make_scene

# the repository's sibling shared/ folder; --real-dir for a worktree elsewhere
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    m = [match_instances(truth, pred)]
    return pooled_ap(m, 0.5), pooled_ap(m, 0.75)


def rules(prob: np.ndarray, bundled: dict, model) -> dict[str, np.ndarray]:
    return {
        "fixed default": labels_from_probabilities(prob),
        "bundled rule": labels_from_probabilities(prob, **bundled),
        "components": labels_from_probabilities(prob, method="components"),
        "calibrated": labels_from_probabilities(prob, model=model),
    }


def synthetic(kind: str, steps: int, tile: int, size: int, seed: int) -> dict:
    image, labels = make_scene(kind, (size, size), seed=seed)
    test, truth = make_scene(kind, (size, size), seed=seed + 100)
    model = load_bundled_model()
    bundled = resolve_postprocess(model)
    cfg = TrainConfig.fine_tune(steps=steps, tile_size=tile, validation_fraction=0.15)
    t0 = time.perf_counter()
    model = train_model(image, labels, model=model, config=cfg, device="cpu")
    total = time.perf_counter() - t0
    about = model.metadata["postprocess"]["calibration"]
    prob = predict_tiled(model, test, device="cpu")
    row = {name: scores(truth, pred) for name, pred in rules(prob, bundled, model).items()}
    row.update(
        kind=kind,
        rule=describe_model_rule(model),
        cal_s=about["seconds"],
        train_s=model.metadata["training"]["seconds"],
        total_s=total,
        cells=truth.max(),
    )
    return row


def real(folder: Path) -> None:
    import tifffile

    from napari_unet import segment

    model = load_bundled_model()
    bundled = resolve_postprocess(model)
    probs, truths = {}, {}
    for name in ("hela_t0", "hela_t19"):
        image = tifffile.imread(folder / f"{name}.tif")
        truths[name] = tifffile.imread(folder / f"{name}_labels.tif")
        result = segment(model, image, rescale=1.0, device="cpu")
        probs[name] = result.probabilities
        before_api = labels_from_probabilities(result.probabilities)  # README's old example
        row = {
            "segment (resolver; = main's segment)": result.labels,
            "labels_from_probabilities, no model (main's README example)": before_api,
            "labels_from_probabilities(model=) (resolver)": labels_from_probabilities(
                result.probabilities, model=model
            ),
            "components": labels_from_probabilities(result.probabilities, method="components"),
        }
        for what, pred in row.items():
            a50, a75 = scores(truths[name], pred)
            print(f"| {name} | {what} | {a50:.3f} | {a75:.3f} | {int(pred.max())} |")
    t0 = time.perf_counter()
    region = np.ones(truths["hela_t0"].shape, bool)
    found = calibrate(
        [CalibrationSample(probs["hela_t0"], truths["hela_t0"], region)], previous=bundled
    )
    cost = time.perf_counter() - t0
    pred = labels_from_probabilities(probs["hela_t19"], **found.rule)
    a50, a75 = scores(truths["hela_t19"], pred)
    print(
        f"| hela_t19 | calibrated on hela_t0's {found.cells} cells ({cost:.1f} s, "
        f"{found.rules_tried} labellings): {found.rule['method']}, threshold "
        f"{found.rule['threshold']}, min_confidence {found.rule['min_confidence']} "
        f"| {a50:.3f} | {a75:.3f} | {int(pred.max())} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--tile", type=int, default=188)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--kinds", nargs="+", default=["rods", "lobed", "spreading", "round"])
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--real-dir", type=Path, default=REAL)
    args = parser.parse_args()
    if not args.no_synthetic:
        names = ("fixed default", "bundled rule", "components", "calibrated")
        print("| scene | seed | " + " | ".join(f"{n} AP@0.5/0.75" for n in names), end="")
        print(" | calibration s / training s | calibrated rule |")
        print("|---" * (len(names) + 4) + "|")
        ratios = []
        for kind in args.kinds:
            for seed in args.seeds:
                r = synthetic(kind, args.steps, args.tile, args.size, seed)
                ratios.append(r["cal_s"] / r["train_s"])
                cols = " | ".join(f"{r[n][0]:.3f} / {r[n][1]:.3f}" for n in names)
                print(
                    f"| {kind} | {seed} | {cols} | {r['cal_s']:.1f} / {r['train_s']:.0f} "
                    f"| {r['rule']} |",
                    flush=True,
                )
        print(f"calibration cost: median {statistics.median(ratios):.1%} of the training time")
    if args.real:
        print("| image | labels from | AP@0.5 | AP@0.75 | objects |")
        print("|---|---|---|---|---|")
        real(args.real_dir)


if __name__ == "__main__":
    main()
