"""Where the loss looks: what the user told us, and nothing else.

A painted cell says "this is a cell"; it says nothing about the unpainted pixels
far from it, which may well be cells nobody painted yet. So, unless the user
says an image is completely annotated (or marks where it is, with an annotated
region), the loss covers only:

- the painted cells;
- a thin background *ring* around each painted cell (:func:`ring_width`): the
  cell's edge is where the network must learn to stop;
- the background *gaps* between painted cells that the weight map stresses:
  pixels whose distances to the two nearest painted cells add up to at most
  ``GAP_REACH * sigma`` (:func:`known_area`);
- the annotated region, when there is one ("annotation complete here").

The rest is unknown and carries no loss. With ``complete=True`` (the paper's
setting, dense ground truth) every unpainted pixel is background, as before.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..weightmap import unet_weight_map

__all__ = ["GAP_REACH", "RING_SHARE", "known_area", "ring_width"]

# Gaps between two painted cells count as background up to d1 + d2 <= GAP_REACH * sigma
# (7.5 px for the paper's sigma of 5): there the border term is above exp(-1.125), a third
# of w0, and a gap that narrow cannot hold an unpainted cell of the smallest size the
# bundled model knows (8 px across).
GAP_REACH = 1.5
# The ring is at most this share of the median painted cell's diameter, so that on small
# cells it does not reach across to a touching, unpainted neighbour.
RING_SHARE = 0.2


def ring_width(labels: np.ndarray, sigma: float) -> int:
    """Width in pixels of the background ring around painted cells.

    Half the weight map's ``sigma`` (3 px for the paper's 5): the border term is
    steepest within that distance of a cell, so that is where the edge is learnt;
    at most :data:`RING_SHARE` of the median painted cell's diameter (an
    unpainted cell that touches a painted one loses at most that much of its
    outline to the ring); at least 1.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    sigma : float
        The weight map's border width.

    Returns
    -------
    int
    """
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    by_sigma = int(np.ceil(sigma / 2))
    if not len(areas):
        return max(1, by_sigma)
    diameter = 2.0 * np.sqrt(float(np.median(areas)) / np.pi)
    return max(1, min(by_sigma, int(round(RING_SHARE * diameter))))


def known_area(
    labels: np.ndarray,
    sigma: float,
    region: np.ndarray | None = None,
    ring: int | None = None,
    partial: np.ndarray | None = None,
    left_out: np.ndarray | None = None,
    sure: np.ndarray | None = None,
    overhang: np.ndarray | None = None,
) -> np.ndarray:
    """The pixels a sparse annotation says something about (a boolean mask).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` instance labels, 0 unpainted.
    sigma : float
        The weight map's border width (decides the ring and the gaps).
    region : numpy.ndarray or None
        Where the user said the annotation is complete; added as it is.
    ring : int or None
        The ring's width; None: :func:`ring_width` of ``labels`` (give the whole
        plane's when ``labels`` is a window of it).
    partial : array of int or None
        Ids of partly painted cells (:mod:`napari_unet.training.partial`): their
        pixels count, their ring and their gaps do not (they lie inside the cell).
    left_out : array of int or None
        Ids of stray dabs (:func:`~napari_unet.training.partial.stray_dabs`): neither
        cell nor background, and no ring.
    sure : numpy.ndarray or None
        The start model's sure background around partly painted cells
        (:func:`~napari_unet.training.partial.sure_background`), added as a region is.
    overhang : numpy.ndarray or None
        Painted pixels past the edge of the start model's sure object
        (:func:`~napari_unet.training.partial.overhang`): left unknown; the ring
        still lies round the paint.

    Returns
    -------
    numpy.ndarray
        True on painted cells, the ring around them, the narrow gaps between
        them, and the region.
    """
    if overhang is not None and overhang.any():
        return known_area(labels, sigma, region, ring, partial, left_out, sure) & ~overhang
    if left_out is not None and len(left_out):
        unknown = np.isin(labels, left_out)
        kept = np.where(unknown, 0, labels)
        return known_area(kept, sigma, region, ring, partial, sure=sure) & ~unknown
    if sure is not None:
        region = sure if region is None else region.astype(bool) | sure
    cells = labels > 0
    known = cells.copy() if region is None else cells | region.astype(bool)
    if not cells.any():
        return known
    width = ring_width(labels, sigma) if ring is None else ring
    if partial is not None and len(partial):
        labels = np.where(np.isin(labels, partial), 0, labels)
        cells = labels > 0
        if not cells.any():
            return known
    known |= ndi.distance_transform_edt(~cells) <= width
    # the border term with w0 = 1 and no class weights: exp(-(d1 + d2)^2 / (2 sigma^2))
    border = unet_weight_map(labels, w0=1.0, sigma=sigma, class_weights=(0.0, 0.0))
    known |= border >= np.exp(-(GAP_REACH**2) / 2.0)
    return known
