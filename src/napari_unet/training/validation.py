"""Scoring a model on the held-out cells of the annotation (loss, mean IoU, AP@0.5)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import instance_scores
from ..model import UNet
from ..postprocess import label_instances, resolve_postprocess
from .calibrate import validation_probabilities
from .config import Validation
from .data import TrainingData

__all__ = ["validate"]


def validate(
    model: UNet,
    data: TrainingData,
    min_size: int,
    device: torch.device,
    cached: list[np.ndarray] | None = None,
) -> Validation | None:
    """Loss, mean IoU and AP@0.5 on the held-out cells; None without validation data.

    The objects are made by the rule every entry point uses for this model
    (:func:`napari_unet.postprocess.resolve_postprocess`), so a round scores
    what Predict then shows; ``min_size`` applies when the model recommends
    none. Predicted objects mostly outside the annotated region are not scored.
    ``cached``: the crops' probabilities, when already predicted (in the order of
    :func:`napari_unet.training.calibrate.validation_probabilities`).
    """
    if not data.has_validation:
        return None
    options = resolve_postprocess(model, fallback={"min_size": min_size})
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
