"""The instance rule's scale: fixed watershed h/smoothing vs following the object size.

The bundled model through :func:`napari_unet.segment.segment` (its size estimate, its
recommended rule) with the watershed's h and smoothing either fixed at the old defaults
(0.5 px, 1.5 px: the reference, given as caller options) or left to the size-scaled
defaults (h = max(0.5, 0.05 d), smoothing = max(1, 0.06 d), d the estimated diameter), on
the same images in the same run:

- the real HeLa frames (``tests/data/real``; measured, never trained on);
- the recipe's held-out synthetic images (``scripts/train_bundled.py``'s ``evaluate`` seeds);
- the realism cases of ``tests/test_bundled.py`` (edges, dim, lobed, debris), same seeds.

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
from napari_unet.synthetic import SyntheticConfig

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
    base = dict(shape=(256, 256), diameter=(15, 30), debris=0.0, dividing=0.0)
    cases = {
        "edges": (dict(base, touching=0.0, out_of_focus=0.0, dim=0.0), 1, 6),
        "dim": (dict(base, touching=0.8, dim=0.5, out_of_focus=0.0, dtype="uint8",
                     photons=(50, 200)), 2, 8),
        "lobed": (dict(base, diameter=(18, 32), touching=0.2, lobed=1.0), 3, 6),
        "debris": (dict(shape=(256, 256), diameter=(15, 30), touching=0.3, debris=6.0), 4, 6),
    }  # fmt: skip
    for name, (kw, case, n) in cases.items():
        config = SyntheticConfig(**kw)
        sets[name] = [config.generate(seed=[16, case, s]) for s in range(n)]
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
