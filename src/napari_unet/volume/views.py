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

from ..device import select_device
from ..tiling import (
    CPU_TILE,
    TileProgress,
    default_memory_budget,
    iter_predict_tiled,
    plan_tiles,
    resolve_normalization,
)
from .plan import View, plan_views
from .voxels import resample_planes

if TYPE_CHECKING:
    import torch

    from ..model import UNet

__all__ = ["iter_predict_views", "ProgressTally"]

# Voxels of network input per block of planes: big enough to amortise the Python
# per block, small enough that the block's float temporaries stay a few tens of MB.
_BLOCK_VOXELS = 1 << 22


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


def _grid_tiles(model: UNet, shape: tuple[int, int], tile_shape: Any, batch_size: int, dev) -> int:
    """Tiles per plane, planned the way :func:`iter_predict_tiled` plans them."""
    budget = default_memory_budget(dev) // batch_size
    max_step = CPU_TILE if dev.type == "cpu" else None
    return plan_tiles(model, shape, tile_shape, memory_budget=budget, max_step=max_step).n_tiles


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

    Yields
    ------
    TileProgress
        Tiles done over all views.

    Returns
    -------
    numpy.ndarray
        float32 ``(K, Z, H, W)`` mean probabilities.
    """
    dev = select_device(device)
    norm = resolve_normalization(model, None)
    stats = norm.statistics(image, channel_axis=0 if has_channels else None)
    spatial = tuple(int(s) for s in image.shape[-3:])
    chosen = [v for v in plan_views(spatial, factors) if v.name in views]
    planned = [
        v.n_planes * _grid_tiles(model, v.network_shape, tile_shape, batch_size, dev)
        for v in chosen
    ]
    tally = ProgressTally(planned)
    yield TileProgress(0, tally.total)
    out = np.zeros((model.n_classes, *spatial), dtype=np.float32)
    for view in chosen:
        tiles = 0
        for start, stop in _blocks(view):
            block = _read_block(image, has_channels, view.axis, start, stop)
            block = norm.apply(block, stats, channel_axis=0)
            block = resample_planes(block, view.network_shape)
            inner = iter_predict_tiled(
                model,
                block if has_channels else block[0],
                tile_shape=tile_shape,
                batch_size=batch_size,
                device=dev,
                normalization=False,
            )
            last = 0
            while True:
                try:
                    event = next(inner)
                except StopIteration as stop_:
                    prob = stop_.value
                    break
                last = event.done
                yield tally.event(tiles + event.done)
            tiles += last
            prob = resample_planes(prob, view.plane_shape)
            # (K, B, A, A') back to the stack's axis order, added in place
            index: list[Any] = [slice(None)] * 4
            index[1 + view.axis] = slice(start, stop)
            target = out[tuple(index)]
            target += np.moveaxis(prob, 1, 1 + view.axis)
        tally.finish_part(tiles)
    out /= np.float32(len(chosen))
    return out
