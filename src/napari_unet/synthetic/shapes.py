"""The cells' shapes and where they sit: irregular outlines, crowded or apart, exact labels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from scipy import special

if TYPE_CHECKING:
    from .scene_settings import SceneSettings

__all__ = ["Cell", "finish_labels", "place_cells"]

# Boundary harmonics k = 2..9 make ellipses irregular (kidney, pear, wavy shapes);
# each outline is tabulated at this many angles, which is faster than summing per pixel.
_HARMONICS = np.arange(2, 10, dtype=np.float32)


_ANGLES = 512


_THETA = np.linspace(-np.pi, np.pi, _ANGLES + 1, dtype=np.float32)


_COS = np.cos(_THETA[:, None] * _HARMONICS[None, :])


_SIN = np.sin(_THETA[:, None] * _HARMONICS[None, :])


# Gap in pixels kept around cells placed apart from the others.
_GAP = 2.0


# Fraction of the image area cells cover when ``n_cells`` is not given.
_DEFAULT_COVERAGE = (0.15, 0.45)


class Cell:
    """One drawn object: its outline parameters and where it sits."""

    __slots__ = (
        "cy",
        "cx",
        "a",
        "b",
        "angle",
        "reach",
        "inner",
        "table",
        "radius",
        "kind",
        "sl",
        "rho",
        "area",
        "full_area",
    )

    def __init__(
        self, a: float, b: float, angle: float, amp: np.ndarray, phase: np.ndarray, kind: str
    ) -> None:
        self.a, self.b, self.angle, self.kind = a, b, angle, kind
        self.radius = math.sqrt(a * b)  # equivalent radius: same area
        # radius of a circle that surely holds the cell
        self.reach = max(a, b) * (1.0 + float(np.abs(amp).sum()))
        # 1 + sum_k amp_k cos(k theta + phase_k), at the tabulated angles
        self.table = 1.0 + _COS @ (amp * np.cos(phase)) - _SIN @ (amp * np.sin(phase))
        # the smallest radius: ``rho < 1 + gap / inner`` holds a margin of at least ``gap``
        self.inner = min(a, b) * float(self.table.min())
        self.cy = self.cx = 0.0
        self.sl: tuple[slice, slice] = (slice(0), slice(0))
        self.rho = np.empty((0, 0), np.float32)
        self.area = self.full_area = 0

    def outline(
        self, cy: float, cx: float, shape: tuple[int, int], pad: float = 0.0
    ) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """Bounding box in the image and the normalised radius ``rho`` on it.

        ``rho < 1`` inside the cell; ``rho`` grows like distance over radius
        outside, which also gives cheap dilations (``rho < 1 + gap / inner``).
        """
        reach = self.reach + pad + 1.0
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, shape[0])
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            return None
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (xx * c + yy * s) / self.a
        v = (yy * c - xx * s) / self.b
        step = np.float32(_ANGLES / (2 * np.pi))
        index = ((np.arctan2(v, u) + np.float32(np.pi)) * step + 0.5).astype(np.intp)
        return (slice(y0, y1), slice(x0, x1)), np.hypot(u, v) / self.table[index]


def _draw_cell(
    rng: np.random.Generator, diameter: float, kind: str, irregular: float, lobed: float
) -> Cell:
    if kind == "dividing":
        aspect = rng.uniform(1.3, 2.2)  # metaphase plates and condensed chromatin are elongated
    else:
        aspect = min(math.exp(abs(rng.normal(0.0, 0.22))), 2.2)
    amp = rng.normal(0.0, 1.0, _HARMONICS.size) * irregular / _HARMONICS**1.3
    cap = 0.35  # keeps the radius positive: the cell stays one star-shaped piece
    if kind != "dividing" and rng.random() < lobed:
        # lobed nuclei: a strong 2nd harmonic (peanut, bilobed) or 3rd (trilobed)
        # indents the outline (concave above 0.2 and 0.1), solidity about 0.85-0.94
        k = int(rng.integers(0, 2))
        amp[k] = rng.choice((-1, 1)) * (
            rng.uniform(0.25, 0.35) if k == 0 else rng.uniform(0.12, 0.22)
        )
        cap = 0.5
    elif rng.random() < 0.1:  # kidney, bean and pear shapes
        amp[rng.integers(0, 2)] += rng.choice((-1, 1)) * rng.uniform(0.08, 0.15)
    total = np.abs(amp).sum()
    if total > cap:
        amp *= cap / total
    phase = rng.uniform(0.0, 2 * np.pi, _HARMONICS.size)
    # the wobble grows the area by mean((1 + sum a cos)^2) = 1 + sum(a^2)/2; undo it
    scale = 0.5 * diameter / math.sqrt(1.0 + 0.5 * float((amp**2).sum()))
    a, b = scale * math.sqrt(aspect), scale / math.sqrt(aspect)
    return Cell(a, b, rng.uniform(0, np.pi), amp.astype(np.float32), phase.astype(np.float32), kind)


def _draw_diameters(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """A typical size for this image inside the range, and cells spread around it."""
    span = math.log(hi / lo)
    typical = math.log(lo) + span * rng.uniform(0.25, 0.75)
    spread = max(0.1, 0.25 * span)
    # log-normal truncated to the range, drawn by inverting its distribution function
    low = special.ndtr((math.log(lo) - typical) / spread)
    high = special.ndtr((math.log(hi) - typical) / spread)
    z = special.ndtri(rng.uniform(low, high, n))
    return np.clip(np.exp(typical + spread * z), lo, hi)


def place_cells(config: SceneSettings, rng: np.random.Generator) -> tuple[np.ndarray, list[Cell]]:
    """Place cells one by one, touching or apart, and paint their labels."""
    h, w = config.shape
    lo, hi = config.diameter
    irregular = 0.12 if config.style == "fluorescence" else 0.22
    lobed = config.lobed if config.style == "fluorescence" else 0.0
    if config.n_cells is None:
        mean_area = math.pi / 4 * lo * hi
        # cells kept apart cannot pack as densely as touching ones
        coverage = rng.uniform(*_DEFAULT_COVERAGE) * (0.6 + 0.4 * config.touching)
        n = max(1, int(round(coverage * h * w / mean_area)))
    else:
        n = config.n_cells
    diameters = _draw_diameters(rng, lo, hi, n)
    n_dividing = int(rng.binomial(n, config.dividing)) if n else 0
    # dividing cells are condensed: as small as the range allows
    diameters[:n_dividing] = np.minimum(lo * rng.uniform(1.0, 1.25, n_dividing), hi)
    kinds = ["dividing"] * n_dividing + ["cell"] * (n - n_dividing)
    # about half of the dividing cells come as two daughters, placed one after the other
    follower: dict[int, int] = {}
    for first in range(0, n_dividing - 1, 2):
        if rng.random() < 0.5:
            follower[first] = first + 1
    queue: list[tuple[int, Cell | None]] = [
        (int(i), None) for i in rng.permutation(n) if int(i) not in follower.values()
    ]

    labels = np.zeros((h, w), np.int32)
    centers = np.empty((n, 2))
    radii = np.empty(n)
    cells: list[Cell] = []
    while queue:
        i, partner = queue.pop(0)
        cell = _draw_cell(rng, diameters[i], kinds[i], irregular, lobed)
        if partner is not None:
            cell.angle = partner.angle
        placed = False
        for attempt in range(120):
            # where free room has run out, a cell may still fit against others
            touching = config.touching if attempt < 60 or not config.touching else 1.0
            cy, cx, mode = _propose(rng, cell, partner, cells, touching, config.overlap, h, w)
            if not (0 <= cy < h and 0 <= cx < w):
                continue
            k = len(cells)
            if k:  # cheap rejection before drawing the outline
                dist = np.hypot(centers[:k, 0] - cy, centers[:k, 1] - cx)
                need = min(0.75, 0.9 - config.overlap) if mode == "touch" else 1.0
                if np.any(dist < need * (radii[:k] + cell.radius)):
                    continue
            if _try_paint(rng, cell, cy, cx, mode, config.overlap, labels, cells):
                centers[k] = cy, cx
                radii[k] = cell.radius
                cells.append(cell)
                placed = True
                break
        if i in follower:  # the second daughter sits next to the first, or anywhere
            queue.insert(0, (follower[i], cell if placed else None))
    return labels, cells


def _propose(
    rng: np.random.Generator,
    cell: Cell,
    partner: Cell | None,
    cells: list[Cell],
    touching: float,
    overlap: float,
    h: int,
    w: int,
) -> tuple[float, float, str]:
    if partner is not None:
        # daughters separate across their condensed chromatin (along its short axis)
        direction = partner.angle + np.pi / 2 + rng.normal(0.0, 0.3) + np.pi * rng.integers(0, 2)
        dist = (partner.radius + cell.radius) * rng.uniform(1.2, 1.8)
        return (
            partner.cy + dist * math.sin(direction),
            partner.cx + dist * math.cos(direction),
            "apart",
        )
    if cells and rng.random() < touching:
        other = cells[int(rng.integers(0, len(cells)))]
        direction = rng.uniform(0.0, 2 * np.pi)
        # closer than touching: the cells overlap (more when ``overlap`` allows more)
        dist = (other.radius + cell.radius) * rng.uniform(min(0.8, 0.95 - overlap), 1.0)
        return other.cy + dist * math.sin(direction), other.cx + dist * math.cos(direction), "touch"
    return rng.uniform(0, h), rng.uniform(0, w), "apart"


def _try_paint(
    rng: np.random.Generator,
    cell: Cell,
    cy: float,
    cx: float,
    mode: str,
    overlap: float,
    labels: np.ndarray,
    cells: list[Cell],
) -> bool:
    """Paint ``cell`` if it fits: apart keeps a gap; touching hides <= ``overlap`` of others."""
    found = cell.outline(cy, cx, labels.shape, pad=_GAP)
    if found is None:
        return False
    sl, rho = found
    window = labels[sl]
    inside = rho < 1.0
    area = int(inside.sum())
    if area < 0.25 * math.pi * cell.radius**2:
        return False  # mostly outside the image
    new_id = len(cells) + 1
    if mode == "apart":
        if window[rho < 1.0 + _GAP / cell.inner].any():
            return False
        window[inside] = new_id
    else:
        under = window[inside]
        hits = np.bincount(under, minlength=new_id)
        if hits[1:].sum() == 0:
            return False  # no contact: a "touching" cell must touch
        # front or behind: whichever it is, the hidden cell loses a little area
        if rng.random() < 0.5:
            for j in np.flatnonzero(hits[1:]) + 1:
                other = cells[j - 1]
                if other.area - hits[j] < (1.0 - overlap) * other.full_area:
                    return False
            for j in np.flatnonzero(hits[1:]) + 1:
                cells[j - 1].area -= int(hits[j])
            window[inside] = new_id
        else:
            if hits[1:].sum() > overlap * area:
                return False
            window[inside & (window == 0)] = new_id
            area -= int(hits[1:].sum())
    cell.cy, cell.cx, cell.sl, cell.rho = cy, cx, sl, rho
    cell.area = area
    cell.full_area = int(inside.sum())
    return True


def finish_labels(labels: np.ndarray, cells: list[Cell]) -> tuple[np.ndarray, list[Cell]]:
    """Keep each cell's largest 4-connected piece and renumber ids to 1..n."""
    kept: list[Cell] = []
    lut = np.zeros(len(cells) + 1, np.int32)
    for old, cell in enumerate(cells, start=1):
        window = labels[cell.sl]
        mine = window == old
        pieces, count = ndi.label(mine)
        if count > 1:  # a cell in front cut this one in two: drop the smaller pieces
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            window[mine & (pieces != sizes.argmax())] = 0
        if count:
            kept.append(cell)
            lut[old] = len(kept)
    return lut[labels], kept
