"""Blends of the bundled model's two stages: real frames, few-cell fine-tunes and the guard.

Run:  .venv/bin/python benchmarks/bench_blend.py --stage1 A.safetensors --stage2 B.safetensors
          [--shares 0 0.5 1] [--seeds 0 1 2 3] [--parts real sparse cli guard] [--data DIR]

Each share ``t`` is the model ``(1 - t) * stage1 + t * stage2`` (the recipe's
``blend_weights``, scripts/train_bundled.py). For each one, in the same process:

- real: the HeLa frames as benchmarks/bench_real.py scores them (AP@0.5, AP@0.75,
  fragmented nuclei; measured only, never trained on);
- sparse: the setup of tests/test_sparse.py and tests/_qt/test_sparse_train.py: 7 of the
  "Synthetic nuclei" sample's cells painted (drawn with ``default_rng(0)``), 6 fine-tune
  steps on 220-pixel tiles at the fine-tune learning rate, AP@0.5 on all the sample's cells
  (default post-processing) minus the start model's; one run per training seed (seed 0 is
  the tests' run);
- cli: the same 7 cells through ``napari-unet train --from FILE --steps 6 --tile 220
  --seed S`` as tests/test_sparse.py's CLI test runs it (it holds one cell out to validate);
- guard: the setup of tests/_qt/test_responsiveness.py's first test: 4 steps on the
  96x128 cells image (validation every 2 steps, fine-tune learning rate), scored by
  ``compare_to_start`` on the held-out cells; how many seeds the guard calls worse.

Fixed step counts and seeds; prints markdown. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet import (
    instance_scores,
    labels_from_probabilities,
    load_model,
    predict_tiled,
    save_model,
)
from napari_unet.cli import main as cli_main
from napari_unet.segment import segment
from napari_unet.synthetic import make_cells
from napari_unet.training import (
    FINE_TUNE_LEARNING_RATE,
    TrainConfig,
    Trainer,
    compare_to_start,
    prepare_training_data,
    train_model,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_real import FRAMES, score  # noqa: E402
from steer_synthetic import _recipe  # noqa: E402  (scripts/train_bundled.py as a module)

PAINTED = 7


def blended(stage1: Path, stage2: Path, share: float):
    """The model ``(1 - share) * stage1 + share * stage2`` with stage 2's metadata."""
    model = load_model(stage2)
    start = load_model(stage1).state_dict()
    model.load_state_dict(_recipe().blend_weights(start, model.state_dict(), share))
    return model


def real_scores(model, data: Path) -> list[dict]:
    """bench_real's scores of each HeLa frame."""
    out = []
    for name in FRAMES:
        image = tifffile.imread(data / f"{name}.tif")
        out.append(
            score(tifffile.imread(data / f"{name}_labels.tif"), segment(model, image).labels)
        )
    return out


def _painted_sample():
    """The sample, its labels, the 7 painted cells, and AP@0.5 of a model on all its cells."""
    image, labels = make_cells((512, 512), style="fluorescence", seed=2015)
    ids = np.unique(labels)[1:]
    pick = np.random.default_rng(0).choice(ids, PAINTED, replace=False)
    sparse = np.where(np.isin(labels, pick), labels, 0)

    def ap(model):
        prob = predict_tiled(model, image)
        return instance_scores(labels, labels_from_probabilities(prob)).ap50

    return image, sparse, ap


def sparse_deltas(stage1: Path, stage2: Path, share: float, seeds) -> tuple[float, list[float]]:
    """The sparse tests' fine-tune, one per seed: (start AP@0.5, change of AP@0.5 per seed)."""
    image, sparse, ap = _painted_sample()
    start = ap(blended(stage1, stage2, share))
    deltas = []
    for seed in seeds:
        cfg = TrainConfig.fine_tune(steps=6, tile_size=220, validation_fraction=0.0, seed=seed)
        model = blended(stage1, stage2, share)
        deltas.append(ap(train_model(image, sparse, model=model, config=cfg, device="cpu")) - start)
    return start, deltas


def cli_deltas(stage1: Path, stage2: Path, share: float, seeds) -> tuple[float, list[float]]:
    """The CLI sparse test's run, one per seed: (start AP@0.5, change of AP@0.5 per seed)."""
    image, sparse, ap = _painted_sample()
    model = blended(stage1, stage2, share)
    start = ap(model)
    deltas = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tifffile.imwrite(folder / "x.tif", image)
        tifffile.imwrite(folder / "sparse_labels.tif", sparse)
        start_file = save_model(model, folder / "start.safetensors")
        for seed in seeds:
            args = ["train", "--image", str(folder / "x.tif"), "--labels"]
            args += [str(folder / "sparse_labels.tif"), "-o", str(folder / "m.safetensors")]
            args += ["--from", str(start_file), "--steps", "6", "--tile", "220"]
            args += ["--device", "cpu", "--seed", str(seed), "--overwrite"]
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                if cli_main(args) != 0:
                    raise RuntimeError(f"napari-unet {' '.join(args)} failed")
            deltas.append(ap(load_model(folder / "m.safetensors")) - start)
    return start, deltas


def guard_verdicts(stage1: Path, stage2: Path, share: float, seeds) -> list[bool]:
    """The responsiveness test's round, one per seed: whether the guard calls it worse."""
    image, truth = make_cells((96, 128), diameter=(10, 18), seed=3)
    worse = []
    for seed in seeds:
        cfg = TrainConfig(
            steps=4,
            time_limit=None,
            validate_every=2,
            learning_rate=FINE_TUNE_LEARNING_RATE,
            seed=seed,
        )
        model = blended(stage1, stage2, share)
        trainer = Trainer(
            model, prepare_training_data(image, truth, model=model, config=cfg), cfg, device="cpu"
        )
        last = None
        for event in trainer.run():
            last = event.validation if event.validation is not None else last
        worse.append(compare_to_start(last, trainer.baseline).worse)
    return worse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", type=Path, required=True)
    parser.add_argument("--stage2", type=Path, required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--parts", nargs="+", default=["real", "sparse", "cli", "guard"])
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "real")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"seeds {args.seeds}; stage 1 {args.stage1}, stage 2 {args.stage2}\n")
    print(
        "| share of stage 2 | t0 AP@0.5 / 0.75 / fragm. | t19 AP@0.5 / 0.75 / fragm. "
        "| sparse: start AP@0.5 | sparse: change per seed | CLI: change per seed | guard: worse |"
    )
    print("|---|---|---|---|---|---|---|")
    for share in args.shares:
        cells = [f"{share:g}"]
        if "real" in args.parts:
            for s in real_scores(blended(args.stage1, args.stage2, share), args.data):
                cells.append(f"{s['ap50']:.3f} / {s['ap75']:.3f} / {s['fragmented']}")
        else:
            cells += ["", ""]
        if "sparse" in args.parts:
            start, deltas = sparse_deltas(args.stage1, args.stage2, share, args.seeds)
            cells += [f"{start:.4f}", " ".join(f"{d:+.4f}" for d in deltas)]
        else:
            cells += ["", ""]
        if "cli" in args.parts:
            start, deltas = cli_deltas(args.stage1, args.stage2, share, args.seeds)
            cells.append(f"(start {start:.4f}) " + " ".join(f"{d:+.4f}" for d in deltas))
        else:
            cells.append("")
        if "guard" in args.parts:
            worse = guard_verdicts(args.stage1, args.stage2, share, args.seeds)
            cells.append(
                f"{sum(worse)}/{len(worse)} (seeds {[s for s, w in zip(args.seeds, worse) if w]})"
            )
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
