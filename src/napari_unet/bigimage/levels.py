"""The display levels of our output: how many, their shapes and chunks, their arrays.

Level ``k`` holds every ``2**k``-th pixel along y and x. The labels have a level
for every display level; the probabilities (when kept) too, else our image group
has empty placeholder levels that take no space.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import zarr

from .target import OutputTarget

if TYPE_CHECKING:
    from .chunks import ImageAxes

__all__ = [
    "create_label_levels",
    "create_probability_levels",
    "create_placeholder_levels",
    "pyramid_levels",
]

# Display levels stop once a level fits in a screen-sized texture.
_PYRAMID_STOP = 2048
_PYRAMID_MIN_CHUNK = 32


def pyramid_levels(axes: ImageAxes, chunk: tuple[int, int]) -> int:
    """Display levels: halve until a level fits a screen, while chunks stay whole."""
    levels = 1
    while max(axes.shape) / 2 ** (levels - 1) > _PYRAMID_STOP and all(
        c % 2**levels == 0 and c >> levels >= _PYRAMID_MIN_CHUNK for c in chunk
    ):
        levels += 1
    return levels


def _level_shape(axes: ImageAxes, lv: int, lead: tuple = ()) -> tuple[int, ...]:
    H, W = axes.shape
    s = 2**lv
    return (*lead, *axes.plane_axis(), math.ceil(H / s), math.ceil(W / s))


def _level_chunks(axes: ImageAxes, chunk: tuple[int, int], lv: int, lead: tuple = ()) -> tuple:
    plane_chunk = (1,) if axes.is_stack else ()
    return (*lead, *plane_chunk, chunk[0] >> lv, chunk[1] >> lv)


def create_label_levels(
    target: OutputTarget, axes: ImageAxes, chunk: tuple[int, int], n_levels: int, dtype: str
) -> list[zarr.Array]:
    """The label image's arrays ``0`` ... ``n_levels - 1``, each level half the last."""
    levels = []
    for lv in range(n_levels):
        shape = list(_level_shape(axes, lv))
        chunks = list(_level_chunks(axes, chunk, lv))
        for a in target.singleton_axes:  # the image's own axes, 1 along the labels' missing ones
            shape.insert(a, 1)
            chunks.insert(a, 1)
        levels.append(
            target.create_array(
                target.label,
                str(lv),
                target.label_axes,
                shape=tuple(shape),
                chunks=tuple(chunks),
                dtype=dtype,
            )
        )
    return levels


def create_probability_levels(
    target: OutputTarget,
    axes: ImageAxes,
    chunk: tuple[int, int],
    n_levels: int,
    n_classes: int,
    first: int = 0,
) -> list[zarr.Array]:
    """Our store's image arrays ``first`` ... ``n_levels - 1``: the probabilities' levels."""
    return [
        target.create_array(
            target.root,
            str(lv),
            [{"name": "c"}, *target.label_axes],
            shape=_level_shape(axes, lv, (n_classes,)),
            chunks=_level_chunks(axes, chunk, lv, (n_classes,)),
            dtype="float32",
            compressors=None,  # float noise compresses little; decoding it would cost CPU
        )
        for lv in range(first, n_levels)
    ]


def create_placeholder_levels(
    target: OutputTarget, axes: ImageAxes, chunk: tuple[int, int], n_levels: int
) -> None:
    """Image levels with no chunk written: zero bytes on disk, read as zeros."""
    for lv in range(n_levels):
        target.create_array(
            target.root,
            str(lv),
            target.label_axes,
            shape=_level_shape(axes, lv),
            chunks=_level_chunks(axes, chunk, lv),
            dtype="uint8",
        )
