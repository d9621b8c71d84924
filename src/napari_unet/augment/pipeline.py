"""The augmentation a training sample gets (:func:`augment_sample`), and the elastic step alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..seeding import random_generator
from .checks import check_grid, check_inputs, check_order
from .config import AugmentConfig
from .fields import draw_coarse
from .intensity import add_brightness, add_noise, apply_gamma, channel_std, scale_contrast
from .warping import (
    affine,
    as_float,
    contiguous_copy,
    draw_quarter_turns,
    flip_rot,
    float_or_none,
    warp,
)

__all__ = ["augment_sample", "elastic_deform"]


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
    img, lab, wts = check_inputs(image, labels, weights)
    check_order(order)
    check_grid(grid_points, sigma)
    coarse = draw_coarse(random_generator(seed), int(grid_points), float(sigma))
    h, w = img.shape[-2:]
    mat, t = affine(h, w)
    out = warp(img, lab, wts, mat=mat, t=t, coarse=coarse, order=order)
    return out if weights is not None else out[:2]


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
    img, lab, wts = check_inputs(image, labels, weights)
    gen = random_generator(rng)
    h, w = img.shape[-2:]

    # Fixed draw order (see docstring); each value in [0, 1) or [-1, 1), scaled below.
    flip_y, flip_x = (bool(b) for b in gen.random(2) < 0.5)
    k = draw_quarter_turns(gen, h, w)
    u_angle = gen.uniform(-1.0, 1.0)
    u_shift = gen.uniform(-1.0, 1.0, size=2)
    u_contrast, u_brightness, u_gamma = gen.uniform(-1.0, 1.0, size=3)
    u_noise = gen.random()
    nodes = gen.normal(0.0, 1.0, size=(2, cfg.grid_points, cfg.grid_points))
    noise_seed = _draw_seed(gen)

    img, lab, wts = flip_rot(
        img, lab, wts, cfg.flips and flip_y, cfg.flips and flip_x, k if cfg.rot90 else 0
    )
    angle = u_angle * cfg.rotation
    shift = u_shift * cfg.shift
    coarse = nodes * cfg.sigma if cfg.elastic and cfg.sigma > 0 else None
    if coarse is not None or angle != 0 or np.any(shift != 0):
        mat, t = affine(h, w, angle=angle, shift=tuple(shift))
        x, lab, wts = warp(img, lab, wts, mat=mat, t=t, coarse=coarse, order=cfg.order)
        x = x if x.ndim == 3 else x[None]
    else:
        x = as_float(img if img.ndim == 3 else img[None])
        lab, wts = contiguous_copy(lab), float_or_none(wts)

    if cfg.gamma > 0:
        apply_gamma(x, math.exp(u_gamma * math.log1p(cfg.gamma)))
    if cfg.contrast > 0:
        scale_contrast(x, math.exp(u_contrast * math.log1p(cfg.contrast)))
    if cfg.brightness > 0 or cfg.noise > 0:
        std = channel_std(x)
        if cfg.brightness > 0:
            add_brightness(x, u_brightness * cfg.brightness, std)
        if cfg.noise > 0:
            add_noise(x, u_noise * cfg.noise, std, noise_seed)
    return _finish(x, img.ndim), lab, wts


def _draw_seed(rng: np.random.Generator) -> int:
    """A seed for torch's noise generator."""
    return int(rng.integers(2**63))


def _finish(x: np.ndarray, ndim: int) -> np.ndarray:
    """``(C, H, W)`` back to the input's ``(H, W)`` when it had no channel axis."""
    return x if ndim == 3 else x[0]
