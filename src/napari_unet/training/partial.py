"""Partly painted cells: a scribble inside a nucleus is not a whole cell.

The sparse rule (:mod:`napari_unet.training.known`) teaches a thin ring around
each painted cell as background: that is where the cell ends. When the user
paints only part of a nucleus (a quick scribble over its middle), the ring lies
inside the nucleus, and the rest of the nucleus is taught as background; a few
such scribbles make the model unlearn (docs/benchmarks.md, "Partly painted
cells"). A cell is *partly painted* when the model training starts from is
confident that the cell goes on past its painted edge: at least
:data:`PARTIAL_SHARE` of its ring has a foreground probability of
:data:`CONFIDENT` or more, or (a tiny dab, whose ring is too thin to tell) its
paint is far smaller than the model's sure object there (:func:`far_smaller`).
Such a cell's ring (and the gaps it would make with
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
from ..rescaling import model_diameter_range
from .first_sight import ForegroundMemory, plane_key
from .live_preview import box_probabilities

__all__ = [
    "BAND",
    "CONFIDENT",
    "PARTIAL_SHARE",
    "PartialRule",
    "SMALL_SHARE",
    "overhang",
    "stray_dabs",
    "image_sentences",
    "partial_sentence",
    "far_smaller",
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
# A dab (a click or short stroke of a small brush inside a nucleus) is too small for its ring
# to tell: its 1-px ring may be half outside a nucleus it touches the edge of, or the model
# less than sure there. It is partly painted too when the model is sure of at least half of
# its pixels and its paint is at most this share of the model's sure object there. Measured
# with the bundled model on 30 cells each (docs/benchmarks.md, "Tiny dabs"): whole cells
# 0.34-1.0 (synthetic), 0.97-1.0 (HeLa t0); 5-px brush dabs 0.03-0.56, 27-29 of 30 under
# 0.3. On brightfield, where whole cells can be 0.09 of a wrong sure blob, the model is sure
# of at most 0.27 of their pixels, so the first condition keeps them whole.
SMALL_SHARE = 0.25
# A painted cell smaller than a disc of the model's smallest object diameter (or of this
# many pixels, when the model records no range), on what the model is sure is background,
# is a stray mark (a click that missed its nucleus): taught as a cell, five of them lit up
# the whole background within 20 steps. Such cells are left out, with a sentence.
STRAY_DIAMETER = 8.0
# Paint past the edge of a nucleus (a generous brush, a box round it) teaches the background
# next to it as cell: 20 steps on two such cells lit up half of the sample's background
# (docs/benchmarks.md, "Over-painted cells"). Where the start model is sure of an object in a
# cell (at least this share of its paint at CONFIDENT or more) its sure background within
# RIM px of the paint's edge is left unknown. Shares of the paint measured with the bundled
# model on 25 cells each: exact cells median 0.83 (synthetic), 0.86 (HeLa t0); boxes 2 px
# past a nucleus 0.43 / 0.48 (min 0.26 / 0.07); brightfield cells, which the model does not
# know, median 0.19, but 15-34% of them reach 0.3 (their sure-background rim is then left
# unknown too: measured on brightfield and rods, docs/benchmarks.md).
OVER_SHARE = 0.3
RIM = 4


def partly_painted(labels: np.ndarray, foreground: np.ndarray | None, ring: int) -> np.ndarray:
    """The ids of the painted cells that the model sees as part of something bigger.

    A cell is partly painted when at least :data:`PARTIAL_SHARE` of its ring has a
    foreground probability of :data:`CONFIDENT` or more (a scribble inside a
    nucleus), or when its paint is :func:`far_smaller` than the model's sure
    object at that place (a dab too small for its ring to tell).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    foreground : numpy.ndarray or None
        ``(H, W)`` foreground probability of the start model (only needed within
        :data:`BAND` pixels of the cells); None: no cell is flagged.
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
        y0, y1 = max(0, box[0].start - BAND), min(h, box[0].stop + BAND)
        x0, x1 = max(0, box[1].start - BAND), min(w, box[1].stop + BAND)
        window, fg = labels[y0:y1, x0:x1], foreground[y0:y1, x0:x1]
        if _ring_is_sure(window == i, window == 0, fg, ring) or far_smaller(window, i, fg):
            flagged.append(i)
    return np.asarray(flagged, np.int32)


def _ring_is_sure(cell: np.ndarray, unpainted: np.ndarray, fg: np.ndarray, ring: int) -> bool:
    """At least PARTIAL_SHARE of the ring (as the sparse rule makes it) is sure foreground."""
    around = (ndi.distance_transform_edt(~cell) <= ring) & unpainted
    return bool(around.any()) and float((fg[around] >= CONFIDENT).mean()) >= PARTIAL_SHARE


def far_smaller(window: np.ndarray, i: int, fg: np.ndarray) -> bool:
    """Whether cell ``i``'s paint is far smaller than the start model's sure object there.

    The model is sure (:data:`CONFIDENT`) of at least half of the painted pixels,
    and they are at most :data:`SMALL_SHARE` of the object: the painted cell with
    the sure foreground that touches it, less other painted cells.

    Parameters
    ----------
    window : numpy.ndarray
        Instance labels around the cell (0 unpainted).
    i : int
        The cell's id.
    fg : numpy.ndarray
        The start model's foreground probability on ``window``.
    """
    cell = window == i
    sure = fg >= CONFIDENT
    if SMALL_SHARE <= 0 or sure[cell].mean() < 0.5:
        return False
    parts = ndi.label(sure)[0]
    touched = np.unique(parts[ndi.binary_dilation(cell)])
    obj = cell | (np.isin(parts, touched[touched > 0]) & (window == 0))
    return int(cell.sum()) <= SMALL_SHARE * int(obj.sum())


def stray_dabs(labels: np.ndarray, foreground: np.ndarray | None, diameter: float) -> np.ndarray:
    """The ids of tiny painted cells that lie on what the start model is sure is background.

    A cell is a stray dab when its area is under a disc of ``diameter`` and the
    model's foreground probability is at most 1 - :data:`CONFIDENT` on at least
    half of its pixels. Training on it would teach the background as a cell.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    foreground : numpy.ndarray or None
        ``(H, W)`` foreground probability of the start model; None: none.
    diameter : float
        The smallest object diameter the model knows, in pixels.

    Returns
    -------
    numpy.ndarray
        Sorted int32 ids.
    """
    if foreground is None or not labels.any():
        return np.zeros(0, np.int32)
    areas = np.bincount(labels.ravel())
    ids = np.flatnonzero((areas > 0) & (areas < np.pi * (diameter / 2.0) ** 2))
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros(0, np.int32)
    sure_bg = ndi.mean(foreground <= 1.0 - CONFIDENT, labels, ids)
    return ids[np.asarray(sure_bg) >= 0.5].astype(np.int32)


def overhang(
    labels: np.ndarray, foreground: np.ndarray | None, skip: Any = ()
) -> np.ndarray | None:
    """Painted pixels past the edge of the object the start model is sure of.

    In each painted cell (but those in ``skip``) where at least :data:`OVER_SHARE`
    of the paint has a foreground probability of :data:`CONFIDENT` or more, the
    pixels within :data:`RIM` of the paint's edge where it is at most
    1 - :data:`CONFIDENT`. Neither cell nor background for training; the ring
    round the paint is still background.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    foreground : numpy.ndarray or None
        ``(H, W)`` foreground probability of the start model; None: none.
    skip : array of int
        Ids not to look at (the stray dabs, left out whole).

    Returns
    -------
    numpy.ndarray or None
        A boolean ``(H, W)`` mask, or None when no pixel is over-painted.
    """
    if foreground is None or not labels.any():
        return None
    ids = np.unique(labels)
    ids = ids[(ids > 0) & ~np.isin(ids, np.asarray(skip, dtype=labels.dtype))]
    if not len(ids):
        return None
    sure = np.asarray(ndi.mean(foreground >= CONFIDENT, labels, ids))
    over = np.isin(labels, ids[sure >= OVER_SHARE]) & (foreground <= 1.0 - CONFIDENT)
    if not over.any():  # exact paint, the common case: no distance transform per stroke
        return None
    over &= ndi.distance_transform_edt(labels > 0) <= RIM
    return over if over.any() else None


def _left_out_sentence(ids: list[int]) -> str:
    if not ids:
        return ""
    if len(ids) == 1:
        return (
            f"Cell {ids[0]} is left out: it is a tiny mark where the model sees background; "
            "paint the whole cell to train on it."
        )
    return (
        f"Cells {_names(ids)} are left out: they are tiny marks where the model sees "
        "background; paint whole cells to train on them."
    )


def _names(ids: list[int]) -> str:
    """Ids as words: 3 and 5; 1, 2, 3, 4, 5 and 3 more."""
    if len(ids) > 6:
        return ", ".join(str(i) for i in ids[:5]) + f" and {len(ids) - 5} more"
    return ", ".join(str(i) for i in ids[:-1]) + f" and {ids[-1]}"


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


def partial_sentence(ids: Any, left_out: Any = (), image: str | None = None) -> str:
    """What the user is told about partly painted and left-out cells ("" for none).

    Parameters
    ----------
    ids : iterable of int
        The partly painted cells.
    left_out : iterable of int
        The stray dabs (:func:`stray_dabs`), not trained on.
    image : str or None
        The image they are in, named when a training set has several.
    """
    ids, left = [int(i) for i in ids], [int(i) for i in left_out]
    said = []
    if len(ids) == 1:
        said.append(
            f"Cell {ids[0]} looks partly painted: its surroundings are not used as background; "
            "paint whole cells for the best result."
        )
    elif ids:
        said.append(
            f"Cells {_names(ids)} look partly painted: their surroundings are not used as "
            "background; paint whole cells for the best result."
        )
    said.append(_left_out_sentence(left))
    text = " ".join(x for x in said if x)
    if text and image is not None:
        text = f"In '{image}': {text[0].lower()}{text[1:]}"
    return text


def image_sentences(summary: list[dict[str, Any]]) -> str:
    """:func:`partial_sentence` per image of a training set's summary (named when several)."""
    several = len(summary) > 1
    said = [
        partial_sentence(
            s.get("partial", ()), s.get("left_out", ()), s.get("name") if several else None
        )
        for s in summary
    ]
    return " ".join(x for x in said if x)


class PartialRule:
    """:func:`partly_painted` with the start model's foreground, predicted once per area.

    Parameters
    ----------
    model : UNet
        The model training starts from; a frozen copy is kept (training the
        original in place does not move the decision).
    device : str or torch.device or None
        Where the copy predicts (None: where ``model`` is).
    memory : ForegroundMemory or None
        Where the foreground is kept, per image plane and area. Share one between
        the rules of successive rounds on the same images, so that an area judged
        once keeps the first model's judgement
        (:mod:`napari_unet.training.first_sight`); None: a new one of this rule's own.
    """

    def __init__(self, model: UNet, device: Any = None, memory: Any = None) -> None:
        known = model_diameter_range(model)
        self.smallest = float(known[0]) if known is not None else STRAY_DIAMETER
        self.model = copy.deepcopy(model).eval()
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.memory = memory if memory is not None else ForegroundMemory()

    def __call__(
        self, image: np.ndarray, labels: np.ndarray, ring: int, z: int = 0
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Plane ``z``'s partial ids, sure background, stray dabs and over-painted pixels.

        ``image`` is the plane normalised, ``(C, H, W)``; see :func:`partly_painted`,
        :func:`sure_background`, :func:`stray_dabs` (those are not flagged
        partly painted: the caller leaves them out) and :func:`overhang`.
        """
        fg = self.foreground(image, labels, ring, z)
        stray = stray_dabs(labels, fg, self.smallest)
        kept = np.where(np.isin(labels, stray), 0, labels) if len(stray) else labels
        ids = partly_painted(kept, fg, ring)
        return ids, sure_background(labels, fg, ids, ring), stray, overhang(labels, fg, stray)

    def foreground(self, image: np.ndarray, labels: np.ndarray, ring: int, z: int = 0):
        """The start model's foreground probability around the painted cells of plane ``z``.

        Predicted only where it was not yet (each painted cell's box grown by
        ``ring`` and :data:`BAND`), by this rule's model or, where the memory
        holds it, by the first model that judged the area; elsewhere 0.5
        (neither sure nor unsure). The plane is known by its pixels
        (:func:`~napari_unet.training.first_sight.plane_key`), so planes of
        another image are never judged by this one's foreground. The array is
        the memory's own: read it, never write to it.
        """
        h, w = labels.shape
        with self.memory.lock:  # another thread's rule fills the same plane once
            fg, done = self.memory.plane(plane_key(image, z), (h, w))
            for y0, y1, x0, x1 in _missing(labels, done, ring):
                with torch.no_grad():
                    probs = box_probabilities(self.model, image, (y0, y1, x0, x1), self.device)
                new = ~done[y0:y1, x0:x1]  # a box round many cells: what was judged stays
                fg[y0:y1, x0:x1][new] = 1.0 - probs[0][new]
                done[y0:y1, x0:x1] = True
            return fg


def _missing(labels: np.ndarray, done: np.ndarray, ring: int) -> list[tuple[int, ...]]:
    """The boxes still to predict round the painted cells (one box round them when many)."""
    h, w = labels.shape
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
    return missing
