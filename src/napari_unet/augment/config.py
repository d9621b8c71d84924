"""The augmentation settings (:class:`AugmentConfig`), shared by training and the preview."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from .checks import check_grid, check_order, check_range

__all__ = ["AugmentConfig"]


@dataclass(frozen=True)
class AugmentConfig:
    """All augmentation settings, shared by training and the preview.

    The defaults follow the paper: elastic deformation on a 3x3 grid with 10 pixels standard
    deviation, rotations, flips and mild gray-value changes. Every amount of 0 (or ``False``)
    switches its step off; :meth:`identity` switches all off.

    Attributes
    ----------
    elastic : bool
        Random elastic deformation (see :func:`elastic_deform`).
    grid_points : int
        Coarse grid nodes per axis for the elastic field (paper: 3).
    sigma : float
        Standard deviation of the node displacements in pixels (paper: 10).
    flips : bool
        Flip up-down and left-right, each with probability 1/2.
    rot90 : bool
        Rotate by a random multiple of 90 degrees (0 or 180 for non-square samples).
    rotation : float
        Largest arbitrary rotation in degrees; 45 with ``rot90`` reaches every angle.
    shift : float
        Largest shift in pixels per axis. 0 by default: training already picks tiles at random
        positions, which gives the paper's shift invariance.
    contrast : float
        ``a``: each channel is scaled about its mean by a factor log-uniform in
        ``[1/(1+a), 1+a]``.
    brightness : float
        ``a``: an offset uniform in ``[-a, a]`` times each channel's standard deviation.
    gamma : float
        ``a``: a gamma curve with exponent log-uniform in ``[1/(1+a), 1+a]`` on each
        channel's own ``[min, max]``, which it keeps.
    noise : float
        ``a``: Gaussian noise with standard deviation uniform in ``[0, a]`` times the
        channel's.
    order : {3, 1}
        Interpolation of the image (cubic or linear); labels are always nearest, weights linear.
    """

    elastic: bool = True
    grid_points: int = 3
    sigma: float = 10.0
    flips: bool = True
    rot90: bool = True
    rotation: float = 45.0
    shift: float = 0.0
    contrast: float = 0.2
    brightness: float = 0.1
    gamma: float = 0.2
    noise: float = 0.03
    order: int = 3

    def __post_init__(self) -> None:
        for name in ("elastic", "flips", "rot90"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise NapariUnetError(f"The augmentation setting {name} must be true or false.")
        check_grid(self.grid_points, self.sigma)
        for name in ("rotation", "shift", "contrast", "brightness", "gamma", "noise"):
            check_range(name, getattr(self, name))
        check_order(self.order)
        # plain Python types, so to_dict() is JSON even when numpy scalars came in
        for f in fields(self):
            kind = type(getattr(type(self), f.name))
            object.__setattr__(self, f.name, kind(getattr(self, f.name)))

    @classmethod
    def identity(cls) -> AugmentConfig:
        """Settings that change nothing (useful to switch augmentation off)."""
        return cls(
            elastic=False,
            flips=False,
            rot90=False,
            rotation=0.0,
            contrast=0.0,
            brightness=0.0,
            gamma=0.0,
            noise=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, ``None`` gives them all."""
        if not data:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise NapariUnetError(f"Unknown augmentation setting(s): {', '.join(unknown)}.")
        kwargs = {}
        for key, value in data.items():
            default = getattr(cls, key)
            kind = "true or false" if isinstance(default, bool) else "a number"
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, (bool, int, float)
            ):
                raise NapariUnetError(f"The augmentation setting {key} must be {kind}.")
            if isinstance(default, int) and not isinstance(default, bool):
                if not float(value).is_integer():
                    raise NapariUnetError(f"The augmentation setting {key} must be an integer.")
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)
