"""The instance rule's scale: fixed watershed h/smoothing vs following the object size.

The bundled model through :func:`napari_unet.segment.segment` (its size estimate, its
recommended rule) with the watershed's h and smoothing either fixed at the old defaults
(0.5 px, 1.5 px: the reference, given as caller options) or left to the size-scaled
defaults (h = max(0.5, 0.05 d), smoothing = max(1, 0.06 d), d the estimated diameter), on
the same images in the same run:

- the real HeLa frames (``tests/data/real``; measured, never trained on);
- the recipe's held-out synthetic images (``scripts/train_bundled.py``'s ``evaluate`` seeds);
- the realism cases (edges, dim, lobed, debris: ``napari_unet.synthetic.REALISM_CASES``,
  the images of ``tests/test_bundled.py``).

    python benchmarks/bench_rule_scale.py

Prints markdown: pooled AP@0.5/0.75, missed and extra objects at IoU 0.5, and on the
real frames the fragmented nuclei. About 2-3 minutes on dev-2c.
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

import tifffile

from napari_unet import load_bundled_model
from napari_unet.metrics import error_breakdown, match_instances, pooled_ap
from napari_unet.segment import segment
from napari_unet.synthetic import REALISM_CASES

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
FIXED = {"h": 0.5, "smoothing": 1.5}


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "scripts" / "train_bundled.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def image_sets() -> dict[str, list]:
    """(image, labels) pairs by set name."""
    recipe = _recipe()
    sets = {
        "HeLa (real)": [
            (tifffile.imread(REAL / f"{n}.tif"), tifffile.imread(REAL / f"{n}_labels.tif"))
            for n in ("hela_t0", "hela_t19")
        ],
        "synthetic held-out": [
            cfg.generate(seed=[0, recipe.EVAL_STREAM, k, j])
            for k, cfg in enumerate(recipe.SYNTHETIC)
            for j in range(recipe.EVAL_IMAGES_PER_SETTING)
        ],
    }
    for name, case in REALISM_CASES.items():
        sets[name] = list(case.images())
    return sets


def score(model, pairs, overrides) -> str:
    found, fragmented = [], 0
    for image, truth in pairs:
        labels = segment(model, image, precision="fp32", **overrides).labels
        found.append(match_instances(truth, labels))
        fragmented += error_breakdown(truth, labels)["fragmented"]
    n = sum(m.n_true for m in found)
    tp = sum(m.tp(0.5) for m in found)
    extra = sum(m.n_pred for m in found) - tp
    return (
        f"{pooled_ap(found, 0.5):.3f} | {pooled_ap(found, 0.75):.3f} | {n - tp} | {extra} "
        f"| {fragmented}"
    )


def main() -> None:
    model = load_bundled_model()
    print(f"machine: {platform.machine()} {platform.processor() or ''}".strip())
    print()
    print("| images | rule | AP@0.5 | AP@0.75 | missed | extra | fragmented |")
    print("|---|---|---|---|---|---|---|")
    for name, pairs in image_sets().items():
        for rule, overrides in (("fixed (h 0.5, smoothing 1.5)", FIXED), ("size-scaled", {})):
            print(f"| {name} ({len(pairs)}) | {rule} | {score(model, pairs, overrides)} |")


if __name__ == "__main__":
    main()
