"""Single augmentation steps for the tests: each one random step, as it was drawn before
:func:`napari_unet.augment.augment_sample` folded them into one pipeline.

They are built from the augment package's own building blocks, so the tests check
the code that training runs, one step at a time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_unet.augment import warping
from napari_unet.augment.checks import check_image, check_inputs, check_order, check_range
from napari_unet.augment.intensity import (
    add_brightness,
    add_noise,
    apply_gamma,
    channel_std,
    scale_contrast,
)
from napari_unet.seeding import random_generator


def _exact(img, lab, wts, with_weights):
    out = (warping.as_float(img), warping.contiguous_copy(lab), warping.float_or_none(wts))
    return out if with_weights else out[:2]


def random_flip(image: Any, labels: Any = None, *, weights: Any = None, seed: Any = None):
    """Flip up-down and left-right, each with probability 1/2."""
    img, lab, wts = check_inputs(image, labels, weights)
    fy, fx = (bool(b) for b in random_generator(seed).random(2) < 0.5)
    return _exact(*warping.flip_rot(img, lab, wts, fy, fx, 0), weights is not None)


def random_rot90(image: Any, labels: Any = None, *, weights: Any = None, seed: Any = None):
    """Rotate by a random multiple of 90 degrees (0 or 180 for non-square inputs)."""
    img, lab, wts = check_inputs(image, labels, weights)
    k = warping.draw_quarter_turns(random_generator(seed), *img.shape[-2:])
    return _exact(*warping.flip_rot(img, lab, wts, False, False, k), weights is not None)


def _warped(image, labels, weights, order, **transform):
    img, lab, wts = check_inputs(image, labels, weights)
    check_order(order)
    mat, t = warping.affine(*img.shape[-2:], **transform)
    out = warping.warp(img, lab, wts, mat=mat, t=t, coarse=None, order=order)
    return out if weights is not None else out[:2]


def random_rotate(image, labels=None, *, weights=None, max_angle=45.0, seed=None, order=3):
    """Rotate about the centre by an angle uniform in ``[-max_angle, max_angle]``."""
    check_range("max_angle", max_angle)
    angle = random_generator(seed).uniform(-1.0, 1.0) * max_angle
    return _warped(image, labels, weights, order, angle=angle)


def random_shift(image, labels=None, *, weights=None, max_shift=20.0, seed=None, order=3):
    """Move the content by up to ``max_shift`` pixels per axis."""
    check_range("max_shift", max_shift)
    shift = random_generator(seed).uniform(-1.0, 1.0, size=2) * max_shift
    return _warped(image, labels, weights, order, shift=tuple(shift))


def _gray(image, amount, seed, change) -> np.ndarray:
    """Check ``amount``, then ``change(x, rng)`` the float32 ``(C, H, W)`` copy in place."""
    check_range("amount", amount)
    img = check_image(image)
    x = warping.as_float(img if img.ndim == 3 else img[None])
    change(x, random_generator(seed))
    return x if img.ndim == 3 else x[0]


def _log_uniform(rng, amount):
    r = math.log1p(amount)
    return math.exp(rng.uniform(-r, r))


def random_contrast(image, *, amount=0.2, seed=None) -> np.ndarray:
    """Scale each channel about its mean by a factor log-uniform in ``[1/(1+a), 1+a]``."""
    return _gray(image, amount, seed, lambda x, rng: scale_contrast(x, _log_uniform(rng, amount)))


def random_brightness(image, *, amount=0.1, seed=None) -> np.ndarray:
    """Add an offset uniform in ``[-a, a]`` times each channel's standard deviation."""

    def change(x, rng):
        add_brightness(x, rng.uniform(-amount, amount), channel_std(x))

    return _gray(image, amount, seed, change)


def random_gamma(image, *, amount=0.2, seed=None) -> np.ndarray:
    """Gamma curve with exponent log-uniform in ``[1/(1+a), 1+a]`` on each channel's range."""
    return _gray(image, amount, seed, lambda x, rng: apply_gamma(x, _log_uniform(rng, amount)))


def random_noise(image, *, amount=0.03, seed=None) -> np.ndarray:
    """Gaussian noise with standard deviation uniform in ``[0, a]`` times the channel's."""

    def change(x, rng):
        add_noise(x, rng.uniform(0.0, amount), channel_std(x), int(rng.integers(2**63)))

    return _gray(image, amount, seed, change)
