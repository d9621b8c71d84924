"""Checks of a zarr run's arguments, made before any work (not after hours)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..postprocess import labels_from_probabilities

__all__ = [
    "DEFAULT_LABEL_MARGIN",
    "check_counts",
    "check_destination",
    "check_postprocess",
    "resolve_label_margin",
]

#: Default margin of neighbouring probabilities each chunk sees when labelling.
DEFAULT_LABEL_MARGIN = 64


def check_counts(**counts: int) -> None:
    """``batch_size`` at least 1; ``min_size`` and ``retries`` 0 or more."""
    for name, value in counts.items():
        lowest = 1 if name == "batch_size" else 0
        if value < lowest:
            at_least = "at least 1" if lowest else "0 or more"
            raise NapariUnetError(f"{name} must be {at_least}, got {value}.")


def resolve_label_margin(label_margin: int | None, postprocess: dict) -> int:
    """The margin asked for, or the default for the labelling method."""
    if label_margin is None:
        method = postprocess.get("method", "watershed")
        label_margin = 0 if method == "components" else DEFAULT_LABEL_MARGIN
    if label_margin < 0:
        raise NapariUnetError(f"label_margin must be 0 or more, got {label_margin}.")
    return label_margin


def check_postprocess(n_classes: int, threshold: float, postprocess: dict) -> None:
    """Post-processing options are checked now, on a 1-pixel image, not after hours."""
    labels_from_probabilities(
        np.full((n_classes, 1, 1), 1.0 / n_classes, dtype=np.float32),
        threshold=threshold,
        min_size=0,
        **postprocess,
    )


def check_destination(output: Any, into_input: bool, probabilities: bool) -> None:
    """An output, or ``into_input`` without one (and without probabilities)."""
    if into_input:
        if output is not None:
            raise NapariUnetError(
                "With into_input the labels go into the input image; give no output."
            )
        if probabilities:
            raise NapariUnetError(
                "Probabilities are not written into the input image; write a separate "
                "output to keep them."
            )
    elif output is None:
        raise NapariUnetError("Name the zarr store to write the result to.")
