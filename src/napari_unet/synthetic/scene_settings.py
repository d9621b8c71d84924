"""What a synthetic scene is drawn from: :class:`SceneSettings`, checked and in JSON form.

The drawing modules (:mod:`.scenes`, :mod:`.shapes`, :mod:`.optics`) read these
settings; :class:`~napari_unet.synthetic.settings.SyntheticConfig` adds drawing
to them. Kept below both, so the drawing code can name the type it reads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

import numpy as np

from ..errors import NapariUnetError
from .camera import DTYPES

__all__ = ["GENERATOR_VERSION", "STYLES", "SceneSettings"]

#: Version of the drawing code; part of :meth:`SceneSettings.to_dict`.
GENERATOR_VERSION = 2


#: Imaging styles the generator knows.
STYLES = ("fluorescence", "brightfield")
_MAX_COVERAGE = 0.7
#: Options added after generator version 2 (issue 25): absent from a record means off.
_OFF_BY_DEFAULT = ("mitotic", "specks", "high_offset")


@dataclass(frozen=True)
class SceneSettings:
    """The generator's settings, checked on creation (documented on ``SyntheticConfig``).

    Raises
    ------
    NapariUnetError
        If a setting is out of its range or of the wrong type, in one sentence.
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
    def from_dict(cls, data: dict[str, Any]) -> Self:
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
