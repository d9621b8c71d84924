"""Segmenting many images in one run: a folder or a list of files, one image at a time.

:func:`segment_files` is a generator, like the other long runs of the core: it
yields a :class:`BatchEvent` as each image starts, as its prediction progresses
and as it ends (with its object count, or with the one sentence that says why it
failed) and returns a :class:`BatchResult`. One image that fails (not an image,
too big, an output already there) is listed and the run goes on with the next.
Closing the generator (the GUI's Cancel) stops within one batch of tiles.

Results are named ``NAME_labels.tif`` (or ``NAME_labels.zarr``), in ``out_dir``
or next to each image: the names a training folder pairs with ``NAME.tif``, so a
corrected batch result can be trained on. :func:`image_files` skips these
names, so segmenting a folder twice never segments its own results.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._generators import run_to_end
from .errors import NapariUnetError

if TYPE_CHECKING:
    from .model import UNet

__all__ = [
    "BatchEvent",
    "BatchItem",
    "BatchResult",
    "BatchState",
    "OWN_OUTPUTS",
    "Outcome",
    "display_name",
    "image_files",
    "is_zarr_store",
    "iter_batch",
    "output_path",
    "problem_sentence",
    "segment_files",
    "segment_folder",
]

# What fileio.read_image reads (tifffile, then scikit-image), longest first so that
# "a.ome.tif" loses ".ome.tif", not ".tif".
_FILE_SUFFIXES = (
    ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".png", ".jpeg", ".jpg", ".bmp",
)  # fmt: skip
_ZARR_SUFFIXES = (".ome.zarr", ".zarr")
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: Name endings of napari-unet's own files, never taken for images to segment.
OWN_OUTPUTS = ("_labels", "_region", "_probabilities")
_FORMATS = ("tiff", "zarr")


class BatchState(Enum):
    """What a :class:`BatchEvent` reports."""

    STARTED = "started"  # an image begins
    PROGRESS = "progress"  # its prediction moved on
    DONE = "done"  # it is segmented (and written)
    FAILED = "failed"  # it failed; the run goes on with the next


@dataclass(frozen=True)
class BatchEvent:
    """Progress of a batch run.

    Attributes
    ----------
    state : BatchState
    source : pathlib.Path or str
        The image: a file's path, or whatever the caller of :func:`iter_batch`
        names its items by (the GUI: a layer name).
    index : int
        Its place in the run, from 0.
    total : int
        Images in the run.
    fraction : float
        Share of this image done, 0..1.
    n_objects : int or None
        Objects found (DONE).
    output : pathlib.Path or None
        Where the result was written (DONE, for files).
    message : str
        Why it failed, in one sentence (FAILED).
    data : Any
        What the item's work handed back besides its count (the GUI's arrays);
        None for files, whose results are on disk.
    """

    state: BatchState
    source: Path | str
    index: int
    total: int
    fraction: float = 0.0
    n_objects: int | None = None
    output: Path | None = None
    message: str = ""
    data: Any = None

    @property
    def overall(self) -> float:
        """Share of the whole run done, 0..1 (drives one progress bar)."""
        done = self.index + (1.0 if self.state in (BatchState.DONE, BatchState.FAILED) else 0.0)
        if self.state is BatchState.PROGRESS:
            done += self.fraction
        return done / max(self.total, 1)


@dataclass(frozen=True)
class BatchItem:
    """One image a batch segmented: where the result went and how many objects it has."""

    source: Path | str
    n_objects: int
    output: Path | None = None


@dataclass(frozen=True)
class BatchResult:
    """What :func:`segment_files` (and :func:`iter_batch`) return.

    Attributes
    ----------
    done : list of BatchItem
        The images segmented, in the order given.
    failures : list of (source, str)
        The images that failed, each with its one-sentence reason.
    cancelled : bool
        Whether the run stopped before its last image (only :func:`iter_batch`'s
        callers that stop it themselves set this).
    """

    done: list[BatchItem] = field(default_factory=list)
    failures: list[tuple[Path | str, str]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def n_objects(self) -> int:
        """Objects found in all images together."""
        return sum(item.n_objects for item in self.done)

    def summary(self) -> str:
        """One line: "12 images: 1,234 objects; 1 failed: bad.tif"."""
        n = len(self.done) + len(self.failures)
        text = f"{n} image{'s' if n != 1 else ''}: {self.n_objects:,} objects"
        if self.failures:
            names = ", ".join(display_name(source) for source, _ in self.failures)
            text += f"; {len(self.failures)} failed: {names}"
        return text


class Outcome(NamedTuple):
    """What one item's work returns to :func:`iter_batch`."""

    n_objects: int
    output: Path | None = None
    data: Any = None


def display_name(source: Path | str) -> str:
    """A file's name (not its whole path), or the item's own name."""
    return source.name if isinstance(source, Path) else str(source)


def _strip_suffix(name: str) -> str | None:
    """``name`` without its image suffix, or None when it has none we read."""
    lower = name.lower()
    for suffix in (*_FILE_SUFFIXES, *_ZARR_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store (a folder with zarr metadata)."""
    p = Path(path)
    return p.is_dir() and any((p / marker).exists() for marker in _ZARR_MARKERS)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images in ``folder`` that a batch segments, sorted by name.

    TIFF, PNG, JPEG and BMP files and zarr stores are taken; hidden files and
    napari-unet's own outputs (``*_labels.*``, ``*_region.*``,
    ``*_probabilities.*``) are not, so a folder can be segmented again
    without segmenting its results. Sub-folders that are not zarr stores are
    not searched.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    list of pathlib.Path
        Possibly empty.
    """
    p = Path(folder)
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is a file, not a folder"
        raise NapariUnetError(f"The folder {p} {what}.")
    try:
        entries = sorted(p.iterdir(), key=lambda e: e.name)
    except PermissionError:
        raise NapariUnetError(f"The folder {p} is not readable (permission denied).") from None
    found = []
    for entry in entries:
        stem = _strip_suffix(entry.name)
        if stem is None or entry.name.startswith(".") or stem.endswith(OWN_OUTPUTS):
            continue
        if entry.is_file() or is_zarr_store(entry):
            found.append(entry)
    return found


def output_path(
    image: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    zarr: bool = False,
    kind: str = "labels",
) -> Path:
    """Where a batch writes ``image``'s result: ``NAME_labels.tif`` (or ``.zarr``).

    Parameters
    ----------
    image : path-like
        The input image.
    out_dir : path-like or None
        The folder for results; None: next to the image.
    zarr : bool
        A zarr store instead of a TIFF file.
    kind : str
        ``"labels"`` or ``"probabilities"``.

    Returns
    -------
    pathlib.Path
    """
    p = Path(image)
    stem = _strip_suffix(p.name) or p.stem
    folder = Path(out_dir) if out_dir is not None else p.parent
    return folder / f"{stem}_{kind}{'.zarr' if zarr else '.tif'}"


def problem_sentence(source: Path | str, exc: BaseException) -> str:
    """One sentence for why ``source`` failed, whatever was raised."""
    if isinstance(exc, NapariUnetError):
        return str(exc)
    name = display_name(source)
    if isinstance(exc, MemoryError):
        return f"{name} does not fit in memory; try a smaller tile."
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{name}: {exc.strerror or exc}{where}."
    return f"{name}: unexpected error: {type(exc).__name__}: {exc}."


def iter_batch(
    sources: Sequence[Path | str],
    segment_one: Callable[[Any, int], Generator[Any, None, Outcome]],
) -> Generator[BatchEvent, None, BatchResult]:
    """Run ``segment_one`` on every source; one that fails does not stop the others.

    Parameters
    ----------
    sources : sequence
        The items, in order (paths for files).
    segment_one : callable
        ``segment_one(source, index)`` returns a generator that may yield events
        with ``done`` and ``total`` (tile or chunk progress; others are ignored)
        and returns an :class:`Outcome`. Any exception it raises fails that item
        only, with :func:`problem_sentence` as the reason.

    Yields
    ------
    BatchEvent
        STARTED, PROGRESS..., then DONE or FAILED, for each item in turn.

    Returns
    -------
    BatchResult
    """
    n = len(sources)
    done: list[BatchItem] = []
    failures: list[tuple[Path | str, str]] = []
    for i, source in enumerate(sources):
        yield BatchEvent(BatchState.STARTED, source, i, n)
        try:
            gen = segment_one(source, i)
            outcome = yield from _progress_of(gen, source, i, n)
        except Exception as exc:  # one image's problem, whatever it is, is that image's
            message = problem_sentence(source, exc)
            failures.append((source, message))
            yield BatchEvent(BatchState.FAILED, source, i, n, message=message)
            continue
        done.append(BatchItem(source, int(outcome.n_objects), outcome.output))
        yield BatchEvent(
            BatchState.DONE,
            source,
            i,
            n,
            fraction=1.0,
            n_objects=int(outcome.n_objects),
            output=outcome.output,
            data=outcome.data,
        )
    return BatchResult(done, failures)


def _progress_of(gen: Generator, source: Path | str, i: int, n: int) -> Generator:
    """Pass on ``gen``'s tile/chunk progress as PROGRESS events; return its result."""
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            total = getattr(event, "total", None)
            if total:
                fraction = min(1.0, getattr(event, "done", 0) / total)
                yield BatchEvent(BatchState.PROGRESS, source, i, n, fraction=fraction)
    finally:
        gen.close()  # a cancel (GeneratorExit here) stops the image's work at once


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
    from .modelfile import resolve_model_arg
    from .segment import check_diameter, rescale_for_diameter
    from .tta import check_tta

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
        zarr_out = output_format == "zarr" or _is_zarr_input(path)
        outputs = [output_path(path, out_dir, zarr=zarr_out)]
        if probabilities and not zarr_out:
            outputs.append(output_path(path, out_dir, kind="probabilities"))
        for out in outputs:
            _check_batch_output(out, inputs, written, overwrite)
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


def _is_zarr_input(path: Path) -> bool:
    return path.is_dir() and (path.name.lower().endswith(".zarr") or is_zarr_store(path))


# The TIFF Software tag of batch results: only files carrying it are ever replaced.
SOFTWARE = "napari-unet batch"


def _check_batch_output(out: Path, inputs: set[Path], written: set[Path], overwrite: bool) -> None:
    """Refuse, for this image only, an output that would replace data."""
    target = out.resolve()
    if target in inputs or any(i in target.parents or target in i.parents for i in inputs):
        raise NapariUnetError(f"The result {out} would overwrite an input image; it was skipped.")
    if target in written:
        raise NapariUnetError(
            f"Another image of this batch already wrote {out.name} (two images with one name); "
            "this one was skipped."
        )
    if out.exists() and not overwrite:
        raise NapariUnetError(
            f"{out} already exists and was kept; allow overwriting to replace it."
        )
    if out.is_file() and not written_by_batch(out):
        # NAME_labels.tif is also what a hand-made annotation is called (train --data)
        raise NapariUnetError(
            f"{out} was not written by napari-unet (it may be your own annotation); "
            "it was kept. Write the results into another folder."
        )


def written_by_batch(path: Path) -> bool:
    """Whether the TIFF at ``path`` is a result napari-unet's batch wrote (its Software tag)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get("Software")
            return tag is not None and str(tag.value).startswith(SOFTWARE)
    except Exception:  # not a TIFF, or unreadable: not ours
        return False


def _segment_to_tiff(
    model: UNet, path: Path, outputs: list[Path], size: dict, options: dict
) -> Generator[Any, None, Outcome]:
    """Read the image, segment it in memory, write the labels (and probabilities).

    ``size``: ``diameter`` and ``rescale`` for :func:`napari_unet.segment.iter_segment`.
    """
    from .fileio import read_image, write_tiff
    from .layout import to_model_layout
    from .postprocess import foreground_probability
    from .segment import iter_segment

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
    from .bigimage import iter_predict_to_zarr, open_image_lazily
    from .fileio import read_image
    from .layout import to_model_layout

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
