"""Synthetic microscopy images with exact instance labels.

The generator draws crowded, touching cells of varied size, shape, texture and
brightness, then images them the way a microscope does: optical blur, uneven
illumination, background, photon shot noise, camera read noise, gain, offset,
integer output and saturation. Labels are the exact masks of the drawn objects,
so training, benchmarks and tests know the truth. Everything comes from one
seeded random generator: the same settings and seed give the same arrays.

Two imaging styles exist:

``"fluorescence"`` (the main one)
    DAPI/Hoechst-like nuclei: chromatin texture, dark nucleoli, bright
    chromocentres, a few small, very bright condensed dividing cells, some
    out-of-focus nuclei and a faint haze of out-of-focus light.
``"brightfield"``
    Phase-contrast/brightfield-like cells: a textured grey background with the
    cells seen through their optical thickness, with dark and bright halo edges.

The bundled model is trained only on this module's output; a training recipe
records :meth:`SyntheticConfig.to_dict` and the seeds, which is the whole
provenance of its data. Bump :data:`GENERATOR_VERSION` whenever a change alters
the arrays a given configuration and seed produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy import special

from .errors import NapariUnetError
from .seeding import random_generator

__all__ = ["GENERATOR_VERSION", "STYLES", "SyntheticConfig", "make_cells"]

#: Version of the drawing code; part of :meth:`SyntheticConfig.to_dict`.
GENERATOR_VERSION = 1

#: Imaging styles the generator knows.
STYLES = ("fluorescence", "brightfield")

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
# Boundary harmonics k = 2..9 make ellipses irregular (kidney, pear, wavy shapes);
# each outline is tabulated at this many angles, which is faster than summing per pixel.
_HARMONICS = np.arange(2, 10, dtype=np.float32)
_ANGLES = 512
_THETA = np.linspace(-np.pi, np.pi, _ANGLES + 1, dtype=np.float32)
_COS = np.cos(_THETA[:, None] * _HARMONICS[None, :])
_SIN = np.sin(_THETA[:, None] * _HARMONICS[None, :])
# Cells may hide at most this fraction of another cell's area: touching cells
# flatten against each other instead of stacking.
_MAX_OCCLUSION = 0.12
# Gap in pixels kept around cells placed apart from the others.
_GAP = 2.0
# Fraction of the image area cells cover when ``n_cells`` is not given.
_DEFAULT_COVERAGE = (0.15, 0.45)
_MAX_COVERAGE = 0.7


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic image generator.

    Every image draws its own imaging conditions (blur, brightness, noise,
    illumination, background) from the ranges given here, so a set of images
    made from one configuration covers the variety real data sets show.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image in pixels.
    n_cells : int or None
        Number of cells to draw. ``None`` picks a density: cells cover about
        10% to 45% of the image (less when they are kept apart). In very
        crowded requests a few cells may not find room and are left out.
    diameter : tuple of float
        ``(min, max)`` equivalent diameter of the cells in pixels (the diameter
        of the disc with the same area). Each image draws a typical size inside
        this range and spreads its cells around it.
    style : {"fluorescence", "brightfield"}
        Imaging style, see the module documentation.
    touching : float
        Probability, from 0 to 1, that a cell is placed against one already
        drawn, forming touching clusters. At 0 every cell keeps a gap of at
        least two pixels to the others.
    dividing : float
        Fraction of cells drawn as small, very bright condensed dividing cells
        (about half of them as pairs of daughters).
    out_of_focus : float
        Fraction of cells drawn out of focus (more blurred and dimmer).
    photons : tuple of float
        Range of the mean photon count per pixel of a typical cell (fluorescence);
        the brightfield background gets 100 times that, kept between 2000 and
        20000. Lower means noisier.
    blur : tuple of float
        Range of the standard deviation, in pixels, of the Gaussian point spread
        function.
    dtype : {"uint16", "uint8"}
        Integer type of the image, as a camera or an 8-bit export writes it.
    """

    shape: tuple[int, int] = (512, 512)
    n_cells: int | None = None
    diameter: tuple[float, float] = (12.0, 30.0)
    style: str = "fluorescence"
    touching: float = 0.5
    dividing: float = 0.03
    out_of_focus: float = 0.05
    photons: tuple[float, float] = (30.0, 3000.0)
    blur: tuple[float, float] = (0.6, 1.8)
    dtype: str = "uint16"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise types once, here
        shape = _int_pair(self.shape, "The image shape")
        if min(shape) < 16 or max(shape) > 16384:
            raise NapariUnetError(
                f"The image shape must be between 16 and 16384 pixels per side, got {shape}."
            )
        set_(self, "shape", shape)
        lo, hi = _float_range(self.diameter, "The cell diameter range")
        if lo < 4.0 or hi > min(shape) / 2:
            raise NapariUnetError(
                f"Cell diameters must be at least 4 pixels and at most half the image side "
                f"({min(shape) / 2:g}), got {self.diameter}."
            )
        set_(self, "diameter", (lo, hi))
        if self.n_cells is not None:
            if isinstance(self.n_cells, bool) or not _is_integer(self.n_cells):
                raise NapariUnetError(
                    f"The number of cells must be a whole number or None, got {self.n_cells!r}."
                )
            n = int(self.n_cells)
            mean_area = math.pi / 4 * lo * hi  # mean of d**2 for log-spread d, roughly
            if n < 0 or n * mean_area > _MAX_COVERAGE * shape[0] * shape[1]:
                raise NapariUnetError(
                    f"Cannot fit {n} cells of diameter {lo:g} to {hi:g} pixels in a "
                    f"{shape[0]}x{shape[1]} image; ask for fewer or smaller cells."
                )
            set_(self, "n_cells", n)
        if self.style not in STYLES:
            raise NapariUnetError(
                f"Unknown style {self.style!r}; use 'fluorescence' or 'brightfield'."
            )
        for name in ("touching", "dividing", "out_of_focus"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
                raise NapariUnetError(f"{name} must be a number from 0 to 1, got {value!r}.")
            set_(self, name, float(value))
        photons = _float_range(self.photons, "The photon range")
        blur = _float_range(self.blur, "The blur range")
        if photons[0] <= 0 or blur[0] < 0 or blur[1] > 10:
            raise NapariUnetError(
                "Photon counts must be positive and blur between 0 and 10 pixels."
            )
        set_(self, "photons", photons)
        set_(self, "blur", blur)
        set_(self, "dtype", _dtype_name(self.dtype))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with the generator version, for provenance records."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        for key in ("diameter", "photons", "blur"):
            data[key] = list(data[key])
        data["generator_version"] = GENERATOR_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        NapariUnetError
            If the settings are unreadable or were written by another version
            of the generator (whose images this version would not reproduce).
        """
        try:
            data = dict(data)
            version = data.pop("generator_version", GENERATOR_VERSION)
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
        except (TypeError, ValueError) as exc:
            raise NapariUnetError(f"The synthetic data settings are unreadable: {exc}") from None
        if version != GENERATOR_VERSION:
            raise NapariUnetError(
                f"These settings come from synthetic generator version {version}, "
                f"but this is version {GENERATOR_VERSION}, which draws different images."
            )
        if unknown:
            raise NapariUnetError(f"Unknown synthetic data settings: {', '.join(unknown)}.")
        for key in ("shape", "diameter", "photons", "blur"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        return cls(**data)

    def generate(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one image and its labels.

        Parameters
        ----------
        seed : int, sequence of int, or None
            Seed of the random generator (non-negative). ``None`` draws fresh
            entropy; any other value always gives the same arrays.

        Returns
        -------
        image : numpy.ndarray
            ``(H, W)`` camera image of type :attr:`dtype`.
        labels : numpy.ndarray
            ``(H, W)`` int32 instance labels, 0 for background and 1..n for the
            cells, each pixel belonging to the cell in front.
        """
        return _generate(self, random_generator(seed))

    def generate_many(
        self, n_images: int, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw several images; image ``i`` equals ``generate(seed=[seed, i])``.

        Parameters
        ----------
        n_images : int
            How many images to draw.
        seed : int or None
            Base seed; ``None`` draws fresh entropy for the whole set.

        Returns
        -------
        images, labels : numpy.ndarray
            Stacks of shape ``(n_images, H, W)``.
        """
        if isinstance(n_images, bool) or not _is_integer(n_images) or n_images < 1:
            raise NapariUnetError(f"The number of images must be at least 1, got {n_images!r}.")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        images = np.empty((int(n_images), *self.shape), dtype=_DTYPES[self.dtype])
        labels = np.empty((int(n_images), *self.shape), dtype=np.int32)
        for i in range(int(n_images)):
            images[i], labels[i] = self.generate(seed=[seed, i])
        return images, labels


def make_cells(
    shape: tuple[int, int] = (512, 512),
    *,
    n_cells: int | None = None,
    diameter: tuple[float, float] = (12.0, 30.0),
    style: str = "fluorescence",
    touching: float = 0.5,
    seed: int | Sequence[int] | None = None,
    dtype: Any = np.uint16,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a synthetic microscopy image of cells and its exact instance labels.

    A shortcut for ``SyntheticConfig(...).generate(seed)``.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels.
    n_cells : int or None
        Number of cells; ``None`` picks a realistic density.
    diameter : tuple of float
        ``(min, max)`` equivalent cell diameter in pixels.
    style : {"fluorescence", "brightfield"}
        Fluorescent nuclei, or phase-contrast/brightfield-like cells.
    touching : float
        Probability (0 to 1) that a cell is placed against another one.
    seed : int, sequence of int, or None
        Same seed, same arrays; ``None`` draws fresh entropy.
    dtype : numpy.uint16 or numpy.uint8
        Integer type of the image.
    **options
        Further :class:`SyntheticConfig` settings: ``dividing``,
        ``out_of_focus``, ``photons``, ``blur``.

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` image of type ``dtype``.
    labels : numpy.ndarray
        ``(H, W)`` int32 labels, consecutive ids 1..n, 0 for background.

    Examples
    --------
    >>> image, labels = make_cells((256, 256), n_cells=40, seed=0)
    >>> image.dtype, labels.max()
    (dtype('uint16'), np.int32(40))
    """
    unknown = sorted(set(options) - {f.name for f in fields(SyntheticConfig)})
    if unknown:  # a programming error, not the user's
        raise TypeError(f"make_cells() got unexpected keyword arguments: {unknown}")
    config = SyntheticConfig(
        shape=shape,
        n_cells=n_cells,
        diameter=diameter,
        style=style,
        touching=touching,
        dtype=dtype,
        **options,
    )
    return config.generate(seed)


# --------------------------------------------------------------------------- validation


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    )


def _int_pair(value: Any, what: str) -> tuple[int, int]:
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_integer(v) and not isinstance(v, bool) for v in pair):
        raise NapariUnetError(f"{what} must be two whole numbers (height, width), got {value!r}.")
    return int(pair[0]), int(pair[1])


def _float_range(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise NapariUnetError(f"{what} must be two numbers (min, max), got {value!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise NapariUnetError(f"{what} must be two finite numbers with min <= max, got {value!r}.")
    return lo, hi


def _dtype_name(value: Any) -> str:
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise NapariUnetError(f"The image type must be uint16 or uint8, got {value!r}.")
    return name


# --------------------------------------------------------------------------- geometry


class _Cell:
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


def _draw_cell(rng: np.random.Generator, diameter: float, kind: str, irregular: float) -> _Cell:
    if kind == "dividing":
        aspect = rng.uniform(1.3, 2.2)  # metaphase plates and condensed chromatin are elongated
    else:
        aspect = min(math.exp(abs(rng.normal(0.0, 0.22))), 2.2)
    amp = rng.normal(0.0, 1.0, _HARMONICS.size) * irregular / _HARMONICS**1.3
    if rng.random() < 0.1:  # kidney, bean and pear shapes
        amp[rng.integers(0, 2)] += rng.choice((-1, 1)) * rng.uniform(0.08, 0.15)
    total = np.abs(amp).sum()
    if total > 0.35:  # keeps the radius positive: the cell stays one star-shaped piece
        amp *= 0.35 / total
    phase = rng.uniform(0.0, 2 * np.pi, _HARMONICS.size)
    # the wobble grows the area by mean((1 + sum a cos)^2) = 1 + sum(a^2)/2; undo it
    scale = 0.5 * diameter / math.sqrt(1.0 + 0.5 * float((amp**2).sum()))
    a, b = scale * math.sqrt(aspect), scale / math.sqrt(aspect)
    return _Cell(
        a, b, rng.uniform(0, np.pi), amp.astype(np.float32), phase.astype(np.float32), kind
    )


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


def _place_cells(
    config: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[_Cell]]:
    """Place cells one by one, touching or apart, and paint their labels."""
    h, w = config.shape
    lo, hi = config.diameter
    irregular = 0.12 if config.style == "fluorescence" else 0.22
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
    queue: list[tuple[int, _Cell | None]] = [
        (int(i), None) for i in rng.permutation(n) if int(i) not in follower.values()
    ]

    labels = np.zeros((h, w), np.int32)
    centers = np.empty((n, 2))
    radii = np.empty(n)
    cells: list[_Cell] = []
    while queue:
        i, partner = queue.pop(0)
        cell = _draw_cell(rng, diameters[i], kinds[i], irregular)
        if partner is not None:
            cell.angle = partner.angle
        placed = False
        for attempt in range(120):
            # where free room has run out, a cell may still fit against others
            touching = config.touching if attempt < 60 or not config.touching else 1.0
            cy, cx, mode = _propose(rng, cell, partner, cells, touching, h, w)
            if not (0 <= cy < h and 0 <= cx < w):
                continue
            k = len(cells)
            if k:  # cheap rejection before drawing the outline
                dist = np.hypot(centers[:k, 0] - cy, centers[:k, 1] - cx)
                need = 0.75 if mode == "touch" else 1.0
                if np.any(dist < need * (radii[:k] + cell.radius)):
                    continue
            if _try_paint(rng, cell, cy, cx, mode, labels, cells):
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
    cell: _Cell,
    partner: _Cell | None,
    cells: list[_Cell],
    touching: float,
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
        dist = (other.radius + cell.radius) * rng.uniform(0.8, 1.0)
        return other.cy + dist * math.sin(direction), other.cx + dist * math.cos(direction), "touch"
    return rng.uniform(0, h), rng.uniform(0, w), "apart"


def _try_paint(
    rng: np.random.Generator,
    cell: _Cell,
    cy: float,
    cx: float,
    mode: str,
    labels: np.ndarray,
    cells: list[_Cell],
) -> bool:
    """Paint ``cell`` if it fits: apart keeps a gap, touching may hide a little of others."""
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
                if other.area - hits[j] < (1.0 - _MAX_OCCLUSION) * other.full_area:
                    return False
            for j in np.flatnonzero(hits[1:]) + 1:
                cells[j - 1].area -= int(hits[j])
            window[inside] = new_id
        else:
            if hits[1:].sum() > _MAX_OCCLUSION * area:
                return False
            window[inside & (window == 0)] = new_id
            area -= int(hits[1:].sum())
    cell.cy, cell.cx, cell.sl, cell.rho = cy, cx, sl, rho
    cell.area = area
    cell.full_area = int(inside.sum())
    return True


def _finish_labels(labels: np.ndarray, cells: list[_Cell]) -> tuple[np.ndarray, list[_Cell]]:
    """Keep each cell's largest 4-connected piece and renumber ids to 1..n."""
    kept: list[_Cell] = []
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


# --------------------------------------------------------------------------- rendering


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-correlated noise with zero mean and unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], terms: int = 3) -> np.ndarray:
    """A slowly varying field (about unit amplitude), built from a few separable waves."""
    h, w = shape
    y = np.arange(h, dtype=np.float32) / max(h, w)
    x = np.arange(w, dtype=np.float32) / max(h, w)
    field = np.zeros(shape, np.float32)
    for _ in range(terms):
        fy, fx = rng.uniform(0.3, 2.5, 2)
        py, px = rng.uniform(0, 2 * np.pi, 2)
        field += np.outer(np.cos(2 * np.pi * fy * y + py), np.cos(2 * np.pi * fx * x + px))
    return field / math.sqrt(terms)


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Vignetting around an off-centre optical axis, a tilt, and gentle unevenness."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32)[:, None] - h * rng.uniform(0.3, 0.7)) / max(h, w)
    x = (np.arange(w, dtype=np.float32)[None, :] - w * rng.uniform(0.3, 0.7)) / max(h, w)
    tilt = rng.uniform(0, 2 * np.pi)
    field = (1.0 - rng.uniform(0.0, 0.6) * (y * y + x * x)) * (
        1.0 + rng.uniform(0.0, 0.4) * (y * math.sin(tilt) + x * math.cos(tilt))
    )
    field *= 1.0 + rng.uniform(0.0, 0.08) * _smooth_field(rng, shape)
    return np.clip(field, 0.3, None)


def _spots(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    cell: _Cell,
    count: int,
    sigma: tuple[float, float],
    amplitude: tuple[float, float],
    within: float,
) -> np.ndarray:
    """Sum of ``count`` Gaussian spots placed inside the cell, at pixels ``(yy, xx)``."""
    r = within * np.sqrt(rng.random(count))
    t = rng.uniform(0, 2 * np.pi, count)
    u, v = cell.a * r * np.cos(t), cell.b * r * np.sin(t)
    c, s = math.cos(cell.angle), math.sin(cell.angle)
    sy, sx = (u * s + v * c)[:, None], (u * c - v * s)[:, None]
    width = (2 * rng.uniform(*sigma, count) ** 2)[:, None]
    height = rng.uniform(*amplitude, count).astype(np.float32)
    dist2 = (yy[None, :] - sy) ** 2 + (xx[None, :] - sx) ** 2
    return height @ np.exp(-dist2 / width).astype(np.float32)


def _cell_pixels(
    labels: np.ndarray, cell: _Cell, ident: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cell's own pixels in its box, their ``rho`` and offsets from its centre."""
    own = labels[cell.sl] == ident
    ys, xs = np.nonzero(own)
    yy = (ys + cell.sl[0].start - cell.cy).astype(np.float32)
    xx = (xs + cell.sl[1].start - cell.cx).astype(np.float32)
    return own, cell.rho[own], yy, xx


def _render_fluorescence(
    rng: np.random.Generator, config: SyntheticConfig, labels: np.ndarray, cells: list[_Cell]
) -> np.ndarray:
    """Expected intensity, in units where a typical nucleus is about 1."""
    shape = labels.shape
    psf = rng.uniform(*config.blur)
    fine = _noise(rng, shape, 0.8)  # chromatin grain
    coarse = _noise(rng, shape, 2.2)  # heterochromatin clumps
    sharp = np.zeros(shape, np.float32)
    soft = np.zeros(shape, np.float32)
    spread = rng.uniform(0.15, 0.4)  # how much brightness varies between cells
    for ident, cell in enumerate(cells, start=1):
        own, rho, yy, xx = _cell_pixels(labels, cell, ident)
        rho = np.minimum(rho, 1.0)
        dividing = cell.kind == "dividing"
        blurred = not dividing and rng.random() < config.out_of_focus
        bright = math.exp(rng.normal(0.0, spread))
        if rng.random() < 0.08:
            bright *= rng.uniform(0.3, 0.6)  # a dim sub-population
        if dividing:
            # condensed chromosomes: small, very bright, grainy, no nucleoli
            bright *= rng.uniform(2.0, 3.5)
            profile = (1.0 - rho * rho) ** rng.uniform(0.05, 0.2)
            texture = 1.0 + rng.uniform(0.25, 0.45) * fine[cell.sl][own]
        else:
            profile = (1.0 - rho * rho) ** rng.uniform(0.1, 0.4)
            texture = (
                1.0
                + rng.uniform(0.04, 0.2) * fine[cell.sl][own]
                + rng.uniform(0.03, 0.25) * coarse[cell.sl][own]
            )
            if rng.random() < 0.3:  # bright rim of peripheral heterochromatin
                rim = rng.uniform(0.1, 0.3)
                texture += rim * np.exp(-(((1.0 - rho) / 0.12) ** 2))
            n_nucleoli = int(rng.poisson(1.5))
            if n_nucleoli:  # nucleoli hold little DNA: dark holes in a DNA stain
                size = cell.radius * 0.18
                texture *= 1.0 - np.minimum(
                    _spots(
                        rng, yy, xx, cell, n_nucleoli, (0.6 * size, 1.2 * size), (0.3, 0.6), 0.55
                    ),
                    0.8,
                )
            if rng.random() < 0.25:  # chromocentres: bright DNA foci
                texture += _spots(
                    rng, yy, xx, cell, int(rng.integers(3, 12)), (0.6, 1.3), (0.3, 0.9), 0.75
                )
            if blurred:
                bright *= rng.uniform(0.6, 1.0)
        target = soft if blurred else sharp
        target[cell.sl][own] = bright * profile * np.maximum(texture, 0.05)
    image = ndi.gaussian_filter(sharp, psf) if psf > 0 else sharp
    if config.out_of_focus > 0 and soft.any():
        image += ndi.gaussian_filter(soft, psf + rng.uniform(1.0, 3.0))
    # out-of-focus light from all cells: a faint glow around crowded regions
    image += rng.uniform(0.0, 0.12) * ndi.gaussian_filter(
        image, rng.uniform(6.0, 14.0), truncate=2.5
    )
    # autofluorescence and stray light: a smooth, uneven background
    background = rng.uniform(0.02, 0.2) * (1.0 + 0.3 * _smooth_field(rng, shape))
    return (image + np.clip(background, 0.0, None)) * _illumination(rng, shape)


def _render_brightfield(
    rng: np.random.Generator, config: SyntheticConfig, labels: np.ndarray, cells: list[_Cell]
) -> np.ndarray:
    """Expected intensity, in units where the background is about 1."""
    shape = labels.shape
    psf = rng.uniform(*config.blur)
    fine = _noise(rng, shape, 0.8)
    coarse = _noise(rng, shape, 2.5)
    thickness = np.zeros(shape, np.float32)
    for ident, cell in enumerate(cells, start=1):
        own, rho, yy, xx = _cell_pixels(labels, cell, ident)
        rho = np.minimum(rho, 1.0)
        height = rng.uniform(0.3, 0.6) * (1.5 if cell.kind == "dividing" else 1.0)
        dome = np.sqrt(1.0 - rho * rho) * rng.uniform(0.4, 0.8) + rng.uniform(0.2, 0.6)
        texture = (
            1.0
            + rng.uniform(0.1, 0.3) * fine[cell.sl][own]
            + rng.uniform(0.05, 0.2) * coarse[cell.sl][own]
        )
        # the nucleus as a denser, smooth region, and granules in the cytoplasm
        texture += _spots(
            rng, yy, xx, cell, 1, (0.3 * cell.radius, 0.45 * cell.radius), (0.2, 0.5), 0.3
        )
        texture += _spots(rng, yy, xx, cell, int(rng.integers(0, 8)), (0.6, 1.2), (0.2, 0.6), 0.85)
        thickness[cell.sl][own] = height * dome * texture
    sharp = ndi.gaussian_filter(thickness, psf) if psf > 0 else thickness
    # phase contrast and defocused brightfield: a dark rim inside the edge and a
    # bright halo outside (or the reverse), plus absorption darkening the cells
    halo = ndi.gaussian_filter(thickness, psf + rng.uniform(1.0, 3.0)) - sharp
    sign = 1.0 if rng.random() < 0.75 else -1.0
    image = 1.0 + sign * rng.uniform(1.0, 2.0) * halo - rng.uniform(0.1, 0.4) * sharp
    # textured background: dust, scratches of the dish, uneven coverslip
    image += rng.uniform(0.005, 0.025) * _noise(rng, shape, rng.uniform(0.7, 1.5))
    image += rng.uniform(0.0, 0.06) * _smooth_field(rng, shape, terms=5)
    n_specks = int(rng.poisson(shape[0] * shape[1] / 20000))
    if n_specks:
        specks = np.zeros(shape, np.float32)
        specks[rng.integers(0, shape[0], n_specks), rng.integers(0, shape[1], n_specks)] = (
            rng.uniform(-3.0, 1.0, n_specks)
        )
        image += ndi.gaussian_filter(specks, 1.0)
    return np.clip(image, 0.05, None) * _illumination(rng, shape)


def _camera(
    rng: np.random.Generator,
    expected: np.ndarray,
    photons: float,
    dtype: str,
    level8: tuple[float, float],
) -> np.ndarray:
    """Shot noise, read noise, gain, offset, rounding and saturation.

    ``expected`` is in units where a typical cell (or background) is about 1;
    ``photons`` is the mean photon count at that level, and an 8-bit image puts
    that level in the range ``level8``.
    """
    electrons = rng.poisson(np.clip(expected, 0.0, None) * photons).astype(np.float32)
    electrons += np.float32(rng.uniform(1.0, 3.0)) * rng.standard_normal(
        expected.shape, dtype=np.float32
    )
    if dtype == "uint8":
        # an 8-bit export: the typical level lands mid-range, the brightest saturate
        gain = rng.uniform(*level8) / photons
        offset = rng.uniform(0.0, 12.0)
        top = 255
    else:
        # a 16-bit camera: some subtract their offset, most add 100 or so
        offset = float(rng.choice((0.0, 100.0, 100.0, 500.0)))
        top = 65535
        gain = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))  # ADU per electron
        gain = min(gain, 0.4 * top / photons)  # the typical level stays well below saturation
    adu = offset + gain * electrons
    n_hot = int(rng.poisson(adu.size * 2e-5))  # hot pixels of the sensor
    if n_hot:
        flat = adu.reshape(-1)
        flat[rng.integers(0, flat.size, n_hot)] += rng.uniform(0.5, 3.0, n_hot) * gain * photons
    return np.clip(np.rint(adu), 0, top).astype(_DTYPES[dtype])


def _generate(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels, cells = _place_cells(config, rng)
    labels, cells = _finish_labels(labels, cells)
    lo, hi = config.photons
    if config.style == "fluorescence":
        expected = _render_fluorescence(rng, config, labels, cells)
        photons = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        level8 = (60.0, 170.0)  # 8-bit exports: nuclei mid-range, the brightest saturate
    else:
        expected = _render_brightfield(rng, config, labels, cells)
        # a lamp gives many photons, but a camera pixel holds only so many
        photons = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        photons = min(max(100.0 * photons, 2000.0), 20000.0)
        level8 = (90.0, 150.0)  # grey background, room for the bright halos
    return _camera(rng, expected, photons, config.dtype, level8), labels
