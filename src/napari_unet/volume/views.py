"""Three views: every XY, XZ and YZ plane predicted, probabilities averaged on the stack's grid.

Each view is predicted block of planes by block of planes: the block is read
from the stack, normalised with statistics computed once over the whole stack,
resampled to square pixels at the network's scale, predicted by the exact
overlap-tile code (:func:`napari_unet.tiling.iter_predict_tiled`), resampled back
and added into one float32 ``(K, Z, H, W)`` accumulator. Memory is the
accumulator plus one block, whatever the number of planes.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..device import select_device
from ..errors import NapariUnetError
from ..padding import mirror_pad
from ..precision import Precision, resolve_precision
from ..tiling import (
    CPU_TILE,
    TileGrid,
    TileProgress,
    batch_to_device,
    default_memory_budget,
    plan_tiles,
    resolve_normalization,
    tile_probabilities,
)
from ..tta import passes
from .plan import View, plan_views
from .voxels import resample_planes

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["iter_predict_views", "ProgressTally"]

# Voxels of network input per block of planes: big enough to amortise the Python
# per block, small enough that the block's float temporaries stay a few tens of MB.
_BLOCK_VOXELS = 1 << 22
# Network input pixels per forward pass when tiles of several planes are batched:
# on 2 CPU cores 4-8 small tiles per pass ran 1.6-1.75x faster than one at a time
# (docs/benchmarks.md, "3D objects"), and 512k pixels keep activations near 200 MB.
_BATCH_PIXELS = 1 << 19


class ProgressTally:
    """One ``done/total`` over several predictions run one after the other.

    ``planned`` holds each part's expected tiles; when a part turns out to need
    more (smaller tiles after running out of memory), the total grows.
    """

    def __init__(self, planned: Sequence[int]) -> None:
        self.planned = list(planned)
        self.done_before = 0
        self.part = 0

    def event(self, part_done: int) -> TileProgress:
        """Progress when the current part has done ``part_done`` tiles."""
        rest = sum(self.planned[self.part + 1 :])
        total = self.done_before + max(self.planned[self.part], part_done) + rest
        return TileProgress(self.done_before + part_done, total)

    def finish_part(self, tiles: int) -> None:
        """The current part is done after ``tiles`` tiles; the next one starts."""
        self.done_before += tiles
        self.part += 1

    @property
    def total(self) -> int:
        """Tiles of the whole run as planned now."""
        return self.done_before + sum(self.planned[self.part :])


def _grid(model: UNet, shape: tuple[int, int], tile_shape: Any, batch_size: int, dev) -> TileGrid:
    """The tiles of one plane, planned the way :func:`iter_predict_tiled` plans them."""
    budget = default_memory_budget(dev) // batch_size
    max_step = CPU_TILE if dev.type == "cpu" else None
    return plan_tiles(model, shape, tile_shape, memory_budget=budget, max_step=max_step)


def _tiles_per_pass(grid: TileGrid, batch_size: int) -> int:
    """Tiles per forward pass: ``batch_size``, or more when tiles are small."""
    pixels = grid.input_shape[0] * grid.input_shape[1]
    return max(batch_size, min(16, _BATCH_PIXELS // pixels))


def _predict_block(
    model: UNet,
    block: np.ndarray,
    grid: TileGrid,
    per_pass: int,
    device: torch.device,
    tta: bool = False,
    precision: Precision | str = "fp32",
) -> Generator[int, None, np.ndarray]:
    """Probabilities ``(K, B, A, A')`` of a normalised block ``(C, B, A, A')``.

    The tiles of all the block's planes go through the network together, several
    per forward pass; each tile is the same computation as in
    :func:`napari_unet.tiling.predict_padded`
    (:func:`~napari_unet.tiling.tile_probabilities`), so the result does not
    depend on how tiles are grouped. Yields tile passes done (8 per tile with ``tta``).
    """
    (pb_y, pa_y), (pb_x, pa_x) = grid.pad_widths()
    n_planes = block.shape[1]
    padded = [
        mirror_pad(block[:, b], ((0, 0), (pb_y, pa_y), (pb_x, pa_x))) for b in range(n_planes)
    ]
    out = np.empty((model.n_classes, n_planes, *grid.image_shape), dtype=np.float32)
    jobs = [(b, y, x) for b in range(n_planes) for y, x in grid.origins()]
    ny, nx = grid.input_shape
    sy, sx = grid.step
    H, W = grid.image_shape
    for start in range(0, len(jobs), per_pass):
        batch = jobs[start : start + per_pass]
        x = np.stack([padded[b][:, y : y + ny, x0 : x0 + nx] for b, y, x0 in batch])
        x = batch_to_device(torch.from_numpy(x), device)
        prob = yield from tile_probabilities(model, x, tta, precision)
        if not np.isfinite(prob).all():
            raise NapariUnetError("The image contains NaN or infinite values.")
        for p, (b, y, x0) in zip(prob, batch):
            h, w = min(sy, H - y), min(sx, W - x0)
            out[:, b, y : y + h, x0 : x0 + w] = p[:, :h, :w]
        yield len(batch)
    return out


def _blocks(view: View) -> list[tuple[int, int]]:
    per_plane = view.network_shape[0] * view.network_shape[1]
    size = max(1, min(view.n_planes, _BLOCK_VOXELS // max(per_plane, 1)))
    return [(s, min(s + size, view.n_planes)) for s in range(0, view.n_planes, size)]


def _read_block(image: Any, has_channels: bool, axis: int, start: int, stop: int) -> np.ndarray:
    """Planes ``start:stop`` of a view as ``(C, B, A, B')`` numpy, any array type in."""
    index: list[Any] = [slice(None)] * 3
    index[axis] = slice(start, stop)
    block = np.asarray(image[(slice(None), *index)] if has_channels else image[tuple(index)])
    if not has_channels:
        block = block[None]
    # stepping axis second: (C, Z, H, W) -> (C, B, ...)
    return np.moveaxis(block, 1 + axis, 1)


def iter_predict_views(
    model: UNet,
    image: Any,
    *,
    has_channels: bool,
    factors: Sequence[float],
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    views: Sequence[str] = ("XY", "XZ", "YZ"),
    normalization: Any = None,
    tta: bool = False,
    precision: Precision | str = "fp32",
) -> Generator[TileProgress, None, np.ndarray]:
    """Average class probabilities of a stack over its XY, XZ and YZ planes.

    Parameters
    ----------
    model : UNet
        The 2D network.
    image : array-like
        ``(Z, H, W)``, or ``(C, Z, H, W)`` with ``has_channels``; numpy or a lazy array.
    has_channels : bool
        Whether axis 0 holds the model's input channels.
    factors : sequence of float
        Resize factor per stack axis ``(z, y, x)`` to square pixels at the network's scale.
    tile_shape, batch_size, device
        As for :func:`napari_unet.predict_tiled`; any tile shape gives the same result.
    views : sequence of str
        Which views to average (all three by default).
    normalization : Normalization, dict, False or None
        As for :func:`napari_unet.predict_tiled`; ``False`` for an image
        normalised already (a slab of a larger stack, with the stack's statistics).
    tta : bool
        Test-time augmentation of every plane's tiles, as for
        :func:`napari_unet.predict_tiled` (8x the work).
    precision : {"fp32", "auto", "bf16", "fp16"} or Precision
        As for :func:`napari_unet.predict_tiled`.

    Yields
    ------
    TileProgress
        Tile passes done over all views.

    Returns
    -------
    numpy.ndarray
        float32 ``(K, Z, H, W)`` mean probabilities.
    """
    per_tile = passes(tta)
    dev = select_device(device)
    prec = resolve_precision(precision, dev)
    norm = resolve_normalization(model, normalization)
    stats = norm.statistics(image, channel_axis=0 if has_channels else None)
    spatial = tuple(int(s) for s in image.shape[-3:])
    chosen = [v for v in plan_views(spatial, factors) if v.name in views]
    grids = [_grid(model, v.network_shape, tile_shape, batch_size, dev) for v in chosen]
    planned = [v.n_planes * g.n_tiles * per_tile for v, g in zip(chosen, grids)]
    tally = ProgressTally(planned)
    yield TileProgress(0, tally.total, prec)
    out = np.zeros((model.n_classes, *spatial), dtype=np.float32)
    # channels-last lets oneDNN run the narrow convolutions about twice as fast on CPU
    model.to(dev, memory_format=torch.channels_last)
    for view, grid in zip(chosen, grids):
        tiles = 0
        per_pass = _tiles_per_pass(grid, batch_size)
        for start, stop in _blocks(view):
            block = _read_block(image, has_channels, view.axis, start, stop)
            block = norm.apply(block, stats, channel_axis=0)
            block = resample_planes(block, view.network_shape)
            inner = _predict_block(model, block, grid, per_pass, dev, tta, prec)
            while True:
                try:
                    tiles += next(inner)
                except StopIteration as stop_:
                    prob = stop_.value
                    break
                yield tally.event(tiles)
            prob = resample_planes(prob, view.plane_shape)
            # (K, B, A, A') back to the stack's axis order, added in place
            index: list[Any] = [slice(None)] * 4
            index[1 + view.axis] = slice(start, stop)
            target = out[tuple(index)]
            target += np.moveaxis(prob, 1, 1 + view.axis)
        tally.finish_part(tiles)
    out /= np.float32(len(chosen))
    return out
