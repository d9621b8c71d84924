"""After training: the instance rule calibrated on the user's cells, into the model's metadata.

The cells are the held-out validation cells (the stable split of
:mod:`napari_unet.training.split`, whatever it decides counts), their
probabilities cached once and shared with the final validation. With fewer than
:data:`MIN_HELD_OUT` held out, every annotated cell is used instead, and the
record says so (``held_out`` False). The search itself is the pure
:func:`napari_unet.postprocess.calibration.calibrate`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import UNet
from ..postprocess import resolve_postprocess
from ..postprocess.calibration import Calibration, CalibrationSample, calibrate
from ..tiling import predict_tiled
from .data import TrainingData

__all__ = [
    "CALIBRATION_SHARE",
    "MIN_HELD_OUT",
    "validation_probabilities",
    "calibration_samples",
    "calibrate_model",
    "calibration_budget",
]

#: The calibration may take at most this share of the training budget.
CALIBRATION_SHARE = 0.1
#: With fewer held-out cells than this, all annotated cells calibrate the rule.
MIN_HELD_OUT = 10


def _predict_window(model, plane, box, device) -> np.ndarray:
    """Probabilities of ``box`` (y0, y1, x0, x1) of a plane, with the network's context."""
    h, p = model.halo, plane.pad
    y0, y1, x0, x1 = box
    window = plane.image[:, y0 + p - h : y1 + p + h, x0 + p - h : x1 + p + h]
    window = window[0] if window.shape[0] == 1 else window
    prob = predict_tiled(model, window, normalization=False, device=device)
    return prob[:, h:-h, h:-h] if h else prob


def validation_probabilities(
    model: UNet, data: TrainingData, device: torch.device | str | None
) -> list[np.ndarray]:
    """Probabilities of every validation crop, in the order of ``data.planes``."""
    return [
        _predict_window(model, plane, crop.box, device)
        for plane in data.planes
        for crop in plane.validation
    ]


def calibration_samples(
    model: UNet,
    data: TrainingData,
    device: torch.device | str | None,
    cached: list[np.ndarray] | None = None,
) -> tuple[list[CalibrationSample], bool]:
    """The windows the rule is calibrated on, and whether their cells are held out."""
    crops = [crop for plane in data.planes for crop in plane.validation]
    if data.validation_cells >= MIN_HELD_OUT:
        probs = cached if cached is not None else validation_probabilities(model, data, device)
        return [CalibrationSample(p, c.labels, c.mask) for p, c in zip(probs, crops)], True
    samples = []
    for plane in data.planes:
        if plane.annotation is None:
            continue
        H, W = plane.shape
        prob = _predict_window(model, plane, (0, H, 0, W), device)
        samples.append(CalibrationSample(prob, plane.annotation, plane.region))
    return samples, False


def calibration_budget(time_limit: float | None, elapsed: float) -> float:
    """Seconds the calibration may take: a share of the time budget, else of the time taken."""
    return CALIBRATION_SHARE * (time_limit if time_limit else elapsed)


def calibrate_model(
    model: UNet,
    data: TrainingData,
    device: torch.device | str | None,
    budget: float,
    cached: list[np.ndarray] | None = None,
) -> Calibration:
    """Calibrate the rule and write it into ``model.metadata["postprocess"]``.

    Too few cells: the model's rule is left as it was and the result's
    ``message`` says so in one sentence.
    """
    samples, held_out = calibration_samples(model, data, device, cached)
    previous = resolve_postprocess(model)
    found = calibrate(samples, held_out=held_out, time_limit=budget, previous=previous)
    record = found.record()
    if record is not None:
        model.metadata["postprocess"] = record
    return found
