"""The camera: photon shot noise, read noise, gain, offset, rounding, saturation, hot pixels."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DTYPES", "photograph"]

DTYPES = {"uint8": np.uint8, "uint16": np.uint16}


def photograph(
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
    # the camera's settings first: Poisson sampling uses a variable amount of the
    # random stream, and the settings must not depend on the specimen's brightness
    read_noise = np.float32(rng.uniform(1.0, 3.0))
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
    n_hot = int(rng.poisson(expected.size * 2e-5))  # hot pixels of the sensor
    hot_at = rng.integers(0, expected.size, n_hot)
    hot_extra = rng.uniform(0.5, 3.0, n_hot) * gain * photons
    read = read_noise * rng.standard_normal(expected.shape, dtype=np.float32)
    electrons = rng.poisson(np.clip(expected, 0.0, None) * photons).astype(np.float32) + read
    adu = offset + gain * electrons
    if n_hot:
        adu.reshape(-1)[hot_at] += hot_extra
    return np.clip(np.rint(adu), 0, top).astype(DTYPES[dtype])
