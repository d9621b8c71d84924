"""Chunk planning: where each output chunk lies, and which source window it reads.

Chunk origins lie on the network's pooling grid of the whole image, so a chunk's
tiles see exactly what the in-memory path's tiles see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..model import UNet
from ..padding import mirror_indices
from ..tiling import TileGrid, channel_and_stack_axes
from .inputs import DEFAULT_CHUNK

__all__ = [
    "Chunk",
    "ImageAxes",
    "SourceWindow",
    "chunk_region",
    "chunk_shape",
    "chunk_tile_grid",
    "image_axes",
    "plan_chunks",
    "source_window",
]


@dataclass(frozen=True)
class ImageAxes:
    """The image in the model's terms: channels, planes, spatial shape."""

    has_channels: bool
    is_stack: bool
    n_channels: int
    n_planes: int
    shape: tuple[int, int]

    def out_shape(self, lead: tuple[int, ...] = ()) -> tuple[int, ...]:
        """Shape of an output with ``lead`` axes (classes, say), then planes, rows, columns."""
        return (*lead, *self.plane_axis(), *self.shape)

    def plane_axis(self) -> tuple[int, ...]:
        """``(n_planes,)`` for a stack, else ``()``."""
        return (self.n_planes,) if self.is_stack else ()

    def plane_index(self, z: int) -> tuple:
        """Index of plane ``z`` in an output (nothing for a single plane)."""
        return (z,) if self.is_stack else ()


def image_axes(model: UNet, image: Any) -> ImageAxes:
    """Read ``image``'s axes as ``model`` takes them (refused with a sentence if it cannot)."""
    has_channels, is_stack = channel_and_stack_axes(model, image)
    return ImageAxes(
        has_channels=has_channels,
        is_stack=is_stack,
        n_channels=int(image.shape[0]) if has_channels else 1,
        n_planes=int(image.shape[-3]) if is_stack else 1,
        shape=(int(image.shape[-2]), int(image.shape[-1])),
    )


@dataclass(frozen=True)
class Chunk:
    """One output chunk: plane ``z``, rows ``y0:y1``, columns ``x0:x1``, grid cell ``(i, j)``."""

    index: int
    z: int
    i: int
    j: int
    y0: int
    y1: int
    x0: int
    x1: int


def chunk_shape(
    model: UNet, axes: ImageAxes, chunk: int | Sequence[int] | None, multiple: int = 1
) -> tuple[int, int]:
    """The output chunk: on the pooling grid of the whole image, no larger than it needs.

    ``multiple`` (a power of two) is a further factor the chunk must have, so
    that display levels halved that often still have whole chunks.
    """
    f = max(model.pooling_factor, multiple)  # both powers of two
    if chunk is None:
        chunk = DEFAULT_CHUNK
    if isinstance(chunk, int | np.integer):
        chunk = (int(chunk),) * 2
    chunk = tuple(chunk)
    if len(chunk) != 2 or not all(isinstance(c, int | np.integer) and c >= 1 for c in chunk):
        raise NapariUnetError(f"The chunk must be one or two positive integers, got {chunk!r}.")
    return tuple(min(math.ceil(c / f), math.ceil(s / f)) * f for c, s in zip(chunk, axes.shape))


def plan_chunks(axes: ImageAxes, chunk: tuple[int, int]) -> list[Chunk]:
    """Every chunk of every plane, in raster order."""
    H, W = axes.shape
    cy, cx = chunk
    out = []
    for z in range(axes.n_planes):
        for i in range(math.ceil(H / cy)):
            for j in range(math.ceil(W / cx)):
                y0, x0 = i * cy, j * cx
                c = Chunk(len(out), z, i, j, y0, min(H, y0 + cy), x0, min(W, x0 + cx))
                out.append(c)
    return out


def chunk_region(chunk: Chunk, axes: ImageAxes, lead: bool = False, margin: int = 0) -> tuple:
    """Index of ``chunk`` (grown by ``margin``, cut at the image) in an output array.

    ``lead`` keeps a first axis (the classes of the probabilities) whole.
    """
    H, W = axes.shape
    ys = slice(max(0, chunk.y0 - margin), min(H, chunk.y1 + margin))
    xs = slice(max(0, chunk.x0 - margin), min(W, chunk.x1 + margin))
    return ((slice(None),) if lead else ()) + axes.plane_index(chunk.z) + (ys, xs)


def chunk_tile_grid(chunk: Chunk, plan: TileGrid) -> TileGrid:
    """The tiles of ``chunk``: ``plan``'s tile step and input, counted for this chunk."""
    shape = (chunk.y1 - chunk.y0, chunk.x1 - chunk.x0)
    counts = (math.ceil(shape[0] / plan.step[0]), math.ceil(shape[1] / plan.step[1]))
    return TileGrid(
        image_shape=shape,
        step=plan.step,
        input_shape=plan.input_shape,
        counts=counts,
        halo=plan.halo,
    )


@dataclass(frozen=True)
class SourceWindow:
    """What a chunk reads: a box of the source, then rows and columns mirrored from it.

    ``rows``/``cols`` index into the box (``None``: the box as it is, nothing mirrored).
    """

    rows: slice
    cols: slice
    row_order: np.ndarray | None
    col_order: np.ndarray | None


def source_window(chunk: Chunk, grid: TileGrid, axes: ImageAxes) -> SourceWindow:
    """The source box ``chunk``'s tiles need, mirrored at the image border.

    The box plus mirrored indices reproduce the in-memory path, which mirror-pads
    the whole image before tiling.
    """
    H, W = axes.shape
    (above, below), (left, right) = grid.pad_widths()
    rows = mirror_indices(chunk.y0 - above, chunk.y1 + below, H)
    cols = mirror_indices(chunk.x0 - left, chunk.x1 + right, W)
    return SourceWindow(
        rows=slice(int(rows.min()), int(rows.max()) + 1),
        cols=slice(int(cols.min()), int(cols.max()) + 1),
        row_order=_unless_identity(rows - rows.min()),
        col_order=_unless_identity(cols - cols.min()),
    )


def _unless_identity(order: np.ndarray) -> np.ndarray | None:
    return None if np.array_equal(order, np.arange(order.size)) else order
