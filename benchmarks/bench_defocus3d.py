"""3D modes under out-of-focus light: fixed vs size-scaled instance rule, synthetic and real.

The bundled model through :func:`napari_unet.segment.segment` in the three stack
modes, with the watershed's ``h``/``smoothing`` either fixed at the old 3D defaults
(linked and planes 0.5/1.5 px, views 0.5/0 px; given as caller options) or left to
the defaults that scale with the object size (``resolve_postprocess(diameter=)``),
on the same stacks in the same run:

- synthetic 3D nuclei of about 11 px with isotropic blur, strong noise and a
  widefield defocus cone (``napari_unet.synthetic.DEFOCUS_3D``, drawn by
  :func:`napari_unet.synthetic.make_nuclei_3d` with ``defocus``): the light of the
  nuclei above and below shows in every plane;
- the real CHO stack of ``../shared/data/real`` (voxel ``(5, 1, 1)``, as
  ``bench_real.py``); measured, never trained on.

    python benchmarks/bench_defocus3d.py [--stacks N] [--no-cho] [--data DIR]

Prints markdown: pooled 3D AP@0.5 and objects per mode and rule. The synthetic
stacks get the diameter 11 px (their size estimate on such noise is off: 6-7 px,
which would enlarge them 1.7-1.9x at four times the cost); CHO gets its estimate.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import tifffile

from napari_unet import load_bundled_model
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.segment import segment
from napari_unet.synthetic import DEFOCUS_3D, make_nuclei_3d

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"  # as bench_real.py: beside the clone
CHO_VOXEL = (5.0, 1.0, 1.0)
FIXED = {"views": {"h": 0.5, "smoothing": 0.0}}
MODES = ("views", "linked", "planes")


def fixed_rule(mode: str) -> dict:
    """The rule before the size scaled it in 3D (planes had it already)."""
    return FIXED.get(mode, {"h": 0.5, "smoothing": 1.5})


def run(model, pairs, **kw) -> str:
    rows = []
    for mode in MODES:
        for rule in ("fixed", "scaled"):
            t0 = time.perf_counter()
            found, n_pred = [], 0
            for image, truth in pairs:
                extra = fixed_rule(mode) if rule == "fixed" else {}
                labels = segment(model, image, stack=mode, precision="fp32", **kw, **extra).labels
                found.append(match_instances(truth, labels))
                n_pred += int(labels.max())
            n_true = sum(m.n_true for m in found)
            rows.append(
                f"| {mode} | {rule} | {pooled_ap(found, 0.5):.3f} | {pooled_ap(found, 0.75):.3f} "
                f"| {n_pred}/{n_true} | {time.perf_counter() - t0:.0f} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=2, help="synthetic stacks (seeds)")
    parser.add_argument("--no-cho", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA, help="the real set's folder")
    args = parser.parse_args()
    model = load_bundled_model()
    print(f"machine: {platform.processor() or platform.machine()}")
    head = "| mode | rule | AP@0.5 | AP@0.75 | objects/true | s |\n|---|---|---|---|---|---|"
    pairs = [
        make_nuclei_3d((32, 96, 96), seed=[25, 3, k], **DEFOCUS_3D) for k in range(args.stacks)
    ]
    if pairs:
        print(f"\nsynthetic defocus, {args.stacks} stacks 32x96x96\n\n{head}")
        print(run(model, pairs, diameter=11.0), flush=True)
    if args.no_cho:
        return
    if not args.data.is_dir():
        raise SystemExit(f"The real set is not at {args.data}: give --data DIR.")
    cho = (
        tifffile.imread(args.data / "cho_t0_zyx.tif"),
        tifffile.imread(args.data / "cho_t0_zyx_labels.tif"),
    )
    print(f"\nCHO (real), voxel {CHO_VOXEL}\n\n{head}")
    print(run(model, [cho], voxel_size=CHO_VOXEL))


if __name__ == "__main__":
    main()
