"""Second-stage candidates for the bundled model, scored on every gate that judged them.

The recipe's second stage (scripts/train_bundled.py, ``--from``) fine-tunes the shipped
stage-1 weights at :data:`STAGE2_LEARNING_RATE` on the real-image modes. This script
trains two such fine-tunes from the same start, with the recipe's settings and seeds:

- ``modes``: the recipe's second stage as it is;
- ``stacks``: the same, plus XY planes and XZ / YZ sections of synthetic 3D stacks under
  widefield out-of-focus light (:func:`stack_sections`), with their exact 3D labels
  sliced alike, so the network sees the light of nuclei above and below as background
  (the "views" mode averages exactly such planes and sections);

then scores models ``stage1 + a * (modes - stage1) + b * (stacks - stage1)`` (``a``,
``b``: shares of each fine-tune's change; ``(a, 0)`` is the recipe's ``--blend a``) on:

- held-out synthetic: the recipe's ``evaluate`` (18 images, 1531 nuclei), AP@0.5 / 0.75;
- sample: AP@0.5 on the "Synthetic nuclei" sample (223 cells) and its change after the
  7-cell fine-tunes of tests/test_sparse.py (``train_model`` and CLI, training seed 0);
- 3D toy: true objects found by "linked" and "views" on the 4 touching nuclei of
  tests/test_volume.py (the test asks views >= linked + 2);
- defocus 3D: pooled AP@0.5 / 0.75 of "views" and "linked" on two stacks of
  :data:`napari_unet.synthetic.DEFOCUS_3D` (seeds ``[25, 3, k]``, diameter 11, as
  benchmarks/bench_defocus3d.py);
- HeLa (real, measured only, never trained on): AP@0.5 / AP@0.75 / fragmented nuclei per
  frame, as benchmarks/bench_real.py;
- CHO (real, with ``--cho``; needs ../shared/data/real): AP@0.5 of "views" and "linked".

``--draws N`` adds a second table: the four one-draw tests that flipped for some candidate,
each run on N draws (training seeds or image seeds 0..N-1 from the test's own), and how
many draws each candidate passes (:func:`draws_row`).

    python benchmarks/bench_stage2.py [--modes-file F --stacks-file G] [--save-dir DIR]
        [--pairs 0,0 0.75,0 0,1 0.75,0.25] [--steps 400] [--cho] [--draws 4]

``--modes-file`` / ``--stacks-file``: fine-tunes made before (``--save-dir`` writes them),
so the scoring can be rerun without training. Prints markdown; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet import (
    TrainConfig,
    instance_scores,
    labels_from_probabilities,
    load_model,
    predict_tiled,
    save_model,
    train_model,
)
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.postprocess.calibration import CalibrationSample, calibrate
from napari_unet.seeding import random_generator
from napari_unet.segment import segment
from napari_unet.synthetic import DEFOCUS_3D, make_cells, make_nuclei_3d
from napari_unet.synthetic.colonies import make_scene

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_blend import cli_deltas, real_scores, sparse_deltas  # noqa: E402
from bench_real import CHO_VOXEL  # noqa: E402
from bench_real import DATA as CHO  # noqa: E402  (../shared/data/real)
from steer_synthetic import REAL, _recipe  # noqa: E402

BUNDLED = ROOT / "src" / "napari_unet" / "bundled" / "nuclei.safetensors"
#: Seed stream of the 3D stacks (the recipe's second stage draws its images from 50_000).
STACK_STREAM = 50_001
STACK_SHAPE = (40, 128, 128)


def stack_sections(seed: int, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three XY planes, two XZ and two YZ sections of one defocused stack, and their labels.

    Each stack draws its own nuclei size (8-14 px at the small end, 1.3-1.7x that at the
    large end), axial blur (1-2.5x the lateral), photons (50-400) and share of
    out-of-focus light (0.5-0.9), around :data:`napari_unet.synthetic.DEFOCUS_3D`; the
    voxels are isotropic, so the sections are not resampled.
    """
    rng = random_generator([seed, STACK_STREAM, k])
    lo = rng.uniform(8.0, 14.0)
    options = dict(
        diameter=(lo, lo * rng.uniform(1.3, 1.7)),
        blur=(1.0, 1.4),
        axial_blur=rng.uniform(1.0, 2.5),
        touching=0.4,
        photons=tuple(sorted(rng.uniform(50.0, 400.0, 2))),
        defocus=rng.uniform(0.5, 0.9),
    )
    image, labels = make_nuclei_3d(STACK_SHAPE, seed=[seed, STACK_STREAM, k], **options)
    z, h, w = STACK_SHAPE
    cuts = [(zi, slice(None), slice(None)) for zi in rng.choice(np.arange(6, z - 6), 3, False)]
    cuts += [(slice(None), yi, slice(None)) for yi in rng.choice(np.arange(10, h - 10), 2, False)]
    cuts += [(slice(None), slice(None), xi) for xi in rng.choice(np.arange(10, w - 10), 2, False)]
    images = [np.ascontiguousarray(image[c]) for c in cuts]
    return images, [np.ascontiguousarray(labels[c]) for c in cuts]


def fine_tune(recipe, stacks: int, steps: int, seed: int = 0) -> dict:
    """The recipe's second stage from the bundled weights, with ``stacks`` stacks' sections."""
    model = load_model(BUNDLED)
    config = recipe.stage2_config(seed, steps)
    settings = recipe.with_modes(recipe.SYNTHETIC, recipe.STAGE2_MODES)
    pairs = [stack_sections(seed, k) for k in range(stacks)]
    extra = ([i for a, _ in pairs for i in a], [lab for _, b in pairs for lab in b])
    recipe.fine_tune_stage(model, settings, config, recipe.STAGE2_IMAGES, extra=extra)
    return model


def combined(start: dict, modes: dict, stacks: dict, a: float, b: float):
    """The bundled model with ``start + a (modes - start) + b (stacks - start)`` as weights."""
    model = load_model(BUNDLED)
    model.load_state_dict(
        {k: start[k] + a * (modes[k] - start[k]) + b * (stacks[k] - start[k]) for k in start}
    )
    return model.eval()


def seven_cell_deltas(path: Path, seeds) -> tuple[float, list[float], list[float]]:
    """Sample AP@0.5 and its change after the tests' two 7-cell fine-tunes, per training seed."""
    start, sparse = sparse_deltas(path, path, 1.0, seeds)
    _, cli = cli_deltas(path, path, 1.0, seeds)
    return start, sparse, cli


def toy_3d(model, seed: int = 0) -> dict:
    """Each stack mode's scores on tests/test_volume.py's 4 touching nuclei (its seed: 0)."""
    image, truth = make_nuclei_3d(
        (16, 48, 48), seed=seed, n_nuclei=4, touching=1.0, diameter=(12.0, 18.0)
    )
    return {
        m: instance_scores(truth, segment(model, image, stack=m, rescale=1.0).labels)
        for m in ("planes", "linked", "views")
    }


def _toy_passes(s: dict) -> bool:
    """tests/test_volume.py's "views beat linked beat planes" on :func:`toy_3d`'s scores."""
    return (
        s["views"].ap50 > s["linked"].ap50 > s["planes"].ap50
        and s["views"].tp >= s["linked"].tp + 2
        and s["linked"].tp > s["planes"].tp
    )


def defocus_3d(model) -> str:
    pairs = [make_nuclei_3d((32, 96, 96), seed=[25, 3, k], **DEFOCUS_3D) for k in range(2)]
    out = []
    for mode in ("views", "linked"):
        found = [
            match_instances(t, segment(model, im, stack=mode, precision="fp32", diameter=11).labels)
            for im, t in pairs
        ]
        out.append(f"{pooled_ap(found, 0.5):.3f} / {pooled_ap(found, 0.75):.3f}")
    return " | ".join(out)


def hela(model) -> str:
    return " | ".join(
        f"{s['ap50']:.3f} / {s['ap75']:.3f} / {s['fragmented']}" for s in real_scores(model, REAL)
    )


def cho(model) -> str:
    image = tifffile.imread(CHO / "cho_t0_zyx.tif")
    truth = tifffile.imread(CHO / "cho_t0_zyx_labels.tif")
    out = []
    for mode in ("views", "linked"):
        labels = segment(model, image, stack=mode, voxel_size=CHO_VOXEL).labels
        out.append(f"{pooled_ap([match_instances(truth, labels)], 0.5):.3f}")
    return " | ".join(out)


def _rods_pass(path: Path, seed: int) -> bool:
    """tests/test_calibration_rods.py's check with training seed ``seed``."""
    image, labels = make_scene("rods", (192, 192), seed=1)
    test, truth = make_scene("rods", (192, 192), seed=2)
    cfg = TrainConfig.fine_tune(
        steps=12, time_limit=60.0, tile_size=188, validation_fraction=0.2, complete=True, seed=seed
    )
    model = train_model(image, labels, model=load_model(path), config=cfg, device="cpu")
    prob = predict_tiled(model, test, device="cpu")

    def ap75(pred):
        return pooled_ap([match_instances(truth, pred)], 0.75)

    calibrated = ap75(labels_from_probabilities(prob, model=model))
    return calibrated >= ap75(labels_from_probabilities(prob, method="components")) - 0.05


def _windows_pass(model, seed: int) -> bool:
    """tests/test_calibration.py's windows-vs-whole-plane check on the cells of ``seed``."""
    from napari_unet.training import calibrate as cal
    from napari_unet.training import prepare_training_data

    img, lab = make_cells((384, 384), seed=seed, diameter=(14, 22))
    few = np.isin(lab, np.unique(lab)[1:5])
    data = prepare_training_data(
        img, np.where(few, lab, 0), model=model, config=TrainConfig(tile_size=60)
    )
    samples, _ = cal.calibration_samples(model, data, "cpu")
    plane = data.planes[0]
    whole = cal._predict_window(model, plane, (0, 384, 0, 384), "cpu")
    found = calibrate(samples, time_limit=None)
    reference = calibrate(
        [CalibrationSample(whole, plane.annotation, plane.region)], time_limit=None
    )
    return abs(found.score - reference.score) <= 0.02


def draws_row(model, path: Path, sparse: list[float], cli: list[float], toys: list[dict]) -> str:
    """Draws passed of each of the four one-draw tests, with ``path`` (``model``) bundled.

    ``sparse``, ``cli``, ``toys``: the 7-cell changes and the 3D toy's scores per draw.
    """
    n = len(toys)
    cells = [
        sum(d >= 0 for d in sparse),
        sum(d >= 0 for d in cli),
        sum(_toy_passes(t) for t in toys),
        sum(_rods_pass(path, s) for s in range(n)),
        sum(_windows_pass(model, 5 + s) for s in range(n)),
    ]
    return " | ".join(f"{c}/{n}" for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes-file", type=Path)
    parser.add_argument("--stacks-file", type=Path)
    parser.add_argument("--save-dir", type=Path, help="write the two fine-tunes here")
    parser.add_argument("--stacks", type=int, default=8, help="3D stacks sectioned")
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--pairs", nargs="+", default=["0,0", "0.75,0", "0,1", "0.75,0.25"])
    parser.add_argument("--cho", action="store_true", help="also the real CHO stack")
    parser.add_argument("--draws", type=int, default=0, help="the one-draw tests over N draws")
    args = parser.parse_args()
    recipe = _recipe()
    steps = args.steps or recipe.STAGE2_STEPS
    parts = {}
    for name, file, stacks in (
        ("modes", args.modes_file, 0),
        ("stacks", args.stacks_file, args.stacks),
    ):
        if file is not None:
            parts[name] = load_model(file)
            continue
        t0 = time.perf_counter()
        parts[name] = fine_tune(recipe, stacks, steps)
        print(f"{name}: {steps} steps in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if args.save_dir is not None:
            args.save_dir.mkdir(parents=True, exist_ok=True)
            save_model(parts[name], args.save_dir / f"stage2_{name}.safetensors")
    start = load_model(BUNDLED).state_dict()
    modes, stacks = (parts[k].state_dict() for k in ("modes", "stacks"))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads; start {BUNDLED}")
    print(f"learning rate {recipe.STAGE2_LEARNING_RATE}, {steps} steps, {args.stacks} stacks\n")
    head = (
        "| a (modes) | b (stacks) | synthetic AP@0.5 / 0.75 | sample AP@0.5 | 7 cells: "
        "train_model / CLI | 3D toy: linked / views found of 4 | defocus views | defocus "
        "linked | HeLa t0 AP@0.5 / 0.75 / fragm. | HeLa t19"
    )
    cols = 10 + (2 if args.cho else 0)
    print(head + (" | CHO views | CHO linked |" if args.cho else " |"))
    print("|" + "---|" * cols)
    draws = []
    seeds = list(range(max(1, args.draws)))  # the tests' own draw is seed 0
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            a, b = (float(v) for v in pair.split(","))
            model = combined(start, modes, stacks, a, b)
            path = save_model(model, Path(tmp) / "candidate.safetensors")
            synthetic = recipe.evaluate(model, 0)
            sample, sparse, cli = seven_cell_deltas(path, seeds)
            toys = [toy_3d(model, seed) for seed in seeds]
            row = (
                f"| {a} | {b} | {synthetic['ap50']:.3f} / {synthetic['ap75']:.3f} "
                f"| {sample:.4f} | {sparse[0]:+.4f} / {cli[0]:+.4f} "
                f"| {toys[0]['linked'].tp} / {toys[0]['views'].tp} "
                f"| {defocus_3d(model)} | {hela(model)} |"
            )
            print(row + (f" {cho(model)} |" if args.cho else ""), flush=True)
            if args.draws:
                draws.append(f"| {a} | {b} | {draws_row(model, path, sparse, cli, toys)} |")
    if draws:
        print(
            f"\n| a | b | draws passed of {args.draws}: 7 cells train_model | 7 cells CLI "
            "| 3D toy | rods calibration | calibration windows |\n|---|---|---|---|---|---|---|"
        )
        print("\n".join(draws))


if __name__ == "__main__":
    main()
