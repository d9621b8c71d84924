"""The border term of the weight map, exactly, one band of rows at a time (numba).

For every background pixel, ``d1`` and ``d2`` (distances to the nearest and the
second-nearest cell) come from a separable "two nearest distinct cells" transform:
vertical scans keep, per column, the two nearest pixels of different cells
(:func:`_scan_below`, :func:`_nearest_in_columns`), and a horizontal search
(:func:`_row_weights`) combines the columns within the cut-off. See
:mod:`napari_unet.weightmap` for the formula and :func:`weight_rows` for why it is exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["weight_rows"]

# Squared distance meaning "no cell within reach"; far above any real one.
_FAR = np.int64(1) << np.int64(62)


@njit(cache=True, nogil=True)
def weight_rows(lab, out, i0, i1, w_bg, w_fg, w0, inv_two_sigma_sq, cutoff):  # pragma: no cover
    """Fill rows ``i0:i1`` of ``out`` with ``w_c`` plus the border term, for int64 labels.

    Exactness rests on two facts. (1) In each column, only the nearest pixels of the two
    nearest distinct cells can matter to a pixel: any third cell of that column is beaten
    there by two distinct cells, one of which is not the pixel's nearest. (2) A column at
    horizontal offset ``dj`` adds only squared distances >= ``dj**2``, so the search
    outwards stops once that cannot change the two nearest, or once ``d1 + d2`` is sure
    to exceed the cut-off. (3) ``d1`` is 1-Lipschitz, so a pixel whose left or upper
    neighbour is known to lie more than half the cut-off plus one from every cell is
    skipped: its term is negligible. Rows farther than the cut-off never matter, so a
    band of rows needs only that margin above and below it: bands run independently.
    """
    h, w = lab.shape
    reach = min(int(cutoff), h + w)  # largest offset, in pixels, that can still matter
    below1, below2 = _scan_below(lab, i0, i1, reach)
    # Downward scan: rows of the nearest foreground pixel at or above each pixel and of
    # the nearest one above it that belongs to another cell (-1: none), with their ids.
    row1 = np.full(w, -1, np.int32)
    row2 = np.full(w, -1, np.int32)
    id1 = np.zeros(w, np.int64)
    id2 = np.zeros(w, np.int64)
    # per column, squared vertical distances and ids of the two nearest distinct cells
    g1 = np.empty(w, np.int64)
    c1 = np.empty(w, np.int64)
    g2 = np.empty(w, np.int64)
    c2 = np.empty(w, np.int64)
    near_above = np.zeros(w)  # lower bounds on d1 in the row above (0: unknown)
    for i in range(max(0, i0 - reach), i1):
        for j in range(w):
            v = lab[i, j]
            if v != 0:
                if row1[j] >= 0 and id1[j] != v:
                    row2[j] = row1[j]
                    id2[j] = id1[j]
                row1[j] = i
                id1[j] = v
        if i < i0:
            continue
        down1, down2 = below1[i - i0], below2[i - i0]
        _nearest_in_columns(lab, i, row1, row2, id1, id2, down1, down2, reach, g1, c1, g2, c2)
        weights = (w_bg, w_fg, w0, inv_two_sigma_sq)
        _row_weights(lab, out, i, g1, c1, g2, c2, near_above, weights, cutoff, reach)


@njit(cache=True, nogil=True)
def _scan_below(lab, i0, i1, reach):  # pragma: no cover
    """Upward scan over rows ``i0:i1`` (and ``reach`` below them).

    Returns the rows of the nearest foreground pixel at or below each pixel and of the
    nearest one below it that belongs to another cell (-1: none).
    """
    h, w = lab.shape
    below1 = np.empty((i1 - i0, w), np.int32)
    below2 = np.empty((i1 - i0, w), np.int32)
    row1 = np.full(w, -1, np.int32)
    row2 = np.full(w, -1, np.int32)
    id1 = np.zeros(w, np.int64)
    for i in range(min(h, i1 + reach) - 1, i0 - 1, -1):
        for j in range(w):
            v = lab[i, j]
            if v != 0:
                if row1[j] >= 0 and id1[j] != v:
                    row2[j] = row1[j]
                row1[j] = i
                id1[j] = v
        if i < i1:
            for j in range(w):  # loops, not slice assignments: those compile slowly
                below1[i - i0, j] = row1[j]
                below2[i - i0, j] = row2[j]
    return below1, below2


@njit(cache=True, nogil=True)
def _nearest_in_columns(
    lab, i, row1, row2, id1, id2, below1, below2, reach, g1, c1, g2, c2
):  # pragma: no cover
    """The two nearest distinct cells of each column of row ``i``, within reach.

    Fills the squared vertical distances ``g1, g2`` and ids ``c1, c2`` (_FAR: none),
    merging what lies above (``row*``, ``id*``) and below (``below*``).
    """
    for j in range(lab.shape[1]):
        v = lab[i, j]
        if v != 0:
            # The pixel's own cell is nearest; the second is the nearer of the other
            # cells just above and just below.
            g1[j] = 0
            c1[j] = v
            up2 = _square_within(i - row2[j], row2[j], reach)
            r = below2[j]
            down2 = _square_within(r - i, r, reach)
            if up2 <= down2:
                g2[j] = up2
                c2[j] = id2[j]
            else:
                g2[j] = down2
                c2[j] = lab[r, j]
            continue
        up1 = _square_within(i - row1[j], row1[j], reach)
        up2 = _square_within(i - row2[j], row2[j], reach)
        r = below1[j]
        down1 = _square_within(r - i, r, reach)
        dn_id1 = lab[r, j] if r >= 0 else 0
        r = below2[j]
        down2 = _square_within(r - i, r, reach)
        dn_id2 = lab[r, j] if r >= 0 else 0
        if up1 <= down1:
            g1[j] = up1
            c1[j] = id1[j]
            other, other_id = (down1, dn_id1) if dn_id1 != id1[j] else (down2, dn_id2)
            if up2 <= other:
                g2[j] = up2
                c2[j] = id2[j]
            else:
                g2[j] = other
                c2[j] = other_id
        else:
            g1[j] = down1
            c1[j] = dn_id1
            other, other_id = (up1, id1[j]) if id1[j] != dn_id1 else (up2, id2[j])
            if down2 <= other:
                g2[j] = down2
                c2[j] = dn_id2
            else:
                g2[j] = other
                c2[j] = other_id


@njit(cache=True, nogil=True)
def _row_weights(
    lab, out, i, g1, c1, g2, c2, near_above, weights, cutoff, reach
):  # pragma: no cover
    """Horizontal search: each background pixel of row ``i`` combines the columns around it.

    ``weights`` is ``(w_bg, w_fg, w0, 1 / (2 sigma**2))``.
    """
    w_bg, w_fg, w0, inv_two_sigma_sq = weights
    w = lab.shape[1]
    half = 0.5 * cutoff
    near_left = 0.0  # lower bound on d1 of the pixel to the left
    for j0 in range(w):
        if lab[i, j0] != 0:
            out[i, j0] = w_fg
            near_left = 0.0
            near_above[j0] = 0.0
            continue
        # d1 changes by at most 1 between neighbours: deep in the background, the
        # bounds of the left and upper neighbours can show the term is negligible.
        near = max(near_left, near_above[j0]) - 1.0
        if near > half:
            out[i, j0] = w_bg
            near_left = near
            near_above[j0] = near
            continue
        b1 = _FAR
        b2 = _FAR
        l1 = np.int64(0)
        l2 = np.int64(0)
        dj = 0
        while dj <= reach:
            dj_sq = np.int64(dj) * np.int64(dj)
            if dj_sq > b2:
                break  # every remaining candidate is farther than both found
            # Past half the cut-off, a new candidate could only enter a pair whose sum
            # exceeds the cut-off, so the term is negligible. Go on only while no cell
            # is nearer than dj: that raises the bound that lets neighbours skip.
            if dj > half and dj > cutoff - math.sqrt(b1) and dj_sq > b1:
                break
            for j in (j0 - dj, j0 + dj):
                if j < 0 or j >= w or (dj == 0 and j > j0) or g1[j] == _FAR:
                    continue
                b1, l1, b2, l2 = _insert(dj_sq + g1[j], c1[j], b1, l1, b2, l2)
                if g2[j] < _FAR:
                    b1, l1, b2, l2 = _insert(dj_sq + g2[j], c2[j], b1, l1, b2, l2)
            dj += 1
        # Columns closer than dj are all seen, so d1 >= min(sqrt(b1), dj).
        near = min(math.sqrt(b1), float(dj))
        near_left = near
        near_above[j0] = near
        value = w_bg
        if b2 < _FAR:
            s = math.sqrt(b1) + math.sqrt(b2)
            if s <= cutoff:
                value += w0 * math.exp(-s * s * inv_two_sigma_sq)
        out[i, j0] = value


@njit(cache=True, nogil=True)
def _square_within(distance, row, reach):  # pragma: no cover
    """``distance**2`` for a found pixel (``row >= 0``) within reach, else _FAR."""
    if row < 0 or distance > reach:
        return _FAR
    return np.int64(distance) * np.int64(distance)


@njit(cache=True, nogil=True)
def _insert(d, cell, b1, l1, b2, l2):  # pragma: no cover
    """Add candidate ``(d, cell)`` to the two nearest distinct cells ``(b1, l1), (b2, l2)``."""
    if cell == l1:
        if d < b1:
            b1 = d
    elif d < b1:
        b2 = b1
        l2 = l1
        b1 = d
        l1 = cell
    elif d < b2:
        # Also right when cell == l2: its distance just got smaller.
        b2 = d
        l2 = cell
    return b1, l1, b2, l2
