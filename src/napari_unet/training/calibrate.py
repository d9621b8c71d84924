"""After training: the instance rule calibrated on the user's cells, into the model's metadata.

The cells are the held-out validation cells (the stable split of
:mod:`napari_unet.training.split`, whatever it decides counts), their
probabilities cached once and shared with the final validation. With fewer than
:data:`MIN_HELD_OUT` held out, every annotated cell is used instead, and the
record says so (``held_out`` False). Cells that look partly painted are never
scored: a stroke inside a nucleus is no outline, and a rule fitted to strokes
would cut every nucleus down to one. The search itself is the pure
:func:`napari_unet.postprocess.calibration.calibrate`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..model import UNet
from ..postprocess import resolve_postprocess
from ..postprocess.calibration import Calibration, CalibrationSample, calibrate
from ..tiling import predict_tiled
from .data import TrainingData, validation_windows

__all__ = [
    "CALIBRATION_SHARE",
    "MIN_HELD_OUT",
    "validation_probabilities",
    "calibration_samples",
    "calibrate_model",
    "calibration_budget",
    "calibration_bound",
]

#: The calibration may take at most this share of the training budget.
CALIBRATION_SHARE = 0.1
#: With fewer held-out cells than this, all annotated cells calibrate the rule.
MIN_HELD_OUT = 10
#: Pixels around the scored region that its calibration windows include.
WINDOW_MARGIN = 32


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
    crops = [(plane, crop) for plane in data.planes for crop in plane.validation]
    if data.validation_cells >= MIN_HELD_OUT:
        probs = cached if cached is not None else validation_probabilities(model, data, device)
        return [
            CalibrationSample(p, *_whole_cells(c.labels, c.mask, plane.partial))
            for p, (plane, c) in zip(probs, crops)
        ], True
    samples = []
    for plane in data.planes:
        if plane.annotation is None:
            continue
        annotation, scored = _whole_cells(plane.annotation, plane.region, plane.partial)
        # only around what is scored: a few painted cells of a large image are a few windows
        for y0, y1, x0, x1 in _around(scored, model.halo) if scored.any() else ():
            prob = _predict_window(model, plane, (y0, y1, x0, x1), device)
            cells, region = annotation[y0:y1, x0:x1], scored[y0:y1, x0:x1]
            samples.append(CalibrationSample(prob, cells, region))
    return samples, False


def _whole_cells(
    cells: np.ndarray, region: np.ndarray, partial: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``cells`` and ``region`` without the partly painted cells (nor where they lie)."""
    if not len(partial):
        return cells, region
    stroke = np.isin(cells, partial)
    return np.where(stroke, 0, cells), region & ~stroke


def _around(region: np.ndarray, context: int) -> list[tuple[int, int, int, int]]:
    """Windows covering ``region``, each grown by :data:`WINDOW_MARGIN` px within the plane.

    The margin keeps whole the predicted objects that reach a little past the
    scored region, as they are on the whole plane.
    """
    H, W = region.shape
    m = WINDOW_MARGIN
    return [
        (max(0, y0 - m), min(H, y1 + m), max(0, x0 - m), min(W, x1 + m))
        for y0, y1, x0, x1 in validation_windows(region, context)
    ]


def calibration_budget(time_limit: float | None, elapsed: float) -> float:
    """Seconds the calibration may take: a share of the time budget, else of the time taken."""
    return CALIBRATION_SHARE * (time_limit if time_limit else elapsed)


def calibration_bound(budget: float | None, rules: int | None) -> str:
    """How the search is bounded, in words: a count of labellings, else seconds."""
    if rules:
        return f"at most {rules} labellings"
    return f"at most {budget or 0:.0f} s, {CALIBRATION_SHARE:.0%} of the training budget"


def calibrate_model(
    model: UNet,
    data: TrainingData,
    device: torch.device | str | None,
    budget: float | None,
    cached: list[np.ndarray] | None = None,
    rules: int | None = None,
) -> Calibration:
    """Calibrate the rule and write it into ``model.metadata["postprocess"]``.

    ``budget`` bounds the search in seconds; ``rules``, when given, in labellings
    instead (:attr:`~napari_unet.training.config.TrainConfig.calibration_rules`).
    Too few cells: the model's rule is left as it was and the
    result's ``message`` says so in one sentence.
    """
    samples, held_out = calibration_samples(model, data, device, cached)
    previous = resolve_postprocess(model)
    found = calibrate(
        samples, held_out=held_out, time_limit=budget, previous=previous, rule_limit=rules
    )
    if found.rule is None and any(len(p.partial) for p in data.planes):
        found = replace(
            found,
            message="Too few whole cells to calibrate the object rule on (partly painted "
            "cells do not count); the previous rule is kept.",
        )
    record = found.record()
    if record is not None:
        model.metadata["postprocess"] = record
    return found
