"""Scoring a model on the held-out cells of the annotation (loss, mean IoU, AP@0.5).

:func:`compare_to_start` is the guard of every round: a new model is put in use
only when it scores no worse than the model it started from on the same
held-out cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import instance_scores
from ..model import UNet
from ..postprocess import label_instances, resolve_postprocess
from ..postprocess.calibration import CalibrationSample, calibrate
from .calibrate import validation_probabilities
from .config import Validation
from .data import TrainingData

__all__ = ["IOU_TOLERANCE", "Comparison", "compare_to_start", "start_score_calibrated", "validate"]

# At equal AP@0.5, a mean IoU lower by more than this makes the new model worse.
IOU_TOLERANCE = 0.02


def validate(
    model: UNet,
    data: TrainingData,
    min_size: int,
    device: torch.device,
    cached: list[np.ndarray] | None = None,
    rule: dict | None = None,
) -> Validation | None:
    """Loss, mean IoU and AP@0.5 on the held-out cells; None without validation data.

    The objects are made by the rule every entry point uses for this model
    (:func:`napari_unet.postprocess.resolve_postprocess`), so a round scores
    what Predict then shows; ``min_size`` applies when the model recommends
    none. Predicted objects mostly outside the annotated region are not scored.
    ``cached``: the crops' probabilities, when already predicted (in the order of
    :func:`napari_unet.training.calibrate.validation_probabilities`). ``rule``: score
    with these instance options instead of the model's (unset ones: the defaults).
    """
    if not data.has_validation:
        return None
    if rule is None:
        options = resolve_postprocess(model, fallback={"min_size": min_size})
    else:
        options = resolve_postprocess(None, rule, fallback={"min_size": min_size})
    total_loss, counted = 0.0, 0
    tp = n_true = n_pred = 0
    iou_sum = 0.0
    probs = cached if cached is not None else validation_probabilities(model, data, device)
    crops = [crop for plane in data.planes for crop in plane.validation]
    for crop, prob in zip(crops, probs):
        target = torch.from_numpy(crop.target.astype(np.int64))[None]
        weights = torch.from_numpy(crop.weights)[None]
        logp = torch.from_numpy(np.log(np.clip(prob, 1e-7, 1.0)))[None]
        ce = F.nll_loss(logp, target, reduction="none")
        total_loss += float((ce * weights).sum())
        counted += int((weights > 0).sum())
        pred = label_instances(prob, **options)
        pred = _drop_outside(pred, crop.mask)
        s = instance_scores(crop.labels, pred)
        tp, n_true, n_pred = tp + s.tp, n_true + s.n_true, n_pred + s.n_pred
        iou_sum += s.mean_iou * s.n_true
    denom = n_true + n_pred - tp
    return Validation(
        loss=total_loss / max(counted, 1),
        mean_iou=iou_sum / n_true if n_true else 1.0,
        ap50=tp / denom if denom else 1.0,
        n_true=n_true,
        n_pred=n_pred,
    )


def start_score_calibrated(
    data: TrainingData,
    probabilities: list[np.ndarray],
    min_size: int,
    previous: dict,
    budget: float | None,
    rules: int | None = None,
) -> Validation | None:
    """The start model's score with a rule calibrated on the same held-out cells.

    After training, the new model is scored with a rule calibrated on the held-out
    cells; scored on the cells it was fitted to, that rule has an edge the start
    model's plain rule lacks. Calibrating the start model's rule on the same cells
    (``probabilities``: its predictions of them, from before the first step) puts
    both on one footing for :func:`compare_to_start`. ``budget`` (seconds) or,
    when given, ``rules`` (labellings) bounds the search, as in
    :func:`~napari_unet.postprocess.calibration.calibrate`. None with too few cells.
    """
    crops = [crop for plane in data.planes for crop in plane.validation]
    samples = [CalibrationSample(p, c.labels, c.mask) for p, c in zip(probabilities, crops)]
    found = calibrate(
        samples, held_out=True, time_limit=budget, previous=previous, rule_limit=rules
    )
    if found.rule is None:
        return None
    return validate(None, data, min_size, None, cached=probabilities, rule=found.rule)


def _drop_outside(pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove predicted objects mostly outside the annotated region (they cannot be scored)."""
    if mask.all():
        return pred
    n = int(pred.max())
    inside = np.bincount(pred[mask].ravel(), minlength=n + 1)
    total = np.bincount(pred.ravel(), minlength=n + 1)
    keep = inside * 2 >= total
    keep[0] = False
    return np.where(keep[pred], pred, 0)


@dataclass(frozen=True)
class Comparison:
    """A new model against the model it started from, on the same held-out cells.

    Attributes
    ----------
    new, start : Validation or None
        The two scores (None: nothing was held out).
    worse : bool
        The new model scored lower: lower AP@0.5, or the same AP@0.5 and a mean
        IoU lower by more than :data:`IOU_TOLERANCE`. False when there is
        nothing to compare on.
    """

    new: Validation | None
    start: Validation | None
    worse: bool

    @property
    def compared(self) -> bool:
        """Whether both models were scored on at least one held-out cell."""
        return self.new is not None and self.start is not None and self.new.n_true > 0

    def scores(self) -> str:
        """The scores in words: "scored 0.61 against 0.74 for the model it started from (...)"."""
        if not self.compared:
            return "could not be compared with the model it started from: no held-out human cell"
        n = self.new.n_true
        return (
            f"scored {self.new.ap50:.2f} against {self.start.ap50:.2f} for the model it "
            f"started from (AP@0.5 on {n} held-out cell{'s' if n != 1 else ''})"
        )

    def sentence(self, name: str) -> str:
        """One sentence for the user; ``name`` names the new model ("Round 3")."""
        kept = "; kept the earlier model in use" if self.worse else ""
        return f"{name} {self.scores()}{kept}."


def compare_to_start(new: Validation | None, start: Validation | None) -> Comparison:
    """Whether ``new`` is worse than ``start`` on the same held-out cells.

    Parameters
    ----------
    new : Validation or None
        The trained model's score.
    start : Validation or None
        The start model's score on the same cells (``Trainer.baseline``).

    Returns
    -------
    Comparison
    """
    if new is None or start is None or new.n_true == 0:
        return Comparison(new, start, False)
    lower_ap = new.ap50 < start.ap50 - 1e-9
    same_ap = abs(new.ap50 - start.ap50) <= 1e-9
    lower_iou = new.mean_iou < start.mean_iou - IOU_TOLERANCE
    return Comparison(new, start, bool(lower_ap or (same_ap and lower_iou)))
