"""Test-time augmentation: what the 8 symmetries cost and what they give, bundled model.

Held-out synthetic images (seeds whose first element no training recipe uses) in four
settings: typical 16-bit, crowded clusters of touching small nuclei, dim (4-25 photons),
and 8-bit with saturation. Each image is predicted by the bundled model with and without
test-time augmentation (``predict_tiled(..., tta=True)``), alternating from image to image
which of the two runs goes first, and labelled by ``labels_from_probabilities`` with its
defaults. Reported: median seconds per image and the median of the per-image time
ratio; AP at IoU 0.5 and 0.75 and mean IoU pooled over the images (TP / (TP + FP + FN)
over all objects, the counting of :func:`napari_unet.instance_scores`); the median area
ratio of matched objects (predicted over true: below 1 means masks too small); and, on
one image, the largest difference between TTA with one tile and with 128-pixel tiles
(exactness under tiling with the real model).

    python benchmarks/bench_tta.py [--per-setting 3] [--repeats 1] [--size 320]

Prints markdown. About 1-2 minutes on dev-2c; the machine is shared, so read the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from napari_unet import labels_from_probabilities, load_bundled_model, predict_tiled
from napari_unet.bundled import bundled_model_path
from napari_unet.metrics import iou_matrix
from napari_unet.synthetic import GENERATOR_VERSION, SyntheticConfig

# First seed element of the held-out images: the training recipe's images use the
# recipe's seed (0) first, so these never met the model.
HELD_OUT = 31_415
THRESHOLDS = (0.5, 0.75)


def settings(size: tuple[int, int]) -> dict[str, SyntheticConfig]:
    """The image settings, named; diameters in the bundled model's range (8-40 px)."""
    return {
        "typical 16-bit": SyntheticConfig(shape=size, diameter=(10.0, 30.0), dtype="uint16"),
        "crowded, touching": SyntheticConfig(
            shape=size, diameter=(8.0, 20.0), touching=0.9, blur=(0.8, 2.2), dtype="uint16"
        ),
        "dim (4-25 photons)": SyntheticConfig(
            shape=size, diameter=(10.0, 30.0), photons=(4.0, 25.0), dtype="uint16"
        ),
        "8-bit, saturating": SyntheticConfig(
            shape=size, diameter=(12.0, 36.0), photons=(200.0, 8000.0), dtype="uint8"
        ),
    }


def match(true: np.ndarray, pred: np.ndarray) -> dict:
    """Matched IoUs and area ratios, and the object counts."""
    iou = iou_matrix(true, pred)
    nt, npred = iou.shape
    ious = np.zeros(0)
    ratios = []
    if nt and npred:
        rows, cols = linear_sum_assignment(-iou)
        ious = iou[rows, cols]
        t_ids = np.unique(true)[1:] if true.max() else np.zeros(0, int)
        p_ids = np.unique(pred)[1:] if pred.max() else np.zeros(0, int)
        t_area = np.bincount(true.ravel())[t_ids]
        p_area = np.bincount(pred.ravel())[p_ids]
        good = ious > 0.5
        ratios = list(p_area[cols[good]] / t_area[rows[good]])
    per_true = np.zeros(nt)
    if nt and npred:
        per_true[rows] = ious
    return {"ious": ious, "per_true": per_true, "nt": nt, "np": npred, "ratios": ratios}


def pooled(matches: list[dict]) -> dict:
    """AP at each threshold (pooled counts), mean IoU over true objects, median area ratio."""
    nt = sum(m["nt"] for m in matches)
    npred = sum(m["np"] for m in matches)
    out = {}
    for t in THRESHOLDS:
        tp = sum(int((m["ious"] > t).sum()) for m in matches)
        out[t] = tp / max(nt + npred - tp, 1)
    out["miou"] = float(np.concatenate([m["per_true"] for m in matches]).mean())
    ratios = [r for m in matches for r in m["ratios"]]
    out["area"] = float(np.median(ratios)) if ratios else float("nan")
    out["nt"], out["np"] = nt, npred
    return out


def timed(model, image, tta: bool) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    prob = predict_tiled(model, image, tta=tta, device="cpu")
    return time.perf_counter() - t, prob


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-setting", type=int, default=3, help="images per setting")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per image and mode")
    ap.add_argument("--size", default="320", help="image side, or H,W (256-384 px)")
    args = ap.parse_args()
    size = tuple(int(s) for s in args.size.split(","))
    size = size * 2 if len(size) == 1 else size
    model = load_bundled_model(device="cpu")
    training = model.metadata.get("training", {})
    data = model.metadata.get("training_data", {})
    if training.get("seed") == HELD_OUT:
        raise SystemExit(f"The bundled model was trained with seed {HELD_OUT}; pick another.")
    digest = hashlib.sha256(bundled_model_path().read_bytes()).hexdigest()[:12]
    print(
        f"# Test-time augmentation, bundled model (width {model.base_channels}, depth "
        f"{model.depth}), {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, synthetic generator v{GENERATOR_VERSION}, "
        f"load average at start {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"Bundled weights sha256 {digest}...: {training.get('recipe')} seed "
        f"{training.get('seed')}, {training.get('steps')} steps, on generator "
        f"v{data.get('generator_version')} images.\n"
    )
    predict_tiled(model, np.zeros((64, 64), np.float32), tta=True)  # warm-up, both paths
    rows = []
    all_m = {False: [], True: []}
    times = {False: [], True: []}
    ratios = []
    t_start = time.perf_counter()
    for k, (name, cfg) in enumerate(settings(size).items()):
        per = {False: [], True: []}
        for j in range(args.per_setting):
            image, truth = cfg.generate(seed=[HELD_OUT, k, j])
            runs = {False: [], True: []}
            probs = {}
            for r in range(args.repeats):  # alternated: each mode goes first in turn
                first = (j + r) % 2 == 0
                for tta in (False, True) if first else (True, False):
                    s, probs[tta] = timed(model, image, tta)
                    runs[tta].append(s)
            for tta in (False, True):
                times[tta].append(statistics.median(runs[tta]))
                m = match(truth, labels_from_probabilities(probs[tta]))
                per[tta].append(m)
                all_m[tta].append(m)
            ratios.append(statistics.median(b / a for a, b in zip(runs[False], runs[True])))
        rows.append((name, pooled(per[False]), pooled(per[True])))
    rows.append(("**all**", pooled(all_m[False]), pooled(all_m[True])))

    n = len(times[False])
    print(
        f"{n} held-out images of {size[0]}x{size[1]} px ({args.per_setting} per setting, "
        f"seeds [{HELD_OUT}, setting, j]), {args.repeats} run(s) per image and mode, "
        "alternating which mode goes first.\n"
    )
    print("| images | objects (true) | TTA | AP@0.5 | AP@0.75 | mean IoU | area ratio | objects |")
    print("|---|---|---|---|---|---|---|---|")
    for name, off, on in rows:
        for label, s in (("off", off), ("**on**", on)):
            print(
                f"| {name} | {off['nt']} | {label} | {s[0.5]:.3f} | {s[0.75]:.3f} | "
                f"{s['miou']:.3f} | {s['area']:.3f} | {s['np']} |"
            )
    off, on = rows[-1][1], rows[-1][2]
    print(
        f"\nGain with TTA (all images): AP@0.5 {on[0.5] - off[0.5]:+.3f}, AP@0.75 "
        f"{on[0.75] - off[0.75]:+.3f}, mean IoU {on['miou'] - off['miou']:+.3f}.\n"
    )
    print("| prediction | median s/image | s/MP | vs off |")
    print("|---|---|---|---|")
    mp = size[0] * size[1] / 1e6
    med = {tta: statistics.median(times[tta]) for tta in (False, True)}
    ratio = statistics.median(ratios)
    print(f"| TTA off | {med[False]:.2f} | {med[False] / mp:.2f} | 1.00 |")
    print(f"| **TTA on** | {med[True]:.2f} | {med[True] / mp:.2f} | **{ratio:.2f}** |")
    # exactness under tiling with the real model: one tile against 128-pixel tiles
    image, _ = settings(size)["crowded, touching"].generate(seed=[HELD_OUT, 1, 0])
    one = predict_tiled(model, image, tta=True, device="cpu")
    tiled = predict_tiled(model, image, tta=True, tile_shape=128, batch_size=2, device="cpu")
    print(
        f"\nExactness: TTA with one tile vs 128-px tiles (batch 2), largest difference "
        f"{np.abs(one - tiled).max():.1e}.\n"
        f"Total {time.perf_counter() - t_start:.0f} s; load average at end "
        f"{os.getloadavg()[0]:.1f}."
    )


if __name__ == "__main__":
    main()
