"""The paper's loss: pixel-wise softmax cross-entropy weighted by the boundary weight map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["weighted_cross_entropy"]


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The paper's loss: softmax cross-entropy, each pixel weighted by ``weights``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, K, H, W)`` network output.
    target : torch.Tensor
        ``(N, H, W)`` class indices (int64).
    weights : torch.Tensor
        ``(N, H, W)`` the weight map; 0 where a pixel must not count.

    Returns
    -------
    torch.Tensor
        Scalar: the weighted sum divided by the number of pixels that count, so
        the scale does not depend on the tile size or the annotated share.
    """
    ce = F.cross_entropy(logits, target, reduction="none")
    counted = (weights > 0).sum().clamp_min(1)
    return (ce * weights).sum() / counted
