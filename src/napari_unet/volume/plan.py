"""What each stack mode predicts: the views, their planes and the planes' shapes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .axes import check_stack_mode, z_to_front
from .voxels import check_voxel_size, isotropic_factors, scaled_shape

__all__ = ["View", "plan_views", "describe_views", "describe_stack_mode"]


@dataclass(frozen=True)
class View:
    """One direction the stack is looked at from.

    Attributes
    ----------
    name : str
        ``"XY"``, ``"XZ"`` or ``"YZ"``.
    axis : int
        The stack axis ``(z, y, x)`` the planes are stepped along.
    n_planes : int
        Planes in this view.
    plane_shape : tuple of int
        A plane's shape in the stack's grid (its two axes in stack order).
    network_shape : tuple of int
        The same plane resampled to square pixels at the network's scale.
    """

    name: str
    axis: int
    n_planes: int
    plane_shape: tuple[int, int]
    network_shape: tuple[int, int]


def plan_views(shape: Sequence[int], factors: Sequence[float]) -> list[View]:
    """The three views of a ``(Z, H, W)`` stack whose axes are resized by ``factors``."""
    z, y, x = (int(s) for s in shape)
    out = []
    for name, axis in (("XY", 0), ("XZ", 1), ("YZ", 2)):
        axes = [a for a in range(3) if a != axis]
        plane = tuple((z, y, x)[a] for a in axes)
        network = scaled_shape(plane, [factors[a] for a in axes])
        out.append(View(name, axis, (z, y, x)[axis], plane, network))
    return out


# The default model's context (92 px each side) and CPU tile, for a cost estimate only.
_HALO, _TILE = 92, 512


def plane_cost(shape: Sequence[int]) -> float:
    """Relative work of predicting one plane: network input pixels over its tiles."""
    cost = 1.0
    for n in shape:
        tiles = -(-n // _TILE)
        step = -(-n // tiles)
        cost *= tiles * (step + 2 * _HALO)
    return cost


def describe_views(shape: Sequence[int], factors: Sequence[float]) -> str:
    """One sentence: the planes of the three views and their cost relative to planes mode."""
    views = plan_views(shape, factors)
    xy = views[0]
    base = xy.n_planes * plane_cost(xy.plane_shape)
    work = sum(v.n_planes * plane_cost(v.network_shape) for v in views) / base
    counts = ", ".join(f"{v.n_planes} {v.name}" for v in views[:2])
    resized = ""
    if any(abs(f - 1) > 1e-6 for f in factors):
        z_net = views[1].network_shape[0]
        resized = f" (Z resampled from {shape[0]} to {z_net} planes for the side views)"
    return (
        f"Three views: {counts} and {views[2].n_planes} {views[2].name} planes{resized}, "
        f"about {work:.2g}x the work of planes."
    )


def describe_stack_mode(
    shape: tuple[int, ...], stack: str, voxel_size: tuple[float, float, float] | None = None
) -> str:
    """What a stack mode will do and cost, in one sentence (for before a long run).

    Parameters
    ----------
    shape : tuple of int
        The stack's spatial shape ``(Z, H, W)``.
    stack : {"planes", "linked", "views"}
    voxel_size : tuple of float or None
        ``(z, y, x)``; ``None`` means ``(1, 1, 1)``.
    """
    stack = check_stack_mode(stack)
    vs = check_voxel_size(voxel_size)
    z = int(shape[-3]) if len(shape) >= 3 else 1
    if stack == "planes":
        return f"Planes: {z} plane{'s' if z != 1 else ''}, each labelled on its own."
    z_to_front(tuple(shape[-3:]), stack, None)  # a 2D shape or a single plane: one sentence
    if stack == "linked":
        return (
            f"Linked planes: {z} planes labelled, then objects joined across planes; "
            "about the work of planes."
        )
    return describe_views(tuple(shape[-3:]), isotropic_factors(vs))
