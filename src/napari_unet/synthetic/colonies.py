"""Shapes the bundled model has never seen: rods, lobed nuclei and spreading cells.

For tests and benchmarks of the instance step only (the bundled model is not
trained on them). Each scene packs objects that touch, so that a rule which cuts
elongated or irregular objects (the distance-transform watershed) and one that
merges touching ones (connected components) both show their faults:

- ``"rods"``: bacteria-like capsules in micro-colonies, end to end in chains and
  side by side in rows, some bent, some with the waist of a dividing cell;
- ``"lobed"``: nuclei of two to four overlapping lobes, touching each other;
- ``"spreading"``: flat cells with irregular outlines and protrusions;
- ``"round"``: touching round nuclei, the case the watershed is right for.

Images are fluorescence-like (uneven brightness, blur, background, shot and
read noise), ``uint16``; labels are exact, ``int32``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError

__all__ = ["SCENES", "make_scene"]

#: The scenes :func:`make_scene` draws.
SCENES = ("rods", "lobed", "spreading", "round")


def make_scene(
    kind: str, shape: tuple[int, int] = (256, 256), *, seed: int = 0, photons: float = 300.0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image of touching objects of one kind, and its exact labels.

    Parameters
    ----------
    kind : {"rods", "lobed", "spreading", "round"}
        See :data:`SCENES` and the module's description.
    shape : tuple of int
        ``(H, W)``, each at least 64.
    seed : int
        The same seed gives the same arrays.
    photons : float
        Photons at the brightest object pixel; fewer is noisier.

    Returns
    -------
    image : numpy.ndarray
        ``uint16`` ``(H, W)``.
    labels : numpy.ndarray
        ``int32`` ``(H, W)``, 0 background, ids 1..n.
    """
    if kind not in SCENES:
        raise NapariUnetError(f"Unknown scene {kind!r}; use one of {', '.join(SCENES)}.")
    h, w = (int(s) for s in shape)
    if min(h, w) < 64:
        raise NapariUnetError(f"A scene needs at least 64x64 pixels, got {h}x{w}.")
    if not photons > 0:
        raise NapariUnetError(f"photons must be positive, got {photons}.")
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.int32)
    if kind == "rods":
        _rod_colonies(rng, labels)
    else:
        _clumps(rng, labels, kind)
    return _image(rng, labels, photons), _consecutive(labels)


def _paint(labels: np.ndarray, mask: np.ndarray, y0: int, x0: int, free: float = 0.9) -> bool:
    """Paint ``mask`` at ``(y0, x0)`` where the labels are free, if enough of it is."""
    h, w = labels.shape
    mh, mw = mask.shape
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(mh, h - y0), min(mw, w - x0)
    if ye - ys < mh // 2 or xe - xs < mw // 2:
        return False  # mostly outside the image
    part = mask[ys:ye, xs:xe]
    window = labels[y0 + ys : y0 + ye, x0 + xs : x0 + xe]
    size = int(part.sum())
    if size == 0 or int((part & (window == 0)).sum()) < free * size:
        return False
    window[part & (window == 0)] = int(labels.max()) + 1
    return True


def _rod_mask(rng: np.random.Generator, length: float, radius: float, angle: float):
    """A capsule along a gently bent axis, some with a dividing cell's waist."""
    bend = rng.uniform(-0.08, 0.08) * length
    waist = rng.uniform(0.2, 0.35) if rng.random() < 0.4 else 0.0
    s = np.linspace(-length / 2, length / 2, max(int(length * 2), 8))
    u = np.array([math.sin(angle), math.cos(angle)])
    n = np.array([math.cos(angle), -math.sin(angle)])
    pts = s[:, None] * u + (bend * ((2 * s / length) ** 2 - 1 / 3))[:, None] * n
    r = radius * (1 - waist * np.exp(-((s / (0.12 * length)) ** 2)))
    half = int(math.ceil(length / 2 + radius + abs(bend))) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    mask = np.zeros(yy.shape, bool)
    for (py, px), rr in zip(pts, r):
        mask |= (yy - py) ** 2 + (xx - px) ** 2 <= rr * rr
    return mask, half


def _rod_colonies(rng: np.random.Generator, labels: np.ndarray) -> None:
    """Micro-colonies: rows of rods side by side, each row a chain of rods end to end."""
    h, w = labels.shape
    for _ in range(max(2, h * w // 2500)):
        angle = rng.uniform(0, math.pi)
        radius = rng.uniform(3.5, 5.0)
        length = rng.uniform(22, 36)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        u = np.array([math.sin(angle), math.cos(angle)])
        n = np.array([math.cos(angle), -math.sin(angle)])
        for row in range(int(rng.integers(1, 5))):  # side by side
            for k in range(int(rng.integers(2, 5))):  # end to end, a pixel or two apart
                step = k * (length + 2 * radius + rng.uniform(0.5, 2.0))
                off = row * (2 * radius + rng.uniform(0.5, 1.5))
                py, px = np.array([cy, cx]) + step * u + off * n
                mask, half = _rod_mask(
                    rng, length * rng.uniform(0.85, 1.15), radius, angle + rng.normal(0, 0.06)
                )
                _paint(labels, mask, int(py) - half, int(px) - half)


def _blob_mask(rng: np.random.Generator, kind: str, size: float) -> np.ndarray:
    """One lobed nucleus, spreading cell or round nucleus of about ``size`` px across."""
    half = int(size) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    if kind == "lobed":  # two to four overlapping lobes around the centre
        k = int(rng.integers(2, 5))
        mask = np.zeros(yy.shape, bool)
        phase = rng.uniform(0, 2 * math.pi)
        for i in range(k):
            a = phase + 2 * math.pi * i / k + rng.normal(0, 0.3)
            d, r = size * rng.uniform(0.16, 0.22), size * rng.uniform(0.3, 0.36)
            mask |= (yy - d * math.sin(a)) ** 2 + (xx - d * math.cos(a)) ** 2 <= r * r
        return mask
    theta = np.arctan2(yy, xx)
    radius = np.hypot(yy, xx)
    r0 = size / 2 * (0.75 if kind == "spreading" else 0.95)
    outline = np.ones_like(theta)
    if kind == "spreading":  # protrusions: a few strong low harmonics
        for harmonic in range(2, 7):
            amp = rng.uniform(0.05, 0.22) / math.sqrt(harmonic - 1)
            outline += amp * np.cos(harmonic * theta + rng.uniform(0, 2 * math.pi))
    else:
        outline += 0.06 * np.cos(2 * theta + rng.uniform(0, 2 * math.pi))
    return radius <= r0 * outline


def _clumps(rng: np.random.Generator, labels: np.ndarray, kind: str) -> None:
    """Objects placed in clumps: each new one next to an earlier one, touching it."""
    h, w = labels.shape
    lo, hi = {"lobed": (22, 32), "spreading": (26, 40), "round": (14, 24)}[kind]
    target = int(0.4 * h * w / (math.pi * ((lo + hi) / 4) ** 2))
    centres: list[tuple[float, float, float]] = []
    for _ in range(target * 8):
        if int(labels.max()) >= target:
            break
        size = rng.uniform(lo, hi)
        if centres and rng.random() < 0.7:  # next to an earlier object
            py, px, ps = centres[int(rng.integers(len(centres)))]
            a = rng.uniform(0, 2 * math.pi)
            d = (ps + size) / 2 * rng.uniform(0.8, 0.95)
            cy, cx = py + d * math.sin(a), px + d * math.cos(a)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        mask = _blob_mask(rng, kind, size)
        half = mask.shape[0] // 2
        if _paint(labels, mask, int(cy) - half, int(cx) - half, free=0.85):
            centres.append((cy, cx, size))


def _image(rng: np.random.Generator, labels: np.ndarray, photons: float) -> np.ndarray:
    """Fluorescence-like imaging: per-object brightness, a brighter interior, blur, noise."""
    n = int(labels.max())
    bright = np.concatenate([[0.0], rng.uniform(0.45, 1.0, n)])
    inner = ndi.distance_transform_edt(labels > 0)
    signal = bright[labels] * (0.7 + 0.3 * np.minimum(inner / 4.0, 1.0))
    # a dim line where objects touch, as a membrane or a cell wall shows
    edge = (ndi.maximum_filter(labels, 3) != ndi.minimum_filter(labels, 3)) & (labels > 0)
    signal = np.where(edge, signal * 0.75, signal)
    signal = ndi.gaussian_filter(signal, rng.uniform(0.8, 1.3)) + 0.06
    counts = rng.poisson(signal * photons).astype(np.float64)
    counts += rng.normal(0, 2.0, counts.shape) + 100.0  # read noise and offset
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    lut = np.zeros(int(ids[-1]) + 1, np.int32)
    lut[ids] = np.arange(len(ids), dtype=np.int32)
    return lut[labels]
