"""The generator's settings (:class:`SyntheticConfig`) and the shortcut :func:`make_cells`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..seeding import random_generator
from .camera import DTYPES
from .scenes import draw_scene

__all__ = ["GENERATOR_VERSION", "STYLES", "SyntheticConfig", "make_cells"]

#: Version of the drawing code; part of :meth:`SyntheticConfig.to_dict`.
GENERATOR_VERSION = 2


#: Imaging styles the generator knows.
STYLES = ("fluorescence", "brightfield")
_MAX_COVERAGE = 0.7
#: Options added after generator version 2 (issue 25): absent from a record means off.
_OFF_BY_DEFAULT = ("mitotic", "specks", "high_offset")


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
    dim : float
        Fraction of cells (0 to 1) drawn 2.5 to 7 times dimmer than the typical
        cell (fluorescence): weakly stained or G1 nuclei next to bright ones.
    lobed : float
        Fraction of cells (0 to 1) with a lobed, non-convex (bean, kidney,
        bilobed) outline instead of a near-elliptic one.
    overlap : float
        At most this fraction (0 to 0.5) of a cell's area may lie under a
        touching cell. In fluorescence both shine through: the overlap is
        brighter, and its pixels are labelled as the cell in front.
    debris : float
        Expected number of unlabelled objects that are not nuclei (small bright
        specks and thin fibres of lint, fluorescence) per 100 x 100 pixels,
        from 0 to 10.
    mitotic : float
        Fraction of nuclei (0 to 1) redrawn as condensed mitotic/apoptotic nuclei:
        2.5 to 6 times brighter (often saturated), grainy with dark gaps, labelled
        as one object (fluorescence; see :mod:`.realism`). Off by default.
    specks : float
        Expected number of small, dim, out-of-focus unlabelled blobs beside nuclei
        per 100 x 100 pixels, from 0 to 10 (fluorescence). Off by default.
    high_offset : float
        Fraction of 16-bit images (0 to 1) recorded with a large camera offset (30%
        to 60% of 65,535, nuclei a few hundred counts above it) or as 12-bit, often
        saturating just above the brightest nuclei. Off by default.
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
    dim: float = 0.1
    lobed: float = 0.1
    overlap: float = 0.15
    debris: float = 0.3
    mitotic: float = 0.0
    specks: float = 0.0
    high_offset: float = 0.0

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
        for name, top in (
            ("touching", 1.0), ("dividing", 1.0), ("out_of_focus", 1.0), ("dim", 1.0),
            ("lobed", 1.0), ("overlap", 0.5), ("debris", 10.0), ("mitotic", 1.0),
            ("specks", 10.0), ("high_offset", 1.0),
        ):  # fmt: skip
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.number))
                or not 0.0 <= value <= top
            ):
                raise NapariUnetError(f"{name} must be a number from 0 to {top:g}, got {value!r}.")
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
        for key in _OFF_BY_DEFAULT:  # left out when off: earlier records stay the same
            if data[key] == 0.0:
                del data[key]
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
        return draw_scene(self, random_generator(seed))

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
        images = np.empty((int(n_images), *self.shape), dtype=DTYPES[self.dtype])
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
        ``out_of_focus``, ``photons``, ``blur``, ``dim``, ``lobed``,
        ``overlap``, ``debris``, ``mitotic``, ``specks``, ``high_offset``.

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
    if name not in DTYPES:
        raise NapariUnetError(f"The image type must be uint16 or uint8, got {value!r}.")
    return name
