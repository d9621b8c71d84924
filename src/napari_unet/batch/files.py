"""Segmenting image files in one run (a folder or a list), one image at a time.

Each image is read into memory and written as TIFF, or predicted chunk by chunk
into a zarr store; results are named by :mod:`napari_unet.batch.naming` and
checked by :mod:`napari_unet.batch.output_checks` before any work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._generators import run_to_end
from ..errors import NapariUnetError
from ..fileio import is_zarr_input
from .events import BatchEvent, BatchResult, Outcome
from .naming import image_files, output_path
from .output_checks import SOFTWARE, check_batch_output
from .runner import iter_batch

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["segment_files", "segment_folder"]

_FORMATS = ("tiff", "zarr")


def segment_files(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    *,
    model: UNet | Callable[[], UNet],
    output_format: str = "tiff",
    overwrite: bool = False,
    probabilities: bool = False,
    rescale: float | None = None,
    diameter: float | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    batch_size: int = 1,
    device: str | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    chunk: int | None = None,
    scheduler: Any = None,
    tta: bool = False,
    **postprocess: Any,
) -> Generator[BatchEvent, None, BatchResult]:
    """Segment image files one at a time, writing ``NAME_labels.tif`` (or ``.zarr``) for each.

    Parameters
    ----------
    paths : iterable of path-like
        Image files and zarr stores (see :func:`image_files` for a folder).
    out_dir : path-like or None
        The folder for results (it must exist); None writes each next to its image.
    model : UNet or callable
        The network, or a function that loads it (called once, when the run
        starts: in the worker, for the GUI).
    output_format : {"tiff", "zarr"}
        TIFF files (the image is read into memory, through
        :func:`napari_unet.segment`), or zarr stores written chunk by chunk
        (:func:`napari_unet.predict_to_zarr`). Zarr inputs always give zarr
        stores: they may not fit in memory.
    overwrite : bool
        Replace existing results (atomically for TIFF; only stores napari-unet
        wrote for zarr). Without it an image whose result exists fails, and
        the result is kept.
    probabilities : bool
        Also keep the foreground probability: ``NAME_probabilities.tif``, or in
        the zarr store.
    rescale, diameter
        Resize images for the network: a factor, or the typical object diameter
        in pixels (see :func:`napari_unet.segment.rescale_for_diameter`). TIFF
        output only. With neither, each image's object size is estimated and
        the image resized when it is outside the model's range (as
        :func:`napari_unet.segment` does); ``rescale=1`` keeps every image as it
        is. Zarr output never resizes.
    tile_shape, batch_size, device, threshold, min_size, **postprocess
        As for :func:`napari_unet.segment`.
    chunk, scheduler
        Zarr output: as for :func:`napari_unet.predict_to_zarr`.
    tta : bool
        Test-time augmentation (8 symmetries averaged, about 8x the time), as
        for :func:`napari_unet.segment`; TIFF and zarr output alike.

    Yields
    ------
    BatchEvent
        For each image: STARTED, PROGRESS (tile or chunk progress), then DONE with
        its object count and output, or FAILED with one sentence.

    Returns
    -------
    BatchResult
        Sources are the paths as given. Closing the generator between yields
        stops the run within one batch of tiles (zarr: the chunks under way);
        a result left half-written is removed, finished ones stay.

    Raises
    ------
    NapariUnetError
        Before any image is read, for arguments no image could succeed with
        (the model, the output folder, an unknown format, resizing into zarr).
    """
    from ..modelfile import resolve_model_arg
    from ..segment import check_diameter, rescale_for_diameter
    from ..tta import check_tta

    paths = [Path(p) for p in paths]
    tta = check_tta(tta)
    if output_format not in _FORMATS:
        raise NapariUnetError(f"The output format must be 'tiff' or 'zarr', not {output_format!r}.")
    if not paths:
        raise NapariUnetError("There are no images to segment.")
    if out_dir is not None and not Path(out_dir).is_dir():
        raise NapariUnetError(f"The output folder {out_dir} does not exist.")
    if out_dir is not None and not os.access(out_dir, os.W_OK):
        raise NapariUnetError(f"The output folder {out_dir} is not writable.")
    if diameter is not None:
        check_diameter(diameter)  # 0, negative, NaN: refused before any image
    resizing = diameter is not None or (rescale is not None and rescale != 1.0)
    if resizing and output_format == "zarr":
        raise NapariUnetError(
            "Resizing for an object diameter works on images in memory, not on zarr output; "
            "write TIFF results or resize the images first."
        )
    model = resolve_model_arg(model)
    if diameter is not None:
        rescale_for_diameter(model, diameter)  # a diameter the model cannot use: refused now
    size = {"diameter": diameter, "rescale": rescale}
    inputs = {p.resolve() for p in paths}
    written: set[Path] = set()
    options = {
        "tile_shape": tile_shape,
        "batch_size": batch_size,
        "device": device,
        "threshold": threshold,
        "min_size": min_size,
        "tta": tta,
        **postprocess,
    }

    def segment_one(path: Path, _index: int) -> Generator:
        zarr_out = output_format == "zarr" or is_zarr_input(path)
        outputs = [output_path(path, out_dir, zarr=zarr_out)]
        if probabilities and not zarr_out:
            outputs.append(output_path(path, out_dir, kind="probabilities"))
        for out in outputs:
            check_batch_output(out, inputs, written, overwrite)
        if zarr_out and resizing:
            raise NapariUnetError(
                f"{path.name} is a zarr store, which is segmented chunk by chunk without "
                "resizing; leave the object diameter out for it."
            )
        if zarr_out:
            outcome = yield from _segment_to_zarr(
                model, path, outputs[0], overwrite, probabilities, chunk, scheduler, options
            )
        else:
            outcome = yield from _segment_to_tiff(model, path, outputs, size, options)
        written.update(out.resolve() for out in outputs)
        return outcome

    return (yield from iter_batch(paths, segment_one))


def segment_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    model: UNet | Callable[[], UNet],
    progress: Callable[[BatchEvent], Any] | None = None,
    **options: Any,
) -> BatchResult:
    """Segment every image in ``folder`` (see :func:`image_files`); blocking.

    Parameters
    ----------
    folder : path-like
    out_dir : path-like or None
        Where the results go (created if missing); None: next to the images.
    model : UNet or callable
    progress : callable or None
        Called with every :class:`BatchEvent`.
    **options
        As for :func:`segment_files`.

    Returns
    -------
    BatchResult
        Check ``failures``: a failed image does not raise.
    """
    paths = image_files(folder)
    if not paths:
        raise NapariUnetError(f"The folder {folder} holds no images (TIFF, PNG, JPEG or zarr).")
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    return run_to_end(segment_files(paths, out_dir, model=model, **options), progress)


def _segment_to_tiff(
    model: UNet, path: Path, outputs: list[Path], size: dict, options: dict
) -> Generator[Any, None, Outcome]:
    """Read the image, segment it in memory, write the labels (and probabilities).

    ``size``: ``diameter`` and ``rescale`` for :func:`napari_unet.segment.iter_segment`.
    """
    from ..fileio import read_image, write_tiff
    from ..layout import to_model_layout
    from ..postprocess import foreground_probability
    from ..segment import iter_segment

    image = to_model_layout(read_image(path), model.in_channels)
    result = yield from iter_segment(model, image, **size, **options)
    labels = result.labels
    n_objects = int(labels.max()) if labels.size else 0  # ids are consecutive
    # uint16 opens everywhere (Fiji included); wider only when the ids need it
    dtype = "uint16" if n_objects < 2**16 else "uint32"
    write_tiff(outputs[0], labels.astype(dtype), compression="zlib", software=SOFTWARE)
    if len(outputs) > 1:
        prob = result.probabilities
        p = foreground_probability(prob) if prob.shape[0] == 2 else prob
        write_tiff(outputs[1], p.astype("float32"), compression="zlib", software=SOFTWARE)
    return Outcome(n_objects, outputs[0])


def _segment_to_zarr(
    model: UNet,
    path: Path,
    out: Path,
    overwrite: bool,
    probabilities: bool,
    chunk: int | None,
    scheduler: Any,
    options: dict,
) -> Generator[Any, None, Outcome]:
    """Predict chunk by chunk into ``out``; a store left incomplete is removed."""
    from ..bigimage import iter_predict_to_zarr, open_image_lazily
    from ..fileio import read_image
    from ..layout import to_model_layout

    if path.is_dir():  # opened lazily there; an OME-Zarr image's pixel size carries over
        image = path
    elif path.name.lower().endswith((".tif", ".tiff", ".btf", ".tf8")):
        image = to_model_layout(open_image_lazily(path), model.in_channels)
    else:  # PNG, JPEG...: small formats that have no lazy reader
        image = to_model_layout(read_image(path), model.in_channels)
    gen = iter_predict_to_zarr(
        model,
        image,
        out,
        chunk=chunk,
        scheduler=scheduler,
        overwrite=overwrite,
        probabilities=probabilities,
        **options,
    )
    created = False
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return Outcome(int(stop.value.n_objects), out)
            created = True  # the store exists (marked incomplete) from the first event on
            yield event
    except BaseException:
        gen.close()  # waits for the chunks under way, so nothing writes after the removal
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
