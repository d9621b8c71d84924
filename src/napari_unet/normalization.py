"""Intensity normalisation shared by training and prediction.

Statistics are computed once per image (never per tile), so tiling cannot change
a prediction. The settings travel in the model file so that prediction sees the
intensities training saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import NapariUnetError

__all__ = ["Normalization", "as_float_image"]

# Percentiles of images above this many pixels are taken on a regular, shape-only
# subsample, so an in-memory image and the same image read lazily get the same numbers.
_MAX_STAT_PIXELS = 1 << 22


@dataclass(frozen=True)
class Normalization:
    """Robust percentile normalisation: ``(x - p_low) / (p_high - p_low)``.

    Parameters
    ----------
    method : {"percentile", "none"}
        ``"none"`` passes intensities through as float32.
    low, high : float
        Percentiles mapped to 0 and 1 (1 and 99.8 by default, robust to a few
        saturated or dead pixels).
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in ("percentile", "none"):
            raise NapariUnetError(
                f"Unknown normalisation method {self.method!r}; use 'percentile' or 'none'."
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise NapariUnetError(
                f"Normalisation percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low} and high={self.high}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in model files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Normalization:
        """Inverse of :meth:`to_dict`; ``None`` gives the default."""
        if not data:
            return cls()
        try:
            return cls(
                method=str(data.get("method", "percentile")),
                low=float(data.get("low", 1.0)),
                high=float(data.get("high", 99.8)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise NapariUnetError(
                f"The stored normalisation settings are unreadable: {exc}"
            ) from None

    def statistics(self, image: Any, channel_axis: int | None = None) -> np.ndarray:
        """Per-channel ``(low, high)`` intensities of ``image``.

        Parameters
        ----------
        image : array-like
            Image of any shape; numpy, dask or zarr arrays all work.
        channel_axis : int or None
            Axis holding channels, each normalised on its own.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_channels, 2)`` (one row when ``channel_axis`` is None).
        """
        _check_numeric(image.dtype)
        if self.method == "none":
            n = 1 if channel_axis is None else image.shape[channel_axis]
            return np.tile(np.array([[0.0, 1.0]]), (n, 1))
        if channel_axis is None:
            channels = [image]
        else:
            channels = [
                image[(slice(None),) * (channel_axis % image.ndim) + (c,)]
                for c in range(image.shape[channel_axis])
            ]
        rows = []
        for ch in channels:
            sample = np.asarray(ch[_subsample_index(ch.shape)], dtype=np.float64)
            if not np.all(np.isfinite(sample)):
                raise NapariUnetError("The image contains NaN or infinite values.")
            rows.append(np.percentile(sample, [self.low, self.high]))
        return np.asarray(rows, dtype=np.float64)

    def apply(self, image: Any, stats: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
        """Normalise ``image`` (or a crop of it) with precomputed ``stats``."""
        x = as_float_image(image)
        if self.method == "none":
            return x
        stats = np.asarray(stats, dtype=np.float64)
        lo = stats[:, 0]
        scale = stats[:, 1] - lo
        # A constant image has no contrast to stretch: map it to 0 instead of dividing by 0.
        inv = np.where(scale > 1e-12, 1.0 / np.where(scale > 1e-12, scale, 1.0), 0.0)
        if channel_axis is None:
            return ((x - lo[0]) * inv[0]).astype(np.float32, copy=False)
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return ((x - lo.reshape(shape)) * inv.reshape(shape)).astype(np.float32, copy=False)


def _subsample_index(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Regular subsample of at most ~``_MAX_STAT_PIXELS`` pixels, depending on shape only."""
    n = int(np.prod(shape, dtype=np.int64))
    if n <= _MAX_STAT_PIXELS:
        return (slice(None),) * len(shape)
    stride = int(np.ceil((n / _MAX_STAT_PIXELS) ** (1.0 / max(len(shape), 1))))
    return (slice(None, None, stride),) * len(shape)


def _check_numeric(dtype: np.dtype) -> None:
    kinds = (np.bool_, np.integer, np.floating)  # not complex, strings or objects
    if not any(np.issubdtype(dtype, kind) for kind in kinds):
        raise NapariUnetError(f"Images must hold numbers, not {dtype} values.")


def as_float_image(image: Any) -> np.ndarray:
    """``image`` as a float32 numpy array, refusing types that are not images."""
    x = np.asarray(image)
    _check_numeric(x.dtype)
    return x.astype(np.float32, copy=False)
