"""Overlap-tile prediction (the paper's Fig. 2) with exact, seamless results.

Output tiles abut with no overlap. Each tile's input is its output region plus
the network's full context (the *halo*); context past the image border comes
from mirroring the image. Every tile starts at a multiple of the pooling factor
``2**(depth-1)`` in the mirror-padded image, so all tiles share one pooling grid
and stitching reproduces one forward pass over the whole padded image, whatever
the tile shape (up to float rounding). How the tiles are cut is planned in
:mod:`napari_unet.tile_plan`; this module runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._generators import progress_callback, run_to_end
from .device import select_device
from .errors import NapariUnetError
from .events import TileProgress
from .normalization import Normalization
from .padding import mirror_pad
from .precision import Precision, autocast, resolve_precision
from .tile_plan import (
    CPU_TILE,
    TileGrid,
    channel_and_stack_axes,
    default_memory_budget,
    plan_tiles,
)
from .tta import IDENTITY, passes, symmetries

if TYPE_CHECKING:
    from .model import UNet

__all__ = [
    "CPU_TILE",
    "default_memory_budget",
    "TileGrid",
    "TileProgress",
    "plan_tiles",
    "iter_predict_tiled",
    "predict_tiled",
    "tile_probabilities",
    "batch_to_device",
    "channel_and_stack_axes",
    "resolve_normalization",
]


@contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def resolve_normalization(model: UNet, normalization: Any) -> Normalization:
    """The normalisation a ``normalization`` argument asks for.

    ``None``: the model's stored one; ``False``: none; a :class:`Normalization` or
    its dict form: that one.
    """
    if normalization is None:
        return Normalization.from_dict(getattr(model, "metadata", {}).get("normalization"))
    if normalization is False:
        return Normalization(method="none")
    if isinstance(normalization, Normalization):
        return normalization
    if isinstance(normalization, dict):
        return Normalization.from_dict(normalization)
    raise NapariUnetError(f"Cannot use {normalization!r} as a normalisation.")


def iter_predict_tiled(
    model: UNet,
    image: Any,
    *,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    precision: str | Precision = "fp32",
) -> Generator[TileProgress, None, np.ndarray]:
    """Generator form of :func:`predict_tiled`.

    Yields a :class:`TileProgress` once before any work (``done == 0``) and then
    after every forward pass over a batch of tiles (8 per batch with ``tta``), and
    returns the probabilities (``StopIteration.value``). Closing the generator
    between yields cancels the prediction; this is how the GUI stops it.
    """
    if batch_size < 1:
        raise NapariUnetError(f"batch_size must be at least 1, got {batch_size}.")
    per_tile = passes(tta)
    image = np.asarray(image) if not hasattr(image, "ndim") else image
    has_channels, is_stack = channel_and_stack_axes(model, image)
    norm = resolve_normalization(model, normalization)
    stats = norm.statistics(image, channel_axis=0 if has_channels else None)
    dev = select_device(device)
    prec = resolve_precision(precision, dev)
    spatial = tuple(image.shape[-2:])
    budget = default_memory_budget(dev) // batch_size
    max_step = CPU_TILE if dev.type == "cpu" else None
    grid = plan_tiles(model, spatial, tile_shape, memory_budget=budget, max_step=max_step)
    n_planes = image.shape[-3] if is_stack else 1
    out_shape = (model.n_classes, *((n_planes,) if is_stack else ()), *spatial)
    out = np.empty(out_shape, dtype=np.float32)
    total = n_planes * grid.n_tiles * per_tile
    done = 0
    yield TileProgress(0, total, prec)  # the total is known before any work starts
    # channels-last lets oneDNN run the narrow convolutions about twice as fast on CPU
    model.to(dev, memory_format=torch.channels_last)
    for z in range(n_planes):
        if has_channels:
            plane = image[:, z] if is_stack else image
            plane = norm.apply(plane, stats, channel_axis=0)
        else:
            plane = norm.apply(image[z] if is_stack else image, stats)[None]
        target = out[:, z] if is_stack else out
        while True:
            plane_done = 0
            try:
                for step in _predict_plane(model, plane, grid, batch_size, dev, target, tta, prec):
                    plane_done += step
                    yield TileProgress(done + plane_done, total, prec)
                break
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                # Any aligned tiling gives the same result, so the plane is simply
                # redone with smaller batches or tiles; finished planes stay valid.
                batch_size, smaller = _shrink(model, grid, batch_size)
                if smaller is None:
                    raise NapariUnetError(
                        "Out of memory even with the smallest tiles; "
                        "use a smaller model or another device."
                    ) from None
                total += (smaller.n_tiles - grid.n_tiles) * (n_planes - z) * per_tile
                grid = smaller
                _release(dev)
        done += grid.n_tiles * per_tile
    return out


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS out-of-memory errors, and the CPU allocator's failures."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text


def _shrink(model: UNet, grid: TileGrid, batch_size: int) -> tuple[int, TileGrid | None]:
    """One batch at a time first, then tiles of half the side (None when at the minimum)."""
    if batch_size > 1:
        return 1, grid
    factor = model.pooling_factor
    if max(grid.step) <= factor:
        return 1, None
    half = tuple(max(factor, s // 2) for s in grid.step)
    return 1, plan_tiles(model, grid.image_shape, half)


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _predict_plane(
    model: UNet,
    plane: np.ndarray,
    grid: TileGrid,
    batch_size: int,
    device: torch.device,
    out: np.ndarray,
    tta: bool,
    precision: Precision,
) -> Iterator[int]:
    """Predict one normalised ``(C, H, W)`` plane into ``out`` (K, H, W), yielding tile passes."""
    (pb_y, pa_y), (pb_x, pa_x) = grid.pad_widths()
    padded = mirror_pad(plane, ((0, 0), (pb_y, pa_y), (pb_x, pa_x)))
    yield from predict_padded(
        model, padded, grid, batch_size, device, out, tta=tta, precision=precision
    )


def tile_probabilities(
    model: UNet, x: torch.Tensor, tta: bool = False, precision: str | Precision = "fp32"
) -> Generator[int, None, np.ndarray]:
    """Softmax probabilities of a batch of tile inputs: the one forward of every tile.

    Every overlap-tile prediction (:func:`predict_padded`, the three views of a
    stack) runs its tiles through here, so all give the same numbers.

    Parameters
    ----------
    model : UNet
        The network, already on ``x``'s device.
    x : torch.Tensor
        ``(B, C, ny, nx)`` normalised float32 tile inputs of valid sizes.
    tta : bool
        Test-time augmentation: predict each tile in the 8 symmetries of the
        square (:data:`napari_unet.tta.SYMMETRIES`), map each prediction back and
        average. Softmax probabilities are averaged, not logits: the result is
        then the mean of 8 probability maps, each as the network would give it
        (the ensemble average nnU-Net also uses for its mirroring), and one very
        confident view cannot outvote the other seven as its large logits would.
        The sum runs in a fixed order and is divided by 8 exactly, so the result
        stays independent of the tile and batch size (see :mod:`napari_unet.tta`).
    precision : str or Precision
        ``"fp32"``, or ``"bf16"``/``"fp16"`` for the network under autocast
        (:func:`napari_unet.precision.autocast`; resolved by the caller, not
        ``"auto"``). The softmax and the average are float32 either way.

    Yields
    ------
    int
        ``B`` after every forward pass but the last (the caller reports that one
        once it has used the result): cancel points within a batch.

    Returns
    -------
    numpy.ndarray
        ``(B, K, oy, ox)`` float32 probabilities.
    """
    syms = symmetries(tta)
    total = None
    for i, sym in enumerate(syms):
        # Modes are set per pass, never across a yield: grad mode is per thread, and a
        # generator abandoned mid-way must not leave its thread (say, a pooled worker
        # thread that trains next) in inference mode or the model in eval mode.
        with _eval_mode(model), torch.inference_mode():
            if sym is IDENTITY:  # tta=False: exactly the plain forward
                with autocast(precision, x.device):
                    logits = model(x)
                prob = torch.softmax(logits.float(), dim=1)
            else:  # channels-last again: rot90 returns a transposed view
                xt = sym.apply(x).contiguous(memory_format=torch.channels_last)
                with autocast(precision, x.device):
                    logits = model(xt)
                prob = sym.invert(torch.softmax(logits.float(), dim=1))
            total = prob if total is None else total.add_(prob)
        if i + 1 < len(syms):
            yield int(x.shape[0])
    with torch.inference_mode():
        if len(syms) > 1:
            total = total / len(syms)  # a power of two: the division is exact
        return total.cpu().numpy()


def predict_padded(
    model: UNet,
    padded: np.ndarray,
    grid: TileGrid,
    batch_size: int,
    device: torch.device,
    out: np.ndarray,
    *,
    tta: bool = False,
    precision: str | Precision = "fp32",
) -> Iterator[int]:
    """Predict the tiles of ``grid`` from an already padded input, yielding tile passes done.

    The one code path of every overlap-tile prediction, in memory or chunk by chunk
    (:mod:`napari_unet.bigimage`), so both give the same numbers.

    Parameters
    ----------
    model : UNet
        The network, already on ``device``.
    padded : numpy.ndarray
        Normalised float32 ``(C, H + pad, W + pad)``: the region ``grid`` covers
        with ``grid.pad_widths()`` of context around it. Tile ``(y, x)`` reads
        ``padded[:, y : y + ny, x : x + nx]`` for ``(ny, nx) = grid.input_shape``.
    grid : TileGrid
        The tiles; their origins must lie on the network's pooling grid of the
        whole image for the result to be exact.
    batch_size : int
        Tiles per forward pass.
    device : torch.device
        Where the forward passes run.
    out : numpy.ndarray
        ``(K, H, W)`` float32 target for the softmax probabilities, written in place.
    tta : bool
        Test-time augmentation (see :func:`tile_probabilities`).
    precision : str or Precision
        A resolved precision (see :func:`tile_probabilities`).

    Yields
    ------
    int
        Tiles done in each forward pass; with ``tta`` each tile counts 8 times,
        once per pass.
    """
    ny, nx = grid.input_shape
    sy, sx = grid.step
    H, W = grid.image_shape
    origins = list(grid.origins())
    for start in range(0, len(origins), batch_size):
        batch = origins[start : start + batch_size]
        x = np.stack([padded[:, y : y + ny, x0 : x0 + nx] for y, x0 in batch])
        x = batch_to_device(torch.from_numpy(x), device)
        prob = yield from tile_probabilities(model, x, tta, precision)
        if not np.isfinite(prob).all():  # a NaN the statistics sample did not see
            raise NapariUnetError("The image contains NaN or infinite values.")
        for p, (y, x0) in zip(prob, batch):
            h = min(sy, H - y)
            w = min(sx, W - x0)
            out[:, y : y + h, x0 : x0 + w] = p[:, :h, :w]
        yield len(batch)


def batch_to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of tile inputs on ``device``, channels-last.

    To a GPU from pinned memory without blocking, so the copy overlaps the host's work.
    """
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    else:
        x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last)


def predict_tiled(
    model: UNet,
    image: Any,
    *,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    normalization: Normalization | dict | bool | None = None,
    progress: Callable[[int, int], Any] | None = None,
    tta: bool = False,
    precision: str | Precision = "fp32",
) -> np.ndarray:
    """Class probabilities of a whole image by overlap-tile prediction.

    Parameters
    ----------
    model : UNet
        The network. It is moved to ``device`` and run in eval mode; its
        training flag is restored afterwards.
    image : array-like
        ``(H, W)`` or a stack ``(Z, H, W)`` for a single-channel model;
        ``(C, H, W)`` or ``(C, Z, H, W)`` for a model with ``C`` input channels.
        Any integer, float or bool dtype; NaN or infinite values are refused.
        Images smaller than one tile work (the mirror padding repeats).
    tile_shape : int, sequence of int or None
        Output region ``(th, tw)`` per tile, rounded up to a multiple of
        ``2**(depth-1)``; the network input per tile is that plus the halo
        (92 pixels per side for depth 5). ``None`` picks the largest tiles whose
        activations fit :func:`default_memory_budget`, at most :data:`CPU_TILE`
        on a CPU, split evenly over the image. The result does not depend on it
        (to float rounding).
    batch_size : int
        Tiles per forward pass.
    device : str, torch.device or None
        ``None`` picks CUDA, then MPS, then CPU.
    normalization : Normalization, dict, False or None
        ``None`` uses the model's stored normalisation (``model.metadata``), or
        robust percentiles (1, 99.8) if it has none; ``False`` uses the values
        as they are. Statistics are computed once over the whole image.
    progress : callable or None
        Called as ``progress(done, total)`` after every forward pass over a batch
        of tiles; ``total`` counts tile passes (8 per tile with ``tta``).
    tta : bool
        Test-time augmentation: average the softmax probabilities of each tile
        predicted in the 8 symmetries of the square (mirrors and quarter turns,
        each mapped back), at 8 times the work. Still exact under tiling: the
        result does not depend on ``tile_shape`` or ``batch_size``. See
        :func:`tile_probabilities` and :mod:`napari_unet.tta`.
    precision : {"fp32", "auto", "bf16", "fp16"}
        ``"fp32"`` (the default here: exact, the result does not depend on the
        tiling to 1e-4); ``"bf16"`` runs the network under bfloat16 autocast
        (``"fp16"``: float16, CUDA only); ``"auto"`` uses bf16 only where a
        cached measurement on this machine found it at least 1.3x faster
        (:mod:`napari_unet.precision`). The probabilities are float32 either way.

    Returns
    -------
    numpy.ndarray
        float32 softmax probabilities of shape ``(n_classes, H, W)``, or
        ``(n_classes, Z, H, W)`` for a stack.

    Notes
    -----
    Output tiles abut with no overlap and nothing is predicted twice. Each tile
    starts at a multiple of the pooling factor in the mirror-padded image, so all
    tiles share one pooling grid and the stitched result equals one forward pass
    over the whole mirror-padded image. With ``tta`` it equals the mean over the 8
    symmetries ``T`` of ``T^-1(softmax(net(T(padded image))))`` on that grid; the
    result is then invariant under the 8 symmetries of the image itself when each
    side's length leaves the same remainder modulo the pooling factor as the
    network's output size (4 modulo 16 at depth 5, e.g. 388), where the pooling
    grid is symmetric too.
    """
    gen = iter_predict_tiled(
        model,
        image,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        normalization=normalization,
        tta=tta,
        precision=precision,
    )
    return run_to_end(gen, progress_callback(progress))
