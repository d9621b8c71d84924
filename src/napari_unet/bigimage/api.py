"""The public entry points: :func:`predict_to_zarr` and its generator form.

``stack="planes"`` (2D images, and stacks plane by plane) goes chunk by chunk
(:mod:`.chunked`); ``"linked"`` and ``"views"`` go slab by slab (:mod:`.stack3d`).
Both write through the same store helpers (:mod:`.store`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from typing import Any

from .._generators import progress_callback, run_to_end
from ..device import select_device
from ..errors import NapariUnetError
from ..events import ChunkProgress
from ..model import UNet
from ..normalization import Normalization
from ..precision import resolve_precision
from ..tta import check_tta
from ..volume.axes import check_stack_mode
from .checks import DEFAULT_LABEL_MARGIN
from .chunked import iter_predict_chunks
from .output import LABEL_NAME, ZarrPrediction
from .stack3d import iter_predict_stack_to_zarr

# ChunkProgress lives in napari_unet.events; DEFAULT_LABEL_MARGIN in .checks
__all__ = ["DEFAULT_LABEL_MARGIN", "ChunkProgress", "iter_predict_to_zarr", "predict_to_zarr"]


def predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any = None,
    *,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    precision: str = "auto",
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    stack: str = "planes",
    voxel_size: Any = None,
    z_chunk: int | None = None,
    **postprocess: Any,
) -> ZarrPrediction:
    """Segment an image of any size chunk by chunk, on dask, into a zarr store.

    Parameters
    ----------
    model : UNet
        The network. It is copied (threaded scheduler) or sent once to every
        worker (distributed); the caller's model is not changed.
    image : path-like, dask array, zarr array or array-like
        A path is opened with :func:`open_image_lazily` (zarr, OME-Zarr, TIFF)
        and put in the model's layout; an OME-Zarr image's pixel size, units and
        offset then carry over to the result. An array is in the model's layout,
        as for :func:`napari_unet.predict_tiled`: ``(H, W)`` or ``(Z, H, W)`` for
        a single-channel model, ``(C, H, W)`` or ``(C, Z, H, W)`` for ``C``
        channels. Read window by window; never loaded whole.
    output : path-like, zarr store or None
        The OME-Zarr (NGFF 0.5) store to write: an image group holding the
        probabilities (when kept; else empty placeholder levels that take no
        space), with the instance labels as its label image
        ``labels/<label_name>`` (full resolution ``0`` and coarser ``1``, ...
        for display), and the run's metadata in the attribute
        ``"napari_unet"``. On a cluster it must be a location every worker can
        write (a shared file system, or an object store URL that zarr
        understands). None with ``into_input``.
    into_input : bool
        Write the labels into ``image``'s own ``labels/<label_name>`` (``image``
        must be the path of an OME-Zarr image; its NGFF version is kept), where
        other OME-Zarr tools look for them. Only that label image is written and
        the name added to the ``labels`` list; the image's arrays are never
        touched, and a label image of that name that napari-unet did not write is
        refused.
    label_name : str
        The label image's name under ``labels/``.
    scale : sequence of float or None
        Pixel size along ``(z,) y, x`` recorded in the result, when ``image`` is
        not an OME-Zarr path that gives it (for example a napari layer's scale).
    chunk : int, (int, int) or None
        Output chunk per side (1024 by default), which is also the unit of
        work. Rounded up to a multiple of the pooling factor ``2**(depth-1)``
        so that every chunk lies on the pooling grid of the whole image; capped
        at the image.
    tile_shape : int, (int, int) or None
        Output tile per forward pass inside a chunk, rounded up to the pooling
        factor and capped at the chunk. ``None`` takes the largest tiles whose
        activations fit ``memory_budget``, split evenly over the chunk. Pick a
        divisor of ``chunk`` to waste nothing. The result does not depend on it
        (to float rounding).
    batch_size : int
        Tiles per forward pass.
    device : str or None
        Resolved on each worker: ``None``/``"auto"`` picks CUDA, MPS, then CPU.
    normalization : Normalization, dict, False or None
        As for :func:`napari_unet.predict_tiled`. Percentiles come from a
        regular, shape-only subsample of at most about 4 million pixels, the
        same one the in-memory path uses; they are stored in the metadata.
    tta : bool
        Test-time augmentation, as for :func:`napari_unet.predict_tiled`: each
        tile predicted in the 8 symmetries of the square, probabilities
        averaged; about 8x the prediction time. Recorded in the metadata.
    precision : {"auto", "fp32", "bf16", "fp16"}
        As for :func:`napari_unet.segment`: resolved once, for the device of
        this process, and recorded in the metadata (``"precision"``).
    probabilities : bool
        Keep the float32 ``(K, ..., H, W)`` probabilities in the output (4 bytes
        per pixel and class). They are always computed, and otherwise deleted
        once the labels are written.
    threshold : float or None
        As for :func:`napari_unet.labels_from_probabilities`; None: the
        model's recommendation, else 0.5 (the policy of :func:`napari_unet.segment`).
    min_size : int or None
        Smallest object kept, in pixels; applies to whole objects, after
        merging across chunks. None: the model's recommendation, else 16.
    label_margin : int or None
        Pixels of neighbouring probabilities each chunk sees when it is
        labelled. ``None``: 0 for ``method="components"`` (exact without one),
        64 otherwise.
    memory_budget : int or None
        Bytes of activations one forward pass may use when ``tile_shape`` is
        None: 512 MiB by default (less if RAM is short; half the free GPU memory
        on the local scheduler with CUDA).
    scheduler : None, "threads", distributed.Client or str
        ``None``/``"threads"``: dask's local threaded scheduler. A
        ``distributed.Client``, or a scheduler address such as
        ``"tcp://10.0.0.1:8786"`` (connected for this run and closed after),
        runs on that cluster.
    num_workers : int or None
        Threads of the local scheduler (dask's default: one per core).
    retries : int
        Distributed only: times dask reruns a failed task (a lost worker, say)
        before the run fails. Reruns write the same bytes.
    overwrite : bool
        Replace an existing zarr store at ``output`` (only one napari-unet wrote),
        or with ``into_input`` the image's napari-unet labels of that name.
    progress : callable or None
        Called as ``progress(done, total)`` after every chunk of every phase.
    stack : {"planes", "linked", "views"}
        A ``(Z, H, W)`` stack's objects: each plane on its own (default), or 3D
        objects as for :func:`napari_unet.segment`, made slab by slab in Z
        (:func:`~napari_unet.bigimage.stack3d.iter_predict_stack_to_zarr`).
    voxel_size : sequence of float or None
        3D modes: ``(z, y, x)`` (default the OME-Zarr image's pixel sizes, else 1).
    z_chunk : int or None
        3D modes: planes per slab (default: as many as ``memory_budget`` allows).
    **postprocess
        As for :func:`napari_unet.labels_from_probabilities` (``method``, ``h``,
        ``smoothing``..., and ``diameter``: the objects' size in pixels, which
        scales the default watershed as ``segment``'s estimate does, in the 3D
        modes too; the image is not resized).

    Returns
    -------
    ZarrPrediction
        The output, opened lazily.

    Notes
    -----
    Probabilities equal :func:`napari_unet.predict_tiled` on the same image
    (exactly for the same tiles, else to float rounding). With
    ``method="components"`` the labels equal the in-memory labels, ids
    included. With the watershed each chunk is split on its own, seeing
    ``label_margin`` pixels around it; two pieces that meet across a chunk face
    become one object when either chunk's labelling puts them in one object. This
    matches the in-memory watershed for objects smaller than the margin; larger
    objects may be split or joined differently near chunk faces. Ids are
    consecutive and in raster order of each object's first pixel.
    """
    gen = iter_predict_to_zarr(
        model,
        image,
        output,
        into_input=into_input,
        label_name=label_name,
        scale=scale,
        chunk=chunk,
        tile_shape=tile_shape,
        batch_size=batch_size,
        device=device,
        normalization=normalization,
        tta=tta,
        precision=precision,
        probabilities=probabilities,
        threshold=threshold,
        min_size=min_size,
        label_margin=label_margin,
        memory_budget=memory_budget,
        scheduler=scheduler,
        num_workers=num_workers,
        retries=retries,
        overwrite=overwrite,
        stack=stack,
        voxel_size=voxel_size,
        z_chunk=z_chunk,
        **postprocess,
    )
    return run_to_end(gen, progress_callback(progress))


def iter_predict_to_zarr(
    model: UNet,
    image: Any,
    output: str | os.PathLike | Any = None,
    *,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
    scale: Sequence[float] | None = None,
    chunk: int | Sequence[int] | None = None,
    tile_shape: int | Sequence[int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    normalization: Normalization | dict | bool | None = None,
    tta: bool = False,
    precision: str = "auto",
    probabilities: bool = False,
    threshold: float | None = None,
    min_size: int | None = None,
    label_margin: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    stack: str = "planes",
    voxel_size: Any = None,
    z_chunk: int | None = None,
    **postprocess: Any,
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """Generator form of :func:`predict_to_zarr` (same arguments but ``progress``).

    Yields a :class:`ChunkProgress` before any work (``done == 0``), as every
    phase starts and after every chunk of it, and returns the :class:`ZarrPrediction`
    (``StopIteration.value``). Closing the generator between yields cancels the
    run within the chunks under way; the output then stays marked incomplete.
    Arguments are checked before the first yield.
    """
    tta = check_tta(tta)
    prec = resolve_precision(precision, select_device(device))
    options = dict(
        label_name=label_name, scale=scale, chunk=chunk, tile_shape=tile_shape,
        batch_size=batch_size, device=device, normalization=normalization, tta=tta,
        precision=prec, probabilities=probabilities, threshold=threshold, min_size=min_size,
        label_margin=label_margin, memory_budget=memory_budget, overwrite=overwrite,
    )  # fmt: skip
    if stack != "planes":
        return (
            yield from _iter_stack_3d(
                model, image, output, stack=stack, voxel_size=voxel_size, z_chunk=z_chunk,
                into_input=into_input, scheduler=scheduler, **options, **postprocess,
            )
        )  # fmt: skip
    return (
        yield from iter_predict_chunks(
            model, image, output, into_input=into_input, scheduler=scheduler,
            num_workers=num_workers, retries=retries, **options, **postprocess,
        )
    )  # fmt: skip


def _iter_stack_3d(
    model: UNet, image: Any, output: Any, *, into_input: bool, scheduler: Any, **options: Any
) -> Generator[ChunkProgress, None, ZarrPrediction]:
    """3D objects slab by slab (:mod:`.stack3d`), for what that path supports."""
    mode = check_stack_mode(options["stack"])
    if into_input:
        raise NapariUnetError(
            f"3D objects ({mode}) are written to a separate zarr store, not into the input "
            "image; give an output instead."
        )
    if scheduler not in (None, "threads"):
        raise NapariUnetError(
            f"3D objects ({mode}) run on this machine slab by slab, not on a dask cluster."
        )
    return (yield from iter_predict_stack_to_zarr(model, image, output, **options))
