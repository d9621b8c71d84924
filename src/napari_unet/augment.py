"""Data augmentation as in the paper: elastic deformation, rotations, flips, shifts, gray values.

Shape rules, shared by every function here:

* ``image`` is ``(H, W)`` or channels-first ``(C, H, W)``; it is returned as float32 (cubic
  interpolation overshoots, so integer types cannot hold the result).
* ``labels`` (any integer or bool dtype) and ``weights`` (real) are ``(H, W)``. Labels are
  resampled by nearest neighbour as an integer gather, so they keep their dtype and never gain an
  id (``2**40`` in int64 or uint64 survives exactly); weights are resampled linearly as float32.
* Every output has its input's shape. Geometric steps move image, labels and weights with the
  same transform; gray-value steps change the image only.
* Content needed from outside the image is mirrored (numpy's ``reflect``, like the overlap-tile
  prediction), never filled with zeros.

Training applies :func:`augment_sample` to the whole input tile (image with its context, and
labels/weights of the same extent) and crops the target region afterwards, so the context the
network sees is deformed with the target; what the transform pulls in from past the tile's border
is mirrored tile content (a caller that wants real image there augments a larger crop). The
"Preview augmentation" GUI calls the same function with the same :class:`AugmentConfig`.

Speed: every geometric change (arbitrary rotation, shift, elastic field) is folded into one
sampling grid, built by a single small matrix product from cached matrices, and the image is
resampled once with ``torch.nn.functional.grid_sample`` (split into row bands so that all CPU
threads work). See ``benchmarks/bench_augment.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from .errors import NapariUnetError
from .seeding import random_generator

__all__ = [
    "AugmentConfig",
    "augment_sample",
    "elastic_deform",
    "upsample_displacement",
    "random_flip",
    "random_rot90",
    "random_rotate",
    "random_shift",
    "random_contrast",
    "random_brightness",
    "random_gamma",
    "random_noise",
]


# --------------------------------------------------------------------------- validation


def _check_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise NapariUnetError(
            f"The image must be a non-empty (H, W) or (C, H, W) array, got shape {arr.shape}."
        )
    if arr.dtype.kind not in "biuf":
        raise NapariUnetError(f"The image must hold real numbers, got dtype {arr.dtype}.")
    return arr


def _check_companion(arr: Any, shape: tuple[int, int], name: str, kinds: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise NapariUnetError(
            f"The {name} must have the image's spatial shape {shape}, got {arr.shape}."
        )
    if arr.dtype.kind not in kinds:
        what = "an integer or bool" if name == "labels" else "a real"
        raise NapariUnetError(f"The {name} must be {what} array, got dtype {arr.dtype}.")
    return arr


def _check_inputs(image, labels, weights):
    img = _check_image(image)
    shape = img.shape[-2:]
    lab = None if labels is None else _check_companion(labels, shape, "labels", "biu")
    wts = None if weights is None else _check_companion(weights, shape, "weights", "biuf")
    return img, lab, wts


def _check_order(order: int) -> None:
    if order not in (1, 3):
        raise NapariUnetError(f"The interpolation order must be 1 or 3, got {order!r}.")


def _result(image, labels, weights, with_weights: bool) -> tuple:
    return (image, labels, weights) if with_weights else (image, labels)


# ------------------------------------------------------------------ cached building blocks


@functools.lru_cache(maxsize=64)
def _upsample_matrix(n: int, g: int) -> np.ndarray:
    """``(n, g)`` matrix taking ``g`` evenly spread nodes (first and last on the ends) to ``n``.

    Column ``i`` is scipy's interpolating cubic spline (mirror boundary) of the ``i``-th unit
    vector; spline interpolation is linear in the data, so ``U @ v`` interpolates any ``v``.
    """
    pos = np.linspace(0.0, g - 1.0, n) if n > 1 else np.zeros(1)
    eye = np.eye(g)
    mat = np.stack(
        [ndi.map_coordinates(eye[i], [pos], order=3, mode="mirror") for i in range(g)], axis=1
    )
    mat.setflags(write=False)
    return mat


@functools.lru_cache(maxsize=64)
def _left_matrix(h: int, g: int) -> np.ndarray:
    """``[U_y | 1 | y]``: the row factor of the sampling grid, shared by all calls."""
    left = np.empty((h, g + 2), dtype=np.float32)
    left[:, :g] = _upsample_matrix(h, g)
    left[:, g] = 1.0
    left[:, g + 1] = np.arange(h)
    left.setflags(write=False)
    return left


def upsample_displacement(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel displacement field from displacements on a coarse grid (bicubic).

    Parameters
    ----------
    coarse : ndarray, shape (2, gy, gx)
        Displacements ``(dy, dx)`` in pixels at ``gy x gx`` nodes spread evenly over the image,
        with the first and last nodes on the border pixels.
    shape : tuple of int
        ``(H, W)`` of the image.

    Returns
    -------
    ndarray, shape (2, H, W), float64
        The interpolating cubic spline through the nodes (equal to
        ``scipy.ndimage.map_coordinates(..., order=3, mode="mirror")`` on the coarse grid),
        computed as two small matrix products ``U_y @ coarse[k] @ U_x.T``.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2 or min(coarse.shape[1:]) < 2:
        raise NapariUnetError(
            f"The coarse displacement must have shape (2, gy, gx) with at least 2 nodes per "
            f"axis, got {coarse.shape}."
        )
    h, w = (int(s) for s in shape)
    uy = _upsample_matrix(h, coarse.shape[1])
    ux = _upsample_matrix(w, coarse.shape[2])
    return np.stack([uy @ c @ ux.T for c in coarse])


def _affine(h: int, w: int, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)):
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
    left = _left_matrix(h, g)
    # Source coordinate k (0 = y, 1 = x) is left @ rk: elastic rows, a constant row, a y row.
    xs = np.arange(w, dtype=np.float64)
    rows = np.zeros((2, g + 2, w))
    if coarse is not None:
        ux = _upsample_matrix(w, g)
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


def _warp(img, labels, weights, *, mat, t, coarse, order):
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


def _as_float(img: np.ndarray) -> np.ndarray:
    return np.array(img, dtype=np.float32, copy=True)


# -------------------------------------------------------------------------- geometric steps


def _draw_coarse(rng: np.random.Generator, grid_points: int, sigma: float) -> np.ndarray:
    return rng.normal(0.0, 1.0, size=(2, grid_points, grid_points)) * sigma


def _check_grid(grid_points: int, sigma: float) -> None:
    if (
        isinstance(grid_points, bool)
        or not isinstance(grid_points, (int, np.integer))
        or (grid_points < 2)
    ):
        raise NapariUnetError(f"grid_points must be an integer of at least 2, got {grid_points!r}.")
    _check_range("sigma", sigma)


def elastic_deform(
    image: Any,
    labels: Any = None,
    *,
    grid_points: int = 3,
    sigma: float = 10.0,
    seed: Any = None,
    weights: Any = None,
    order: int = 3,
) -> tuple:
    """Random elastic deformation, the paper's key augmentation.

    Displacement vectors ``(dy, dx)`` on a coarse ``grid_points x grid_points`` grid are drawn
    from a Gaussian with ``sigma`` pixels standard deviation (``rng.normal(0, 1, (2, g, g)) *
    sigma`` with ``rng = np.random.default_rng(seed)``), upsampled to a per-pixel field by
    bicubic interpolation (:func:`upsample_displacement`), and output pixel ``p`` takes the
    source value at ``p + d(p)``. One field moves image, labels and weights; positions past the
    border are mirrored.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        All channels share the field.
    labels : array-like of int or bool, shape (H, W), optional
        Resampled by nearest neighbour; never gains an id.
    grid_points : int
        Nodes of the coarse grid per axis (3 in the paper), at least 2.
    sigma : float
        Standard deviation of the node displacements in pixels (10 in the paper); 0 returns the
        input unchanged.
    seed : int, numpy.random.Generator or None
        The same seed gives the same deformation.
    weights : array-like, shape (H, W), optional
        Weight map, resampled linearly.
    order : {3, 1}
        Interpolation of the image: cubic convolution (torch's bicubic kernel, a = -0.75) or
        linear.

    Returns
    -------
    image : ndarray of float32
    labels : ndarray or None
        Same dtype as the input labels.
    weights : ndarray of float32
        Only returned when ``weights`` is given.
    """
    img, lab, wts = _check_inputs(image, labels, weights)
    _check_order(order)
    _check_grid(grid_points, sigma)
    coarse = _draw_coarse(random_generator(seed), int(grid_points), float(sigma))
    h, w = img.shape[-2:]
    mat, t = _affine(h, w)
    out = _warp(img, lab, wts, mat=mat, t=t, coarse=coarse, order=order)
    return _result(*out, weights is not None)


def _flip_rot(img, lab, wts, flip_y: bool, flip_x: bool, k: int):
    """Exact flips and 90-degree rotations (views; later steps copy)."""
    axes = [ax for ax, f in ((-2, flip_y), (-1, flip_x)) if f]

    def move(a, spatial=(-2, -1)):
        if a is None:
            return None
        if axes:
            a = np.flip(a, axis=tuple(axes))
        return np.rot90(a, k, axes=spatial) if k % 4 else a

    return move(img), move(lab), move(wts)


def random_flip(image: Any, labels: Any = None, *, weights: Any = None, seed: Any = None) -> tuple:
    """Flip up-down and left-right, each with probability 1/2 (exact, no interpolation).

    Parameters
    ----------
    image, labels, weights
        As for :func:`elastic_deform`.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    tuple
        ``(image, labels)``, plus ``weights`` when given, as for :func:`elastic_deform`.
    """
    img, lab, wts = _check_inputs(image, labels, weights)
    rng = random_generator(seed)
    fy, fx = (bool(b) for b in rng.random(2) < 0.5)
    img, lab, wts = _flip_rot(img, lab, wts, fy, fx, 0)
    return _result(_as_float(img), _copy(lab), _float_or_none(wts), weights is not None)


def _copy(a):
    return None if a is None else np.ascontiguousarray(a).copy()


def _float_or_none(a):
    return None if a is None else _as_float(a)


def _draw_k(rng: np.random.Generator, h: int, w: int) -> int:
    k = int(rng.integers(4))
    # A quarter turn would swap H and W; non-square samples keep their shape with 0 or 180.
    return k if h == w else 2 * (k % 2)


def random_rot90(image: Any, labels: Any = None, *, weights: Any = None, seed: Any = None) -> tuple:
    """Rotate by a random multiple of 90 degrees (exact, no interpolation).

    Non-square inputs only turn by 0 or 180 degrees, so every output keeps its input's shape.

    Parameters
    ----------
    image, labels, weights
        As for :func:`elastic_deform`.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    tuple
        ``(image, labels)``, plus ``weights`` when given.
    """
    img, lab, wts = _check_inputs(image, labels, weights)
    h, w = img.shape[-2:]
    k = _draw_k(random_generator(seed), h, w)
    img, lab, wts = _flip_rot(img, lab, wts, False, False, k)
    return _result(_as_float(img), _copy(lab), _float_or_none(wts), weights is not None)


def random_rotate(
    image: Any,
    labels: Any = None,
    *,
    weights: Any = None,
    max_angle: float = 45.0,
    seed: Any = None,
    order: int = 3,
) -> tuple:
    """Rotate about the centre by an angle drawn uniformly from ``[-max_angle, max_angle]``.

    Corners that would come from outside the image are mirrored. Together with
    :func:`random_rot90`, ``max_angle=45`` reaches every angle.

    Parameters
    ----------
    image, labels, weights
        As for :func:`elastic_deform`.
    max_angle : float
        Largest rotation in degrees.
    seed : int, numpy.random.Generator or None
        Random source.
    order : {3, 1}
        Interpolation of the image.

    Returns
    -------
    tuple
        ``(image, labels)``, plus ``weights`` when given.
    """
    img, lab, wts = _check_inputs(image, labels, weights)
    _check_order(order)
    _check_range("max_angle", max_angle)
    angle = random_generator(seed).uniform(-1.0, 1.0) * max_angle
    mat, t = _affine(*img.shape[-2:], angle=angle)
    out = _warp(img, lab, wts, mat=mat, t=t, coarse=None, order=order)
    return _result(*out, weights is not None)


def random_shift(
    image: Any,
    labels: Any = None,
    *,
    weights: Any = None,
    max_shift: float = 20.0,
    seed: Any = None,
    order: int = 3,
) -> tuple:
    """Move the content by up to ``max_shift`` pixels per axis (uniform, sub-pixel).

    Parameters
    ----------
    image, labels, weights
        As for :func:`elastic_deform`.
    max_shift : float
        Largest shift in pixels along each axis; content entering at a border is mirrored.
    seed : int, numpy.random.Generator or None
        Random source.
    order : {3, 1}
        Interpolation of the image.

    Returns
    -------
    tuple
        ``(image, labels)``, plus ``weights`` when given.
    """
    img, lab, wts = _check_inputs(image, labels, weights)
    _check_order(order)
    _check_range("max_shift", max_shift)
    shift = random_generator(seed).uniform(-1.0, 1.0, size=2) * max_shift
    mat, t = _affine(*img.shape[-2:], shift=tuple(shift))
    out = _warp(img, lab, wts, mat=mat, t=t, coarse=None, order=order)
    return _result(*out, weights is not None)


# ----------------------------------------------------------------------- gray-value steps
# Magnitudes are relative to each channel's own spread, so one setting suits raw (e.g. uint16)
# and normalised images alike.


def _channels(image: Any) -> np.ndarray:
    img = _check_image(image)
    return _as_float(img if img.ndim == 3 else img[None]), img.ndim


def _log_uniform(rng: np.random.Generator, amount: float) -> float:
    r = math.log1p(amount)
    return math.exp(rng.uniform(-r, r))


def _contrast(x: np.ndarray, factor: float) -> None:
    mean = x.mean(axis=(1, 2), keepdims=True)
    x -= mean
    x *= factor
    x += mean


def _brightness(x: np.ndarray, offset: float, std: np.ndarray) -> None:
    x += (offset * std).astype(np.float32)


def _gamma(x: np.ndarray, gamma: float) -> None:
    # applied on each channel's own [min, max], which it keeps
    for c in x:
        lo, hi = float(c.min()), float(c.max())
        if hi > lo:
            c -= lo
            c *= 1.0 / (hi - lo)
            np.power(c, gamma, out=c)
            c *= hi - lo
            c += lo


def _noise(x: np.ndarray, level: float, std: np.ndarray, seed: int) -> None:
    # torch's vectorised normal sampler is several times faster than numpy's here
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).numpy()
    noise *= (level * std).astype(np.float32)
    x += noise


def _draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _std(x: np.ndarray) -> np.ndarray:
    return x.std(axis=(1, 2), keepdims=True, dtype=np.float64)


def _finish(x: np.ndarray, ndim: int) -> np.ndarray:
    return x if ndim == 3 else x[0]


def random_contrast(image: Any, *, amount: float = 0.2, seed: Any = None) -> np.ndarray:
    """Scale each channel about its mean by a factor log-uniform in ``[1/(1+a), 1+a]``.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        Labels and weights are unaffected by gray-value changes.
    amount : float
        ``a`` above; 0 leaves the image unchanged.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    ndarray of float32
    """
    _check_range("amount", amount)
    x, ndim = _channels(image)
    _contrast(x, _log_uniform(random_generator(seed), amount))
    return _finish(x, ndim)


def random_brightness(image: Any, *, amount: float = 0.1, seed: Any = None) -> np.ndarray:
    """Add an offset uniform in ``[-a, a]`` times each channel's standard deviation.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        Labels and weights are unaffected by gray-value changes.
    amount : float
        ``a`` above.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    ndarray of float32
    """
    _check_range("amount", amount)
    x, ndim = _channels(image)
    _brightness(x, random_generator(seed).uniform(-amount, amount), _std(x))
    return _finish(x, ndim)


def random_gamma(image: Any, *, amount: float = 0.2, seed: Any = None) -> np.ndarray:
    """Gamma curve with exponent log-uniform in ``[1/(1+a), 1+a]`` on each channel's range.

    Each channel is mapped to ``[0, 1]`` by its own minimum and maximum, raised to the power and
    mapped back, so the range is kept.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        Labels and weights are unaffected by gray-value changes.
    amount : float
        ``a`` above.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    ndarray of float32
    """
    _check_range("amount", amount)
    x, ndim = _channels(image)
    _gamma(x, _log_uniform(random_generator(seed), amount))
    return _finish(x, ndim)


def random_noise(image: Any, *, amount: float = 0.03, seed: Any = None) -> np.ndarray:
    """Add Gaussian noise with standard deviation uniform in ``[0, a]`` times the channel's.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        Labels and weights are unaffected by gray-value changes.
    amount : float
        ``a`` above.
    seed : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    ndarray of float32
    """
    _check_range("amount", amount)
    x, ndim = _channels(image)
    rng = random_generator(seed)
    _noise(x, rng.uniform(0.0, amount), _std(x), _draw_seed(rng))
    return _finish(x, ndim)


def _check_range(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise NapariUnetError(f"{name} must be a number, got {value!r}.")
    if not (math.isfinite(value) and value >= 0):
        raise NapariUnetError(f"{name} must be a finite number >= 0, got {value!r}.")


# ------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class AugmentConfig:
    """All augmentation settings, shared by training and the preview.

    The defaults follow the paper: elastic deformation on a 3x3 grid with 10 pixels standard
    deviation, rotations, flips and mild gray-value changes. Every amount of 0 (or ``False``)
    switches its step off; :meth:`identity` switches all off.

    Attributes
    ----------
    elastic : bool
        Random elastic deformation (see :func:`elastic_deform`).
    grid_points : int
        Coarse grid nodes per axis for the elastic field (paper: 3).
    sigma : float
        Standard deviation of the node displacements in pixels (paper: 10).
    flips : bool
        Flip up-down and left-right, each with probability 1/2.
    rot90 : bool
        Rotate by a random multiple of 90 degrees (0 or 180 for non-square samples).
    rotation : float
        Largest arbitrary rotation in degrees; 45 with ``rot90`` reaches every angle.
    shift : float
        Largest shift in pixels per axis. 0 by default: training already picks tiles at random
        positions, which gives the paper's shift invariance.
    contrast, brightness, gamma, noise : float
        Gray-value amounts as in :func:`random_contrast`, :func:`random_brightness`,
        :func:`random_gamma` and :func:`random_noise`, relative to each channel's spread.
    order : {3, 1}
        Interpolation of the image (cubic or linear); labels are always nearest, weights linear.
    """

    elastic: bool = True
    grid_points: int = 3
    sigma: float = 10.0
    flips: bool = True
    rot90: bool = True
    rotation: float = 45.0
    shift: float = 0.0
    contrast: float = 0.2
    brightness: float = 0.1
    gamma: float = 0.2
    noise: float = 0.03
    order: int = 3

    def __post_init__(self) -> None:
        for name in ("elastic", "flips", "rot90"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise NapariUnetError(f"The augmentation setting {name} must be true or false.")
        _check_grid(self.grid_points, self.sigma)
        for name in ("rotation", "shift", "contrast", "brightness", "gamma", "noise"):
            _check_range(name, getattr(self, name))
        _check_order(self.order)
        # plain Python types, so to_dict() is JSON even when numpy scalars came in
        for f in fields(self):
            kind = type(getattr(type(self), f.name))
            object.__setattr__(self, f.name, kind(getattr(self, f.name)))

    @classmethod
    def identity(cls) -> AugmentConfig:
        """Settings that change nothing (useful to switch augmentation off)."""
        return cls(elastic=False, flips=False, rot90=False, rotation=0.0, contrast=0.0,
                   brightness=0.0, gamma=0.0, noise=0.0)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, ``None`` gives them all."""
        if not data:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise NapariUnetError(f"Unknown augmentation setting(s): {', '.join(unknown)}.")
        kwargs = {}
        for key, value in data.items():
            default = getattr(cls, key)
            kind = "true or false" if isinstance(default, bool) else "a number"
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, (bool, int, float)
            ):
                raise NapariUnetError(f"The augmentation setting {key} must be {kind}.")
            if isinstance(default, int) and not isinstance(default, bool):
                if not float(value).is_integer():
                    raise NapariUnetError(f"The augmentation setting {key} must be an integer.")
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)


def augment_sample(
    image: Any,
    labels: Any = None,
    weights: Any = None,
    *,
    config: AugmentConfig | None = None,
    rng: Any = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Augment one training sample: flips, rotations, shift, elastic field, then gray values.

    Flips and quarter turns are exact; the arbitrary rotation, the shift and the elastic field
    are composed into one transform so the image is interpolated only once. Gray-value changes
    follow (gamma, contrast, brightness, then noise) and touch the image only.

    Every random number is drawn in a fixed order whatever the settings (the scalars, the
    elastic nodes, then a seed for the noise), so with one seed, switching a step off leaves the
    others as they were: the preview stays comparable while the user edits the settings.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
        The whole input tile, context included; crop the target region afterwards.
    labels : array-like of int or bool, shape (H, W), optional
    weights : array-like, shape (H, W), optional
    config : AugmentConfig, optional
        Defaults to ``AugmentConfig()`` (the paper's augmentation).
    rng : int, numpy.random.Generator or None
        Random source; a Generator advances, so calling again gives a new sample.

    Returns
    -------
    image : ndarray of float32, the input's shape
    labels : ndarray or None, same dtype
    weights : ndarray of float32 or None
    """
    cfg = AugmentConfig() if config is None else config
    if not isinstance(cfg, AugmentConfig):
        raise NapariUnetError(f"config must be an AugmentConfig, got {type(cfg).__name__}.")
    img, lab, wts = _check_inputs(image, labels, weights)
    gen = random_generator(rng)
    h, w = img.shape[-2:]

    # Fixed draw order (see docstring); each value in [0, 1) or [-1, 1), scaled below.
    flip_y, flip_x = (bool(b) for b in gen.random(2) < 0.5)
    k = _draw_k(gen, h, w)
    u_angle = gen.uniform(-1.0, 1.0)
    u_shift = gen.uniform(-1.0, 1.0, size=2)
    u_contrast, u_brightness, u_gamma = gen.uniform(-1.0, 1.0, size=3)
    u_noise = gen.random()
    nodes = gen.normal(0.0, 1.0, size=(2, cfg.grid_points, cfg.grid_points))
    noise_seed = _draw_seed(gen)

    img, lab, wts = _flip_rot(
        img, lab, wts, cfg.flips and flip_y, cfg.flips and flip_x, k if cfg.rot90 else 0
    )
    angle = u_angle * cfg.rotation
    shift = u_shift * cfg.shift
    coarse = nodes * cfg.sigma if cfg.elastic and cfg.sigma > 0 else None
    if coarse is not None or angle != 0 or np.any(shift != 0):
        mat, t = _affine(h, w, angle=angle, shift=tuple(shift))
        x, lab, wts = _warp(img, lab, wts, mat=mat, t=t, coarse=coarse, order=cfg.order)
        x = x if x.ndim == 3 else x[None]
    else:
        x = _as_float(img if img.ndim == 3 else img[None])
        lab, wts = _copy(lab), _float_or_none(wts)

    if cfg.gamma > 0:
        _gamma(x, math.exp(u_gamma * math.log1p(cfg.gamma)))
    if cfg.contrast > 0:
        _contrast(x, math.exp(u_contrast * math.log1p(cfg.contrast)))
    if cfg.brightness > 0 or cfg.noise > 0:
        std = _std(x)
        if cfg.brightness > 0:
            _brightness(x, u_brightness * cfg.brightness, std)
        if cfg.noise > 0:
            _noise(x, u_noise * cfg.noise, std, noise_seed)
    return _finish(x, img.ndim), lab, wts
