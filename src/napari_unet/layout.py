"""Bringing the arrays users have into the layout a model takes."""

from __future__ import annotations

import numpy as np

from .errors import NapariUnetError

__all__ = ["channel_count", "check_same_channels", "looks_rgb", "to_model_layout"]


def looks_rgb(shape: tuple[int, ...]) -> bool:
    """Napari's rule: a last axis of 3 or 4 after two larger axes is colour."""
    return len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4


def to_model_layout(image: np.ndarray, in_channels: int, *, rgb: bool | None = None) -> np.ndarray:
    """Return ``image`` in the layout a model with ``in_channels`` inputs takes.

    Single-channel models take ``(H, W)`` or ``(Z, H, W)``; an RGB(A) image
    ``(H, W, 3|4)`` is turned into its luminance (alpha dropped), and
    ``(H, W, 1)`` becomes ``(H, W)``. Multi-channel
    models take ``(C, H, W)``; an RGB image with ``C == 3`` is moved channels-first.

    Parameters
    ----------
    image : numpy.ndarray
        The user's array.
    in_channels : int
        The model's input channels.
    rgb : bool or None
        Whether the last axis is colour; ``None`` guesses as napari does.

    Returns
    -------
    numpy.ndarray
    """
    if image.ndim < 2:
        raise NapariUnetError(f"An image needs at least two dimensions; got shape {image.shape}.")
    if min(image.shape[-2:]) < 1:
        raise NapariUnetError(f"The image is empty (shape {image.shape}).")
    if in_channels == 1 and image.ndim == 3 and image.shape[-1] == 1 and not rgb:
        image = image[..., 0]  # channels-last with one channel, not H planes 1 px wide
    is_rgb = looks_rgb(image.shape) if rgb is None else rgb
    if is_rgb:
        if in_channels == 1:
            rgb_part = image[..., :3].astype(np.float32)
            return rgb_part @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
        if in_channels == image.shape[-1]:
            return np.moveaxis(image, -1, 0)
    if in_channels == 1 and image.ndim > 3:
        raise NapariUnetError(
            f"This model takes a 2D image or a stack of planes; got {image.ndim} dimensions "
            f"(shape {image.shape})."
        )
    return image


def channel_count(image: np.ndarray, *, rgb: bool | None = None) -> int:
    """How many colour channels ``image`` has as the user gave it (1 unless RGB(A)).

    Parameters
    ----------
    image : numpy.ndarray
        The user's array (``(H, W)``, a stack, or ``(H, W, 3|4)``).
    rgb : bool or None
        Whether the last axis is colour; ``None`` guesses as napari does.
    """
    is_rgb = looks_rgb(image.shape) if rgb is None else rgb
    return int(image.shape[-1]) if is_rgb else 1


def check_same_channels(counts: list[int], names: list[str]) -> None:
    """Refuse a training set whose images differ in their number of channels.

    Parameters
    ----------
    counts : list of int
        Channels of each image (:func:`channel_count`).
    names : list of str
        The images' names, for the message.

    Raises
    ------
    NapariUnetError
        Naming the first image that differs from the first one.
    """
    for count, name in zip(counts[1:], names[1:]):
        if count != counts[0]:
            raise NapariUnetError(
                f"'{name}' has {count} channel(s) but '{names[0]}' has {counts[0]}: "
                "the images of a training set must have the same channels."
            )
