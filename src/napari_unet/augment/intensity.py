"""Gray-value changes: gamma, contrast, brightness and noise, in place on float32 channels.

Magnitudes are relative to each channel's own spread, so one setting suits raw
(e.g. uint16) and normalised images alike. Labels and weights are never touched.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["add_brightness", "add_noise", "apply_gamma", "channel_std", "scale_contrast"]


def apply_gamma(x: np.ndarray, gamma: float) -> None:
    """Raise each channel, mapped to ``[0, 1]`` by its own range, to ``gamma``."""
    # applied on each channel's own [min, max], which it keeps
    for c in x:
        lo, hi = float(c.min()), float(c.max())
        if hi > lo:
            c -= lo
            c *= 1.0 / (hi - lo)
            np.power(c, gamma, out=c)
            c *= hi - lo
            c += lo


def scale_contrast(x: np.ndarray, factor: float) -> None:
    """Scale each channel about its mean by ``factor``."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    x -= mean
    x *= factor
    x += mean


def add_brightness(x: np.ndarray, offset: float, std: np.ndarray) -> None:
    """Add ``offset`` times each channel's standard deviation ``std``."""
    x += (offset * std).astype(np.float32)


def add_noise(x: np.ndarray, level: float, std: np.ndarray, seed: int) -> None:
    """Add Gaussian noise of ``level`` times each channel's ``std``, seeded by ``seed``."""
    # torch's vectorised normal sampler is several times faster than numpy's here
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).numpy()
    noise *= (level * std).astype(np.float32)
    x += noise


def channel_std(x: np.ndarray) -> np.ndarray:
    """Standard deviation of each channel, ``(C, 1, 1)``."""
    return x.std(axis=(1, 2), keepdims=True, dtype=np.float64)
