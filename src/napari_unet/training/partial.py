"""Partly painted cells: a scribble inside a nucleus is not a whole cell.

The sparse rule (:mod:`napari_unet.training.known`) teaches a thin ring around
each painted cell as background: that is where the cell ends. When the user
paints only part of a nucleus (a quick scribble over its middle), the ring lies
inside the nucleus, and the rest of the nucleus is taught as background; a few
such scribbles make the model unlearn (docs/benchmarks.md, "Partly painted
cells"). A cell is *partly painted* when the model training starts from is
confident that the cell goes on past its painted edge: at least
:data:`PARTIAL_SHARE` of its ring has a foreground probability of
:data:`CONFIDENT` or more. Such a cell's ring (and the gaps it would make with
its neighbours) stays unknown; its painted pixels are still taught as
foreground. The decision uses the start model only (frozen), so it does not
drift with the training, and a model that knows nothing of the image (scratch,
another domain) is never confident enough to flag a whole cell.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from ..model import UNet
from .live_preview import box_probabilities

__all__ = [
    "BAND",
    "CONFIDENT",
    "PARTIAL_SHARE",
    "PartialRule",
    "partial_sentence",
    "partly_painted",
    "sure_background",
]

# Measured on 25 cells each of synthetic nuclei and HeLa t0 with the bundled model: the share
# of a whole cell's 3-px ring above 0.9 was at most 0.11 (HeLa 0.03); of a scribble covering
# 20-50% of a nucleus, 0.48-0.95 (HeLa 0.98-1.0). On brightfield, where the bundled model
# knows nothing, whole and partial overlap (0-0.46): the threshold flags almost none there.
CONFIDENT = 0.9
PARTIAL_SHARE = 0.5
# A partly painted cell's ring moves out to the edge of the start model's object, at most
# this many pixels from the paint: without any background, six scribbles drifted live mode
# to all foreground within 100 steps; a 20-px band of all the sure background instead
# tilted it towards background (docs/benchmarks.md).
BAND = 20


def partly_painted(labels: np.ndarray, foreground: np.ndarray | None, ring: int) -> np.ndarray:
    """The ids of the painted cells whose ring the model sees as foreground.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    foreground : numpy.ndarray or None
        ``(H, W)`` foreground probability of the start model (only needed within
        ``ring`` pixels of the cells); None: no cell is flagged.
    ring : int
        The ring's width in pixels (:func:`~napari_unet.training.known.ring_width`).

    Returns
    -------
    numpy.ndarray
        Sorted int32 ids (empty when every cell looks whole).
    """
    if foreground is None or not labels.any():
        return np.zeros(0, np.int32)
    h, w = labels.shape
    flagged = []
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        y0, y1 = max(0, box[0].start - ring), min(h, box[0].stop + ring)
        x0, x1 = max(0, box[1].start - ring), min(w, box[1].stop + ring)
        window = labels[y0:y1, x0:x1]
        # the ring as the sparse rule makes it, less other painted cells
        near = ndi.distance_transform_edt(window != i) <= ring
        around = near & (window == 0)
        if not around.any():
            continue
        sure = foreground[y0:y1, x0:x1][around] >= CONFIDENT
        if sure.mean() >= PARTIAL_SHARE:
            flagged.append(i)
    return np.asarray(flagged, np.int32)


def sure_background(
    labels: np.ndarray, foreground: np.ndarray | None, partial: np.ndarray, ring: int
) -> np.ndarray | None:
    """The ring of a partly painted cell, moved out to the edge of the model's object.

    The model's object is the connected part of foreground (probability above 0.5)
    that holds the painted pixels; the new ring is as wide as the old one (plus 2
    px for the blur of the model's edge), within :data:`BAND` of the paint, and only
    where the model is sure of background (probability at most 1 - CONFIDENT). None
    when no cell is partly painted. ``foreground`` is 0.5 where it was not predicted.
    """
    if foreground is None or not len(partial):
        return None
    painted = np.isin(labels, partial)
    parts = ndi.label(foreground > 0.5)[0]
    kept = np.unique(parts[painted])
    cell = painted | np.isin(parts, kept[kept > 0])
    near = ndi.distance_transform_edt(~cell) <= ring + 2
    near &= ndi.distance_transform_edt(~painted) <= BAND
    return near & ~cell & (labels == 0) & (foreground <= 1.0 - CONFIDENT)


def partial_sentence(ids: Any) -> str:
    """The one sentence that tells the user which cells look partly painted ("" for none)."""
    ids = [int(i) for i in ids]
    if not ids:
        return ""
    if len(ids) == 1:
        return (
            f"Cell {ids[0]} looks partly painted: its surroundings are not used as background; "
            "paint whole cells for the best result."
        )
    shown = ids if len(ids) <= 6 else ids[:5]
    names = ", ".join(str(i) for i in shown[:-1]) + f" and {shown[-1]}"
    if len(ids) > 6:
        names = ", ".join(str(i) for i in shown) + f" and {len(ids) - 5} more"
    return (
        f"Cells {names} look partly painted: their surroundings are not used as background; "
        "paint whole cells for the best result."
    )


class PartialRule:
    """:func:`partly_painted` with the start model's foreground, predicted once per area.

    Parameters
    ----------
    model : UNet
        The model training starts from; a frozen copy is kept (training the
        original in place does not move the decision).
    device : str or torch.device or None
        Where the copy predicts (None: where ``model`` is).
    """

    def __init__(self, model: UNet, device: Any = None) -> None:
        self.model = copy.deepcopy(model).eval()
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self._planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # z -> (fg, predicted)

    def __call__(
        self, image: np.ndarray, labels: np.ndarray, ring: int, z: int = 0
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The partly painted ids of plane ``z`` and the sure background around them.

        ``image`` is the plane normalised, ``(C, H, W)``; see :func:`partly_painted`
        and :func:`sure_background`.
        """
        fg = self.foreground(image, labels, ring, z)
        ids = partly_painted(labels, fg, ring)
        return ids, sure_background(labels, fg, ids, ring)

    def foreground(self, image: np.ndarray, labels: np.ndarray, ring: int, z: int = 0):
        """The start model's foreground probability around the painted cells of plane ``z``.

        Predicted only where it was not yet (each painted cell's box grown by
        ``ring`` and :data:`BAND`); elsewhere 0.5 (neither sure nor unsure).
        """
        h, w = labels.shape
        fg, done = self._planes.get(z, (None, None))
        if fg is None or fg.shape != (h, w):
            fg, done = np.full((h, w), 0.5, np.float32), np.zeros((h, w), bool)
            self._planes[z] = (fg, done)
        m = BAND + 8  # the band, and a margin: a stroke that grows a cell rarely needs more
        missing = []
        for box in ndi.find_objects(labels):
            if box is None:
                continue
            y0, y1 = max(0, box[0].start - ring), min(h, box[0].stop + ring)
            x0, x1 = max(0, box[1].start - ring), min(w, box[1].stop + ring)
            if not done[y0:y1, x0:x1].all():
                missing.append((max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)))
        if len(missing) > 4:  # many cells (a Fine-tune): one prediction of the box around them
            missing = [tuple(f(b[k] for b in missing) for k, f in enumerate((min, max, min, max)))]
        for y0, y1, x0, x1 in missing:
            with torch.no_grad():
                probs = box_probabilities(self.model, image, (y0, y1, x0, x1), self.device)
            fg[y0:y1, x0:x1] = 1.0 - probs[0]
            done[y0:y1, x0:x1] = True
        return fg
