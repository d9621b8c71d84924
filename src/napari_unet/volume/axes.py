"""Which axis of an array is Z: the checks of the 3D modes, and moving Z into place."""

from __future__ import annotations

from typing import Any

from ..errors import NapariUnetError

__all__ = ["STACK_MODES", "check_stack_mode", "spatial_ndim", "z_to_front"]

#: How a stack is segmented: ``"planes"`` (each plane on its own, also for time-lapse),
#: ``"linked"`` (plane objects joined across planes), ``"views"`` (XY, XZ and YZ planes
#: predicted and averaged, then a 3D watershed). See :mod:`napari_unet.volume`.
STACK_MODES = ("planes", "linked", "views")


def check_stack_mode(stack: Any) -> str:
    """``stack`` if it is one of :data:`STACK_MODES`, else one sentence."""
    if stack not in STACK_MODES:
        raise NapariUnetError(
            f"Unknown stack mode {stack!r}; use {', '.join(repr(m) for m in STACK_MODES)}."
        )
    return stack


def spatial_ndim(shape: tuple[int, ...], in_channels: int) -> int:
    """Dimensions that are not the model's channel axis (channels first for C > 1)."""
    if in_channels > 1:
        if len(shape) < 3 or shape[0] != in_channels:
            raise NapariUnetError(
                f"This model takes {in_channels} channels first, (C, Z, H, W); "
                f"got an array of shape {tuple(shape)}."
            )
        return len(shape) - 1
    return len(shape)


def z_to_front(spatial_shape: tuple[int, ...], stack: str, z_axis: int | None) -> int:
    """The index of Z among the spatial axes, checked for a 3D mode.

    Parameters
    ----------
    spatial_shape : tuple of int
        The image's shape without the channel axis.
    stack : str
        ``"linked"`` or ``"views"``.
    z_axis : int or None
        Z among the spatial axes (negative counts from the end); None means the
        first axis of a ``(Z, H, W)`` stack.

    Returns
    -------
    int
        Non-negative index of Z; never one of the last two axes (the plane).
    """
    nd = len(spatial_shape)
    mode = "three views" if stack == "views" else "linked planes"
    if nd < 3:
        raise NapariUnetError(
            f"3D objects ({mode}) need a stack (Z, H, W), but this image is 2D "
            f"{tuple(spatial_shape)}; use stack='planes'."
        )
    if z_axis is None:
        if nd > 3:
            raise NapariUnetError(
                f"This image has {nd} dimensions {tuple(spatial_shape)}; say which axis is Z "
                f"(z_axis, or --z-axis) for 3D objects."
            )
        z = 0
    else:
        try:
            z = int(z_axis)
        except (TypeError, ValueError):
            raise NapariUnetError(f"z_axis must be an axis number, got {z_axis!r}.") from None
        if not -nd <= z < nd:
            raise NapariUnetError(f"z_axis {z_axis} does not exist in an image of {nd} dimensions.")
        z %= nd
        if z >= nd - 2:
            raise NapariUnetError(
                f"Z cannot be axis {z_axis}: the last two axes are the plane (Y, X)."
            )
    if spatial_shape[z] < 2:
        raise NapariUnetError(
            f"The Z axis has only {spatial_shape[z]} plane; 3D objects need at least 2 planes."
        )
    return z
