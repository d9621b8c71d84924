"""Steer the synthetic recipe by real images: fine-tune the bundled model on variants, score each.

A short, fixed protocol (issue 25): every variant starts from the same bundled weights and
trains the same number of steps on the recipe's settings (scripts/train_bundled.py: Adam,
the pinned augmentation and weight map) with the same seeds; only the synthetic settings
differ. Each result is then scored on the real HeLa frames (benchmarks/bench_real.py,
measure only: never trained on) and on the recipe's held-out synthetic images
(``evaluate``). A variant that raises one and lowers the other is rejected.

    python benchmarks/steer_synthetic.py VARIANT [--steps 400] [--lr 1e-4] -o OUT.safetensors

Variants (:data:`VARIANTS`): ``control`` (the recipe's settings unchanged), ``modes`` (the
recipe's settings with the real-image modes of :mod:`napari_unet.synthetic.realism` switched
on, as the recipe's second stage), or one mode alone. ``--score-only`` scores ``--start``
(or the bundled model) as it is. Results and the choice: docs/benchmarks.md, "Real-image
failure modes in the generator".
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import tifffile

from napari_unet import load_bundled_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
# the HeLa frames copied into the repository (the same files as ../shared/data/real's)
REAL = ROOT / "tests" / "data" / "real"


def _recipe():
    spec = importlib.util.spec_from_file_location(
        "train_bundled", ROOT / "scripts/train_bundled.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Each variant's real-image modes (:mod:`napari_unet.synthetic.realism`), added to every
#: recipe setting (``high_offset`` to the 16-bit ones only).
VARIANTS = {
    "control": {},
    "modes": {"mitotic": 0.06, "specks": 1.0, "high_offset": 0.3},
    "mitotic": {"mitotic": 0.06},
    "specks": {"specks": 1.0},
    "offset": {"high_offset": 0.3},
}


def fine_tune(name: str, steps: int, lr: float, seed: int, images: int, start=None):
    """The bundled model (or ``start``) fine-tuned ``steps`` steps on a variant's images.

    The recipe's second stage (scripts/train_bundled.py ``fine_tune_stage``) with the
    variant's modes in place of the recipe's.
    """
    if name not in VARIANTS:
        raise SystemExit(f"Unknown variant {name!r}; use one of {', '.join(VARIANTS)}.")
    recipe = _recipe()
    model = load_model(start) if start else load_bundled_model()
    config = dataclasses.replace(recipe.training_config(seed, steps), learning_rate=lr)
    settings = recipe.with_modes(recipe.SYNTHETIC, VARIANTS[name])
    recipe.fine_tune_stage(model, settings, config, images, log=lambda m: print(name, m))
    return model, recipe


def score(model, recipe) -> dict:
    """bench_real's HeLa scores and the recipe's held-out synthetic scores."""
    spec = importlib.util.spec_from_file_location("bench_real", ROOT / "benchmarks/bench_real.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from napari_unet.segment import segment

    out = {}
    for frame in bench.FRAMES:
        image = tifffile.imread(REAL / f"{frame}.tif")
        true = tifffile.imread(REAL / f"{frame}_labels.tif")
        s = bench.score(true, segment(model, image, precision="fp32").labels)
        out[frame] = {k: round(float(v), 4) for k, v in s.items()}
    synth = recipe.evaluate(model, 0)
    out["synthetic"] = {k: v for k, v in synth.items() if k.startswith(("ap", "mean", "median"))}
    out["synthetic_per_setting"] = [s["ap50"] for s in synth["per_setting"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--start", help="start from this model file (default: bundled)")
    parser.add_argument("--score-only", action="store_true", help="score --start as it is")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if args.score_only:
        model = load_model(args.start) if args.start else load_bundled_model()
        print(json.dumps(score(model, _recipe()), indent=1))
        return
    model, recipe = fine_tune(args.variant, args.steps, args.lr, args.seed, args.images, args.start)
    if args.output:
        save_model(model, args.output)
    print(json.dumps(score(model, recipe), indent=1))


if __name__ == "__main__":
    main()
