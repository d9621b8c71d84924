"""How a plane is cut into tiles: the tile grid, its size from the memory budget, the axes.

The planning half of overlap-tile prediction (:mod:`napari_unet.tiling` runs the
tiles). Every tile starts at a multiple of the pooling factor ``2**(depth-1)`` in
the mirror-padded image, so all tiles share one pooling grid.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import NapariUnetError
from .model import input_size_for_output

if TYPE_CHECKING:
    import torch

    from .model import UNet

__all__ = [
    "CPU_TILE", "TileGrid", "channel_and_stack_axes", "default_memory_budget", "plan_tiles",
]  # fmt: skip

# Peak bytes of activations per input pixel and base channel during inference,
# measured on CPU (22-25 B for 700..2236 px tiles, see docs/benchmarks.md).
_BYTES_PER_PIXEL_PER_CHANNEL = 24
_MAX_CPU_BUDGET = 4 << 30
# On a CPU, tiles of about 512 output pixels (700 in) keep the narrow layers in cache and
# predict faster than one big pass; measured in docs/benchmarks.md.
CPU_TILE = 512
_MIN_BUDGET = 256 << 20


def default_memory_budget(device: torch.device | None = None) -> int:
    """Bytes of activations one tile may use.

    Half the free GPU memory on CUDA; on the CPU a quarter of the available RAM,
    capped at 4 GiB; never below 256 MiB.
    """
    if device is not None and device.type == "cuda":
        import torch  # loaded already: the device is a torch device

        free, _ = torch.cuda.mem_get_info(device)
        return max(_MIN_BUDGET, free // 2)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX
        available = 4 * _MAX_CPU_BUDGET
    return int(max(_MIN_BUDGET, min(_MAX_CPU_BUDGET, available // 4)))


@dataclass(frozen=True)
class TileGrid:
    """How one 2D plane is cut into tiles.

    Attributes
    ----------
    image_shape : tuple of int
        ``(H, W)`` of the plane.
    step : tuple of int
        Output pixels each tile contributes along each axis; a multiple of the
        pooling factor, so tile origins stay on the pooling grid.
    input_shape : tuple of int
        Network input per tile, ``step`` plus the context on both sides (plus
        the few output pixels a valid size forces, which are discarded).
    counts : tuple of int
        Number of tiles along each axis.
    halo : int
        Context pixels on each side.
    """

    image_shape: tuple[int, int]
    step: tuple[int, int]
    input_shape: tuple[int, int]
    counts: tuple[int, int]
    halo: int

    @property
    def n_tiles(self) -> int:
        """Tiles per plane."""
        return self.counts[0] * self.counts[1]

    def pad_widths(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Mirror padding (before, after) per axis that every tile's input needs."""
        return tuple(
            (self.halo, (c - 1) * s + n - self.halo - size)
            for size, s, n, c in zip(self.image_shape, self.step, self.input_shape, self.counts)
        )

    def origins(self) -> Iterator[tuple[int, int]]:
        """Tile origins ``(y, x)``: of the output in the image, of the input in the padded image."""
        for i in range(self.counts[0]):
            for j in range(self.counts[1]):
                yield i * self.step[0], j * self.step[1]


def _auto_step(size: int, max_step: int, factor: int) -> int:
    """Equal tiles of at most ``max_step`` pixels covering ``size``, rounded to ``factor``."""
    n = max(1, math.ceil(size / max_step))
    return max(factor, math.ceil(math.ceil(size / n) / factor) * factor)


def plan_tiles(
    model: UNet,
    image_shape: Sequence[int],
    tile_shape: int | Sequence[int] | None = None,
    *,
    memory_budget: int | None = None,
    max_step: int | None = None,
) -> TileGrid:
    """Cut a plane of ``image_shape`` into tiles for ``model``.

    Parameters
    ----------
    model : UNet
        The network; its depth sets the halo and the pooling factor.
    image_shape : sequence of int
        ``(H, W)`` of the plane.
    tile_shape : int, sequence of int or None
        Output region per tile. Rounded up to a multiple of the pooling factor
        (16 for depth 5) and capped at the image. ``None`` picks the largest tiles
        whose activations fit ``memory_budget``, split evenly over the image.
    memory_budget : int or None
        Bytes of activations one tile may use when ``tile_shape`` is None
        (:func:`default_memory_budget` by default).
    max_step : int or None
        Largest automatic output tile side, whatever the memory allows.

    Returns
    -------
    TileGrid
    """
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise NapariUnetError(f"Cannot tile a plane of shape {tuple(image_shape)}.")
    factor = model.pooling_factor
    h = model.halo
    if tile_shape is None:
        budget = memory_budget or default_memory_budget()
        per_px = _BYTES_PER_PIXEL_PER_CHANNEL * model.base_channels
        side = max(int(math.sqrt(budget / per_px)) - 2 * h, factor)
        if max_step is not None:
            side = min(side, max_step)
        steps = tuple(_auto_step(s, side, factor) for s in image_shape)
    else:
        if isinstance(tile_shape, int | np.integer):
            tile_shape = (int(tile_shape),) * 2
        if len(tile_shape) != 2 or min(tile_shape) < 1:
            raise NapariUnetError(
                f"tile_shape must be one or two positive integers, got {tile_shape!r}."
            )
        steps = tuple(
            min(math.ceil(t / factor), math.ceil(s / factor)) * factor
            for t, s in zip(tile_shape, image_shape)
        )
    inputs = tuple(input_size_for_output(s, model.depth) for s in steps)
    counts = tuple(math.ceil(s / st) for s, st in zip(image_shape, steps))
    return TileGrid(
        image_shape=tuple(int(s) for s in image_shape),
        step=steps,
        input_shape=inputs,
        counts=counts,
        halo=h,
    )


def channel_and_stack_axes(model: UNet, image: Any) -> tuple[bool, bool]:
    """Whether ``image`` has a channel axis (first) and a stack axis.

    Single-channel models take ``(H, W)`` or ``(Z, H, W)``; a model with C input
    channels takes ``(C, H, W)`` or ``(C, Z, H, W)``.

    Returns
    -------
    (has_channels, is_stack) : tuple of bool
    """
    nd = image.ndim
    c = model.in_channels
    if c == 1 and nd in (2, 3):
        return False, nd == 3
    if c > 1 and nd in (3, 4) and image.shape[0] == c:
        return True, nd == 4
    if c == 1:
        raise NapariUnetError(
            f"This model takes a 2D image (H, W) or a stack (Z, H, W); "
            f"got an array of shape {tuple(image.shape)}."
        )
    raise NapariUnetError(
        f"This model takes {c} channels first, (C, H, W) or (C, Z, H, W); "
        f"got an array of shape {tuple(image.shape)}."
    )
