"""Measure what the synthetic nuclei look like: the properties generator version 2 models.

Run:  .venv/bin/python benchmarks/bench_synthetic.py [--images 6]

For each property of real fluorescence nuclei that the generator should cover, one
number measured on generated images (the generator's defaults, 384 x 384, nuclei
12-30 px, seeds 0..images-1 of stream 77):

- edge position: per isolated nucleus, the area above half-way between its
  surroundings and its interior (holes filled), over its label's area. 1.0 means the
  label's edge lies at the half-maximum of the blurred intensity edge, where a
  biologist draws it; below 1 the labels are drawn too large;
- shape: solidity (area over convex hull area) of the nuclei of 300 px or more
  (smaller ones are too coarse in pixels), 5th percentile and the fraction below
  0.95 (lobed, non-convex nuclei);
- brightness: per touching pair, the ratio of the dimmer nucleus's signal to the
  brighter one's (5th percentile and median; small means dim next to bright);
- overlap: the largest fraction of a nucleus hidden under another;
- debris: bright connected blobs (above 30% of the typical nucleus after a 1 px
  Gaussian) farther than 6 px from any nucleus, per 100 x 100 px;
- haze: the background's median 6 px from a nucleus over its median 30+ px away;
- time to draw one image.

Run it on two versions of the code (e.g. a git worktree at an older commit) to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

from napari_unet.synthetic import GENERATOR_VERSION, SyntheticConfig


def edge_ratios(image: np.ndarray, labels: np.ndarray) -> list[float]:
    img = image.astype(np.float64)
    out = []
    for r in regionprops(labels):
        if r.area < 50:
            continue
        sl = tuple(slice(max(s.start - 9, 0), s.stop + 9) for s in r.slice)
        lab = labels[sl]
        mine = lab == r.label
        near = ndi.binary_dilation(mine, iterations=8)
        if np.any(near & (lab > 0) & ~mine):
            continue
        ring = near & ~ndi.binary_dilation(mine, iterations=4)
        inner = ndi.binary_erosion(mine, iterations=2)
        if inner.sum() < 10 or ring.sum() < 10:
            continue
        background, top = np.median(img[sl][ring]), np.median(img[sl][inner])
        if top - background < 10:
            continue
        pieces, _ = ndi.label(
            (img[sl] >= (background + top) / 2) & ndi.binary_dilation(mine, iterations=4)
        )
        ids = np.unique(pieces[inner])
        out.append(ndi.binary_fill_holes(np.isin(pieces, ids[ids > 0])).sum() / r.area)
    return out


def pair_ratios(image: np.ndarray, labels: np.ndarray) -> list[float]:
    n = int(labels.max())
    signal = np.asarray(ndi.median(image.astype(float), labels, np.arange(1, n + 1)))
    signal = signal - np.median(image[labels == 0])
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[m].tolist(), b[m].tolist())}
    out = []
    for i, j in pairs:
        lo, hi = sorted((signal[i - 1], signal[j - 1]))
        if hi > 0:
            out.append(max(lo, 0.0) / hi)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    config = SyntheticConfig(shape=(384, 384), diameter=(12.0, 30.0))
    edges, solidity, pairs, debris, haze, times = [], [], [], [], [], []
    for s in range(args.images):
        start = time.perf_counter()
        image, labels = config.generate(seed=[77, s])
        times.append(time.perf_counter() - start)
        edges += edge_ratios(image, labels)
        solidity += [r.solidity for r in regionprops(labels) if r.area >= 300]
        pairs += pair_ratios(image, labels)
        img = image.astype(float)
        far = ~ndi.binary_dilation(labels > 0, iterations=30)
        away = ~ndi.binary_dilation(labels > 0, iterations=6)
        near = ndi.binary_dilation(labels > 0, iterations=6) & ~ndi.binary_dilation(
            labels > 0, iterations=5
        )
        base = np.median(img[away])
        level = np.median(img[labels > 0]) - base
        smooth = ndi.gaussian_filter(img, 1.0)  # camera noise alone makes no blob
        blobs = ndi.label((smooth - base > 0.3 * level) & away)[1]
        debris.append(blobs / (away.sum() / 1e4))
        if far.sum() > 100:
            haze.append((np.median(img[near]) - 0) / max(np.median(img[far]), 1e-9))
    edges, solidity = np.array(edges), np.array(solidity)
    print(f"generator version {GENERATOR_VERSION}, {args.images} images, defaults, 384 x 384\n")
    print("| property | measure | value |")
    print("|---|---|---|")
    print(
        f"| edge position | median half-maximum area / label area | {np.median(edges):.3f} "
        f"(10-90%: {np.quantile(edges, 0.1):.3f}-{np.quantile(edges, 0.9):.3f}, n {edges.size}) |"
    )
    print(
        f"| shape | solidity 5th percentile; fraction < 0.95 | {np.quantile(solidity, 0.05):.3f}; "
        f"{np.mean(solidity < 0.95):.3f} |"
    )
    if pairs:
        print(
            f"| dim next to bright | touching pairs' signal ratio, 5th pct / median | "
            f"{np.quantile(pairs, 0.05):.3f} / {np.median(pairs):.3f} (n {len(pairs)}) |"
        )
    print(f"| debris | bright blobs away from nuclei per 100x100 px | {np.median(debris):.2f} |")
    if haze:
        print(f"| haze | background 6 px from nuclei / 30+ px away | {np.median(haze):.3f} |")
    print(f"| time | seconds per image | {np.median(times):.3f} |")


if __name__ == "__main__":
    main()
