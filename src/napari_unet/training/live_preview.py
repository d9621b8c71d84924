"""The probabilities of one box of a plane, exactly as the whole plane's prediction has them.

Live training shows the part of the image in view: :func:`box_probabilities`
predicts only that box, with the network's full context around it, mirrored
past the image border as :func:`~napari_unet.predict_tiled` mirrors it, and on
the same pooling grid, so the box equals the same crop of the whole plane's
prediction (to float rounding) at a fraction of its cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import NapariUnetError
from ..model import UNet
from ..padding import mirror_indices
from ..precision import Precision
from ..tiling import CPU_TILE, default_memory_budget, plan_tiles, predict_padded

__all__ = ["box_probabilities"]


def box_probabilities(
    model: UNet,
    image: np.ndarray,
    box: tuple[int, int, int, int],
    device: torch.device,
    precision: str | Precision = "fp32",
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """Softmax probabilities of ``box`` of a normalised plane.

    Parameters
    ----------
    model : UNet
        The network (moved to ``device``, run in eval mode, its mode restored).
    image : numpy.ndarray
        The whole plane, normalised, ``(C, H, W)`` float32.
    box : (y0, y1, x0, x1)
        The box in image pixels (clipped to the image; must keep a pixel).
    device : torch.device
    precision : str or Precision
        A resolved precision, as :func:`~napari_unet.tiling.tile_probabilities` takes.
    cancelled : callable or None
        Asked between two tiles; True abandons the prediction.

    Returns
    -------
    numpy.ndarray or None
        ``(K, y1 - y0, x1 - x0)`` float32, or None when cancelled.
    """
    h, w = image.shape[-2:]
    y0, y1, x0, x1 = max(0, box[0]), min(h, box[1]), max(0, box[2]), min(w, box[3])
    if y1 <= y0 or x1 <= x0:
        raise NapariUnetError(f"The box {tuple(box)} holds no pixel of the image.")
    f = model.pooling_factor
    ay, ax = y0 - y0 % f, x0 - x0 % f  # tiles on the whole plane's pooling grid
    max_step = CPU_TILE if device.type == "cpu" else None
    grid = plan_tiles(
        model, (y1 - ay, x1 - ax), memory_budget=default_memory_budget(device), max_step=max_step
    )
    (by, ay_after), (bx, ax_after) = grid.pad_widths()
    rows = mirror_indices(ay - by, y1 + ay_after, h)
    cols = mirror_indices(ax - bx, x1 + ax_after, w)
    padded = np.ascontiguousarray(image[:, rows][:, :, cols], dtype=np.float32)
    out = np.empty((model.n_classes, y1 - ay, x1 - ax), np.float32)
    model.to(device, memory_format=torch.channels_last)
    for _ in predict_padded(model, padded, grid, 1, device, out, precision=precision):
        if cancelled is not None and cancelled():
            return None
    return out[:, y0 - ay :, x0 - ax :]
