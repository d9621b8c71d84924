"""Any model on the real micrographs: agreement with their reference labels, and the errors.

The real set (``../shared/data/real``, see its README; measure with it, never train the
bundled model on it): two frames of widefield HeLa nuclei (uint16 with a large offset) and
one small 3D CHO stack. Each 2D frame is segmented with :func:`napari_unet.segment.segment`
as the CLI and the Predict dock run it (the model's recommended post-processing, the object
size estimate), and scored against its labels:

- AP at IoU 0.5, 0.75 and 0.9 (``TP / (TP + FP + FN)``) and mean AP over 0.5:0.95;
- false objects (predictions without a partner at IoU 0.5) split into *pieces* (at least
  half of the object lies inside one labelled nucleus that is cut: "piece of a labelled
  nucleus") and *nothing* (everything else: specks, debris, unlabelled dim nuclei);
- fragmented nuclei: labelled nuclei with two or more predicted objects that each lie at
  least half inside them;
- the median area ratio (predicted over true) of the matched pairs.

The CHO stack is segmented in the three stack modes with its voxel size read as (Z 1:
about 5x the pixel; the README says only "much coarser") and scored in 3D.

    python benchmarks/bench_real.py [--model FILE.safetensors ...] [--data DIR] [--no-3d]

Prints markdown. About a minute on dev-2c.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_unet import load_bundled_model, load_model
from napari_unet.metrics import error_breakdown, match_instances, pooled_ap
from napari_unet.segment import segment

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
FRAMES = ("hela_t0", "hela_t19")
# The CHO stack's Z step relative to its pixel (the data's README says "much coarser").
CHO_VOXEL = (5.0, 1.0, 1.0)
THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def score(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """AP at 0.5/0.75/0.9, mean AP 0.5:0.95, counts, area ratio and the error breakdown."""
    m = match_instances(true, pred)
    out = {f"ap{int(t * 100)}": pooled_ap([m], t) for t in (0.5, 0.75, 0.9)}
    out["map"] = float(np.mean([pooled_ap([m], t) for t in THRESHOLDS]))
    out["n_true"], out["n_pred"] = m.n_true, m.n_pred
    out["area_ratio"] = float(np.median(m.area_ratio)) if len(m.area_ratio) else float("nan")
    out.update(error_breakdown(true, pred))
    return out


def _row(name: str, s: dict, seconds: float) -> str:
    return (
        f"| {name} | {s['ap50']:.3f} | {s['ap75']:.3f} | {s['ap90']:.3f} | {s['map']:.3f} "
        f"| {s['n_pred']}/{s['n_true']} | {s['false_pieces']} | {s['false_nothing']} "
        f"| {s['fragmented']} | {s['area_ratio']:.3f} | {seconds:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="a model file (default: the bundled model); repeat it to compare models in one run",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the real set's folder")
    parser.add_argument("--no-3d", action="store_true", help="skip the CHO stack")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"The real set is not at {args.data}: give --data DIR.")
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}")
    for path in args.model or [None]:
        model = load_model(path) if path else load_bundled_model()
        print()
        print(f"model: {path or 'bundled'}")
        print()
        _report(model, args.data, args.no_3d)


def _report(model, data: Path, no_3d: bool) -> None:
    """One model's table: the HeLa frames, then (unless ``no_3d``) the CHO stack's modes."""
    print(
        "| image | AP@0.5 | AP@0.75 | AP@0.9 | mean AP | objects/labelled | false: pieces "
        "| false: nothing | fragmented nuclei | area ratio | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in FRAMES:
        image = tifffile.imread(data / f"{name}.tif")
        true = tifffile.imread(data / f"{name}_labels.tif")
        t0 = time.perf_counter()
        labels = segment(model, image).labels
        print(_row(name, score(true, labels), time.perf_counter() - t0))
    if no_3d:
        return
    stack = tifffile.imread(data / "cho_t0_zyx.tif")
    true3 = tifffile.imread(data / "cho_t0_zyx_labels.tif")
    for mode in ("planes", "linked", "views"):
        t0 = time.perf_counter()
        labels = segment(model, stack, stack=mode, voxel_size=CHO_VOXEL).labels
        print(_row(f"cho 3D, {mode}", score(true3, labels), time.perf_counter() - t0))


if __name__ == "__main__":
    main()
