"""Moving image, labels and weights together: one sampling grid, one resampling.

Every geometric change (arbitrary rotation, shift, elastic field) is folded into
one sampling grid, built by a single small matrix product from cached matrices,
and the image is resampled once with ``torch.nn.functional.grid_sample`` (split
into row bands so that all CPU threads work). Flips and quarter turns are exact
index moves. Content from past the border is mirrored.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .fields import upsample_matrix

__all__ = [
    "affine",
    "as_float",
    "contiguous_copy",
    "draw_quarter_turns",
    "flip_rot",
    "float_or_none",
    "warp",
]


@functools.lru_cache(maxsize=64)
def left_matrix(h: int, g: int) -> np.ndarray:
    """``[U_y | 1 | y]``: the row factor of the sampling grid, shared by all calls."""
    left = np.empty((h, g + 2), dtype=np.float32)
    left[:, :g] = upsample_matrix(h, g)
    left[:, g] = 1.0
    left[:, g + 1] = np.arange(h)
    left.setflags(write=False)
    return left


def affine(h: int, w: int, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)):
    """``(M, t)`` mapping output pixel ``(y, x)`` to source ``M @ (y, x) + t``.

    Rotates the content by ``angle`` degrees counter-clockwise as displayed (y down, like
    ``np.rot90``) about the image centre, then moves it by ``shift`` pixels.
    """
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    mat = np.array([[c, s], [-s, c]])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    t = centre - mat @ (centre + np.asarray(shift, dtype=np.float64))
    return mat, t


# Rows per band below which splitting the grid for threads is not worth it.
_MIN_BAND_ROWS = 32


def _sampling_grid(h: int, w: int, mat, t, coarse) -> torch.Tensor:
    """Normalised ``grid_sample`` grid, ``(bands, rows, W, 2)``; rows past ``H`` are padding."""
    g = 2 if coarse is None else coarse.shape[1]
    left = left_matrix(h, g)
    # Source coordinate k (0 = y, 1 = x) is left @ rk: elastic rows, a constant row, a y row.
    xs = np.arange(w, dtype=np.float64)
    rows = np.zeros((2, g + 2, w))
    if coarse is not None:
        ux = upsample_matrix(w, g)
        rows[:, :g] = coarse @ ux.T
    rows[:, g] = mat[:, 1:2] * xs + t[:, None]
    rows[:, g + 1] = mat[:, 0:1]
    # To grid_sample's [-1, 1] (align_corners=True); a 1-pixel axis maps to its only pixel.
    for k, n in enumerate((h, w)):
        scale = 2.0 / (n - 1) if n > 1 else 0.0
        rows[k] *= scale
        rows[k, g] -= 1.0
    right = np.empty((g + 2, w, 2), dtype=np.float32)
    right[..., 0] = rows[1]  # grid_sample wants (x, y)
    right[..., 1] = rows[0]

    bands = max(1, min(torch.get_num_threads(), h // _MIN_BAND_ROWS))
    per = -(-h // bands)
    grid = np.empty((bands * per, w, 2), dtype=np.float32)
    grid[h:] = 0.0  # padding rows: any valid position
    # einsum runs on one thread: a threaded BLAS call this small mostly waits for a free core
    # when other programs share the CPUs
    np.einsum("hk,kw->hw", left, right.reshape(g + 2, 2 * w), out=grid[:h].reshape(h, 2 * w))
    return torch.from_numpy(grid).view(bands, per, w, 2)


def _sample(img: torch.Tensor, grid: torch.Tensor, mode: str, h: int) -> np.ndarray:
    """Resample ``img`` (C, H, W) on ``grid`` into ``(C, H, W)``.

    The cubic image is the costly step: its grid's row bands run as a batch, which torch spreads
    over its threads. The cheap nearest and linear passes run on one thread, since waiting for
    a thread that another program holds would cost them more than it saves.
    """
    bands, per, w, _ = grid.shape
    if mode != "bicubic" and bands > 1:
        grid, bands, per = grid.view(1, bands * per, w, 2)[:, :h], 1, h
    src = img.unsqueeze(0).expand(bands, *img.shape) if bands > 1 else img.unsqueeze(0)
    out = F.grid_sample(src, grid, mode=mode, padding_mode="reflection", align_corners=True)
    # (bands, C, per, W) -> (C, bands * per, W), a view for one channel -> crop padding rows
    out = out.numpy()
    if out.shape[1] > 1 and bands > 1:
        out = np.ascontiguousarray(out.transpose(1, 0, 2, 3))
    return out.reshape(img.shape[0], bands * per, w)[:, :h]


@functools.lru_cache(maxsize=2)  # training's tile size and the preview's; can be large
def _index_image(h: int, w: int) -> torch.Tensor:
    """Flat pixel index as an image; float32 holds integers exactly up to 2**24."""
    dtype = torch.float32 if h * w <= 1 << 24 else torch.float64
    return torch.arange(h * w, dtype=dtype).view(1, h, w)


def _gather_labels(labels: np.ndarray, grid: torch.Tensor, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour labels by integer gather: exact for any dtype and id.

    grid_sample in nearest mode picks (and mirrors) the source pixel of every output pixel from
    an image of pixel indices; the labels are then taken at those indices.
    """
    index = _index_image(h, w)
    if index.dtype != grid.dtype:
        grid = grid.to(index.dtype)
    idx = _sample(index, grid, "nearest", h)[0].astype(np.intp)
    return np.take(labels.reshape(-1), idx)


def _f32(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    # numpy counts a flipped 1-pixel array as contiguous; torch refuses its negative strides
    return torch.from_numpy(a if min(a.strides, default=0) >= 0 else a.copy())


def warp(img, labels, weights, *, mat, t, coarse, order):
    """One resampling of image (cubic/linear), labels (nearest) and weights (linear)."""
    img3 = _f32(img if img.ndim == 3 else img[None])
    h, w = img3.shape[1:]
    grid = _sampling_grid(h, w, mat, t, coarse)
    mode = "bicubic" if order == 3 else "bilinear"
    out = _sample(img3, grid, mode, h)
    out = out if img.ndim == 3 else out[0]
    lab = None if labels is None else _gather_labels(labels, grid, h, w)
    wts = None
    if weights is not None:
        wts = _sample(_f32(weights)[None], grid, "bilinear", h)[0]
    return out, lab, wts


def flip_rot(img, lab, wts, flip_y: bool, flip_x: bool, k: int):
    """Exact flips and 90-degree rotations (views; later steps copy)."""
    axes = [ax for ax, f in ((-2, flip_y), (-1, flip_x)) if f]

    def move(a, spatial=(-2, -1)):
        if a is None:
            return None
        if axes:
            a = np.flip(a, axis=tuple(axes))
        return np.rot90(a, k, axes=spatial) if k % 4 else a

    return move(img), move(lab), move(wts)


def draw_quarter_turns(rng: np.random.Generator, h: int, w: int) -> int:
    """Quarter turns to apply: 0-3, or 0 or 2 for a non-square sample."""
    k = int(rng.integers(4))
    # A quarter turn would swap H and W; non-square samples keep their shape with 0 or 180.
    return k if h == w else 2 * (k % 2)


def as_float(img: np.ndarray) -> np.ndarray:
    """A float32 copy."""
    return np.array(img, dtype=np.float32, copy=True)


def contiguous_copy(a):
    """A contiguous copy of ``a`` (None stays None)."""
    return None if a is None else np.ascontiguousarray(a).copy()


def float_or_none(a):
    """A float32 copy of ``a`` (None stays None)."""
    return None if a is None else as_float(a)
