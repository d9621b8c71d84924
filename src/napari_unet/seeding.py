"""The one rule for turning a ``seed`` argument into a random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NapariUnetError

__all__ = ["random_generator"]


def random_generator(seed: Any) -> np.random.Generator:
    """A numpy Generator for ``seed``.

    ``None`` (fresh entropy), a non-negative whole number or a sequence of them
    make a new generator; a :class:`numpy.random.Generator` is returned as it is,
    so its draws continue where the caller left them. Anything else (a bool, a
    negative number, a string) is a :class:`NapariUnetError`.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if not isinstance(seed, bool):
        try:
            return np.random.default_rng(seed)
        except (TypeError, ValueError):
            pass
    raise NapariUnetError(
        f"The seed must be a non-negative whole number, a numpy Generator or None, got {seed!r}."
    )
