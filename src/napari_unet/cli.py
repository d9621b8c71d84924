"""The ``napari-unet`` command.

Every expected failure prints one line and exits non-zero, without a traceback;
``--debug`` shows tracebacks for bug reports.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ._generators import run_to_end
from .augment import AugmentConfig
from .batch import BatchState, display_name, image_files, is_zarr_store, segment_files
from .bigimage import iter_predict_to_zarr
from .errors import NapariUnetError
from .events import Announcement, SizeChoice, SizeProgress
from .fileio import check_output_path, read_image, read_voxel_size, write_tiff
from .layout import channel_count, check_same_channels, to_model_layout
from .modelfile import load_model
from .postprocess import foreground_probability
from .segment import check_diameter, describe_stack_mode, iter_segment
from .training import (
    TrainConfig,
    Trainer,
    TrainState,
    find_pairs,
    new_model,
    prepare_training_data,
)
from .training.validation import compare_to_start
from .volume.voxels import check_voxel_size
from .weightmap import unet_weight_map

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="napari-unet",
        description="Segment microscopy images with the U-Net of Ronneberger et al. (2015).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_predict(sub)
    _add_train(sub)
    _add_weightmap(sub)
    _add_export(sub)
    return parser


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="segment an image into instance labels",
        description="Segment IMAGE by overlap-tile prediction and write instance labels as TIFF. "
        "Several images, or a folder of images, are segmented one at a time into the folder "
        "OUTPUT as NAME_labels.tif (or NAME_labels.zarr); an image that fails is listed at the "
        "end and the others go on (exit status 1 if any failed).",
    )
    p.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help="input image (TIFF or any format scikit-image reads, or a zarr store); "
        "several images or a folder for a batch",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="labels TIFF (or OME-Zarr OUT.zarr) to write; for several images or a folder, the "
        "folder for the results (created if missing)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model file (.safetensors) or bioimage.io package napari-unet exported (.zip), "
        "or 'bundled' (default: the bundled nuclei model)",
    )
    p.add_argument("--tile", type=int, default=None, help="output tile size in pixels")
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: predict every tile in the 8 mirror and quarter-turn "
        "symmetries and average the probabilities (about 8x the time)",
    )
    p.add_argument("--probabilities", type=Path, default=None, help="also write probabilities")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (default: bf16 where a one-time measurement on this computer found it "
        "at least 1.3x faster, else fp32), fp32, bf16, or fp16 (CUDA only)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="foreground probability cut (default: the model's calibrated rule, else 0.5)",
    )
    p.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="smallest object kept, in pixels (default: the model's calibrated rule, else 16)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--diameter",
        type=float,
        default=None,
        help="typical object diameter in pixels; the image is resized into the model's range "
        "(default: estimated from the image, and the estimate printed)",
    )
    size.add_argument(
        "--rescale",
        type=float,
        default=None,
        help="resize the image by this factor for prediction (results come back full size); "
        "--rescale 1 keeps the image as it is, without estimating the object size",
    )
    p.add_argument(
        "--stack",
        choices=["planes", "linked", "views"],
        default="planes",
        help="a stack's objects: each plane on its own (default; time-lapse), 3D objects by "
        "linking planes, or 3D objects from three views (XY, XZ, YZ); the first axis of a 3D "
        "TIFF or zarr stack is Z (a zarr stack goes slab by slab in Z, any size)",
    )
    p.add_argument(
        "--voxel-size",
        default=None,
        metavar="Z,Y,X",
        help="voxel size for the 3D modes, e.g. 4,1,1 (default: the TIFF's ImageJ spacing and "
        "resolution, or an OME-Zarr image's pixel sizes, else 1,1,1)",
    )
    p.add_argument(
        "--z-axis",
        type=int,
        default=None,
        help="3D modes: which axis is Z when the image has more than three",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask.distributed scheduler address (zarr output), e.g. tcp://host:8786",
    )
    p.add_argument("--chunk", type=int, default=None, help="zarr output: chunk side in pixels")
    p.add_argument(
        "--into-input",
        action="store_true",
        help="write the labels into the input OME-Zarr image's own labels/ group (no -o); "
        "the image's arrays are never touched",
    )
    p.add_argument(
        "--label-name",
        default="segmentation",
        help="zarr output: name of the label image under labels/ (default: segmentation)",
    )
    p.add_argument(
        "--zarr",
        action="store_true",
        help="batch: write NAME_labels.zarr stores instead of TIFF files (zarr inputs always do)",
    )
    p.set_defaults(func=_cmd_predict)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand."""
    t = sub.add_parser(
        "train",
        help="train or fine-tune a U-Net on annotated images",
        description="Train a U-Net on images and their instance labels: --image A B "
        "--labels A_labels B_labels, or --data DIR. Unpainted pixels are unknown: the loss "
        "covers the labelled cells, a thin ring and the narrow gaps around them, and an "
        "optional annotated-region mask (complete there); --complete says every unlabelled "
        "pixel is background. Ctrl-C stops after the current step and still saves the model.",
    )
    data = t.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--image",
        type=Path,
        nargs="+",
        action="extend",
        help="training image(s): a training set may hold several, of any size",
    )
    data.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of NAME.tif with NAME_labels.tif (and optional NAME_region.tif)",
    )
    t.add_argument(
        "--labels", type=Path, nargs="+", action="extend", help="their labels, in the same order"
    )
    t.add_argument(
        "--region",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        help="annotated-region masks, one per image (optional)",
    )
    t.add_argument(
        "--complete",
        action="store_true",
        help="the labels are complete: every unlabelled pixel is background (the paper's "
        "dense ground truth); outside a --region nothing counts",
    )
    t.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    t.add_argument(
        "--from",
        dest="start",
        default=None,
        help="start model: 'bundled' (default), 'scratch' or a model file",
    )
    t.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint")
    t.add_argument("--steps", type=int, default=None, help="step budget")
    t.add_argument("--time-limit", type=float, default=None, help="time budget in seconds")
    t.add_argument("--seed", type=int, default=None, help="random seed")
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--optimizer", choices=["adam", "sgd"], default=None)
    t.add_argument("--width", type=int, default=None, help="base channels (from scratch)")
    t.add_argument("--tile", type=int, default=None, help="training tile (network input) size")
    t.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    t.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    t.add_argument(
        "--precision",
        default=None,
        help="auto (default: bf16 where a one-time measurement on this computer found it "
        "at least 1.3x faster, else fp32), fp32, bf16, or fp16 (CUDA only)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    t.set_defaults(func=_cmd_train)


def _add_weightmap(sub: argparse._SubParsersAction) -> None:
    """The ``weightmap`` subcommand."""
    w = sub.add_parser(
        "weightmap",
        help="compute the paper's boundary weight map of a label image",
        description="Write w(x) = w_c(x) + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) as float32 TIFF.",
    )
    w.add_argument("labels", type=Path, help="instance label image")
    w.add_argument("-o", "--output", type=Path, required=True, help="weight map TIFF to write")
    w.add_argument("--w0", type=float, default=10.0, help="border weight (paper: 10)")
    w.add_argument("--sigma", type=float, default=5.0, help="border width in pixels (paper: 5)")
    w.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    w.set_defaults(func=_cmd_weightmap)


def _add_export(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand."""
    e = sub.add_parser(
        "export",
        help="write a model as a bioimage.io package (Fiji/deepImageJ, ilastik, QuPath)",
        description="Write MODEL as a bioimage.io model package (.zip) with PyTorch state-dict, "
        "TorchScript and ONNX weights, test tensors computed by napari-unet, a cover and a "
        'model card. Needs the export extra: pip install "napari-unet[export]".',
    )
    e.add_argument(
        "model", help="model file (.safetensors), or 'bundled' for the bundled nuclei model"
    )
    e.add_argument("-o", "--output", type=Path, required=True, help="package (.zip) to write")
    e.add_argument("--name", help="model name on bioimage.io (default: the model's own)")
    e.add_argument(
        "--author",
        action="append",
        dest="authors",
        metavar="NAME",
        help="author name (repeat for several)",
    )
    e.add_argument(
        "--test-image",
        type=Path,
        help="2D image to compute the test tensors and the cover from (default: synthetic nuclei)",
    )
    e.add_argument("--cover", type=Path, help="cover image (PNG/JPEG) instead of the overlay")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    e.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export.bioimageio import iter_export_bioimageio

    check_output_path(args.output, overwrite=args.overwrite)
    model = _load_model(args.model)
    image = read_image(args.test_image) if args.test_image is not None else None
    bar = tqdm(total=1, desc="export", file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")
    try:
        gen = iter_export_bioimageio(
            model,
            args.output,
            name=args.name,
            authors=args.authors,
            cover=args.cover,
            test_image=image,
            overwrite=args.overwrite,
        )

        def show(event) -> None:
            bar.total = event.total
            bar.n = event.done
            bar.set_postfix_str(event.step, refresh=True)

        path = run_to_end(gen, show)
    finally:
        bar.close()
    print(f"Wrote the bioimage.io package {path}.", file=sys.stderr)
    return 0


class _ProgressBar:
    """A tqdm bar on stderr, created on the first update (when the total is known)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        elif total != self.bar.total or done < self.bar.n:  # a new pass (the size estimate's)
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _PhaseBars:
    """Progress of a segmentation: a bar for the size estimate, the size chosen, a bar to predict.

    ``said`` is the size sentence, printed when the choice is made (before the
    prediction starts).
    """

    def __init__(self, unit: str = "tile") -> None:
        self.bars = {"size": _ProgressBar("object size", "tile"), "predict": None}
        self.unit = unit
        self.said = None

    def __call__(self, event) -> None:
        if isinstance(event, Announcement):  # the size chosen, a resize's cost
            self.bars["size"].close()
            if isinstance(event, SizeChoice):  # also among the notes: said once
                self.said = event.message
            print(event.text, file=sys.stderr)
            return
        if isinstance(event, SizeProgress):
            self.bars["size"](event.done, event.total)
            return
        if self.bars["predict"] is None:
            self.bars["size"].close()
            self.bars["predict"] = _ProgressBar("predict", self.unit)
        self.bars["predict"](event.done, event.total)

    def close(self) -> None:
        for bar in self.bars.values():
            if bar is not None:
                bar.close()


def _load_model(spec: str | None):
    """The model named on the command line: a file, or the bundled one when None."""
    if spec in (None, "bundled"):
        # an optional subpackage (the GUI checks that it is installed)
        from .bundled import load_bundled_model

        return load_bundled_model()
    return load_model(Path(spec))


def _wants_zarr(args: argparse.Namespace) -> bool:
    """Big-image mode: a zarr store in or out, a cluster, or explicit chunks."""
    zarr_dir = args.image.is_dir() and any(
        (args.image / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")
    )
    return (
        args.output.suffix == ".zarr"
        or args.image.suffix == ".zarr"
        or zarr_dir
        or args.scheduler is not None
        or args.chunk is not None
    )


def _cmd_predict_zarr(args: argparse.Namespace) -> int:
    """Chunk-by-chunk prediction into a zarr store (memory bounded by a few tiles)."""
    if args.output.suffix != ".zarr":
        raise NapariUnetError(
            "Zarr inputs, --scheduler and --chunk write a zarr store; name the output OUT.zarr."
        )
    src, out = args.image.resolve(), args.output.resolve()
    if out == src or out in src.parents or src in out.parents:
        raise NapariUnetError(f"The output {args.output} would overwrite the input image.")
    if args.probabilities and args.probabilities.resolve() != args.output.resolve():
        raise NapariUnetError(
            "With a zarr output the probabilities go into the same store; "
            "pass --probabilities OUT.zarr."
        )
    if args.diameter is not None or args.rescale is not None:
        raise NapariUnetError(
            "--diameter and --rescale work on images that fit in memory, not on zarr output; "
            "resize the image first."
        )
    model = _load_model(args.model)
    options = {}
    if args.stack != "planes":  # 3D objects, slab by slab in Z
        options = dict(stack=args.stack, voxel_size=args.voxel_size)
        if args.z_axis not in (None, 0):
            raise NapariUnetError(
                "A zarr stack for 3D objects must be (Z, Y, X) with Z first; --z-axis is for TIFF."
            )
    gen = iter_predict_to_zarr(
        model,
        args.image,  # opened lazily; an OME-Zarr image's pixel size carries over
        args.output,
        **options,
        label_name=args.label_name,
        chunk=args.chunk,
        tile_shape=args.tile,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        precision=_resolved(args),
        probabilities=args.probabilities is not None,
        threshold=args.threshold,
        min_size=args.min_size,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
    )
    result = _run_with_bar(gen, before=lambda: _say_size(model, args.image, args), args=args)
    print(f"{result.n_objects} objects written to {args.output}", file=sys.stderr)
    return 0


def _cmd_predict_into_input(args: argparse.Namespace) -> int:
    """Chunk-by-chunk prediction into the input OME-Zarr image's ``labels/`` group."""
    from .bigimage.ngff import read_source_image

    if len(args.images) != 1:
        raise NapariUnetError("--into-input takes one OME-Zarr image.")
    image = args.images[0]
    if args.output is not None:
        raise NapariUnetError("--into-input writes into the image itself; leave out -o.")
    if args.probabilities is not None or args.zarr:
        raise NapariUnetError(
            "--into-input writes only labels into the image; for probabilities write a "
            "separate output with -o OUT.zarr."
        )
    if args.diameter is not None or args.rescale is not None:
        raise NapariUnetError(
            "--diameter and --rescale work on images that fit in memory, not on zarr output; "
            "resize the image first."
        )
    if not image.exists():
        raise NapariUnetError(f"The image {image} does not exist.")
    if read_source_image(image) is None:
        raise NapariUnetError(
            f"--into-input needs an OME-Zarr image (a zarr group with multiscales metadata); "
            f"{image} is not one."
        )
    model = _load_model(args.model)
    gen = iter_predict_to_zarr(
        model,
        image,
        into_input=True,
        label_name=args.label_name,
        chunk=args.chunk,
        tile_shape=args.tile,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        precision=_resolved(args),
        threshold=args.threshold,
        min_size=args.min_size,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
    )
    result = _run_with_bar(gen, before=lambda: _say_size(model, image, args), args=args)
    print(f"{result.n_objects} objects written to {image}/{result.label_path}", file=sys.stderr)
    return 0


def _say_size(model, path: Path, args: argparse.Namespace) -> None:
    """Zarr inputs keep their scale: print the estimated object size and whether it suits.

    The estimate reads a crop of at most 1024x1024 px of three planes and
    segments a window of 256x256 px at most, whatever the image's size.
    """
    from .bigimage import open_image_lazily
    from .layout import to_model_layout
    from .sizing import choose_rescale, iter_estimate_diameter

    bar = _ProgressBar("object size", "tile")
    try:
        lazy = to_model_layout(open_image_lazily(path), model.in_channels)
        gen = iter_estimate_diameter(
            lazy, model, tile_shape=args.tile, batch_size=args.batch_size, device=args.device
        )
        estimate = run_to_end(gen, lambda event: bar(event.done, event.total))
    except NapariUnetError:
        return  # the prediction says what is wrong with the image, in its own words
    finally:
        bar.close()
    print(choose_rescale(model, estimate, can_resize=False)[1], file=sys.stderr)


def _run_with_bar(gen, before=None, args=None):
    """Run a big-image generator to its end with a progress bar on stderr.

    The bar appears with the first event: arguments refused before it leave
    only their one sentence. ``before`` is called then, before the bar (the
    size estimate's line), after the precision's line (``args``).
    """
    bars = []

    def show(event) -> None:
        if not bars:
            if args is not None:
                _say_precision(args)
            if before is not None:
                before()
            bars.append(tqdm(total=0, desc="predict", unit="step", file=sys.stderr))
        bar = bars[0]
        # done/total counts over all phases (statistics, predict, label, relabel)
        bar.total = event.total
        bar.set_description(event.phase, refresh=False)
        bar.update(event.done - bar.n)

    try:
        return run_to_end(gen, show)
    finally:
        for bar in bars:
            bar.close()


def _check_precision(args: argparse.Namespace) -> None:
    """Refuse a precision the device cannot run, before any work."""
    from .device import select_device
    from .precision import check_precision

    check_precision(args.precision, select_device(args.device))


def _resolved(args: argparse.Namespace):
    """``--precision`` resolved once for the whole run; ``args.precision`` becomes it.

    The first run on a machine measures, waiting at most a second.
    """
    from .device import select_device
    from .precision import resolve_precision

    args.precision = resolve_precision(args.precision, select_device(args.device))
    return args.precision


def _say_precision(args: argparse.Namespace) -> None:
    """Print which precision runs and why."""
    print(_resolved(args).describe(), file=sys.stderr)


def _first_event(callback, args: argparse.Namespace):
    """``callback`` that prints the precision's line before the first event."""
    said = []

    def call(event) -> None:
        if not said:
            said.append(True)
            _say_precision(args)
        callback(event)

    return call


def _cmd_predict(args: argparse.Namespace) -> int:
    _check_precision(args)
    if args.tile is not None and args.tile < 1:
        raise NapariUnetError(f"--tile must be a positive number of pixels, got {args.tile}.")
    stack_3d = args.stack != "planes"
    if args.diameter is not None:
        check_diameter(args.diameter)  # 0, negative, NaN: refused before any work
    if args.voxel_size is not None:
        voxel_size = check_voxel_size(args.voxel_size)  # refused before any work
    if args.into_input:
        if stack_3d:
            raise NapariUnetError(
                f"--stack {args.stack} writes a separate store (-o OUT.zarr); --into-input "
                "segments an OME-Zarr image plane by plane."
            )
        return _cmd_predict_into_input(args)
    if args.output is None:
        raise NapariUnetError(
            "Name the output with -o OUTPUT (or write the labels into an OME-Zarr image "
            "with --into-input)."
        )
    if _is_batch(args):
        if stack_3d:
            raise NapariUnetError(
                f"--stack {args.stack} takes one image written as TIFF; "
                "run it once per stack for now."
            )
        return _cmd_predict_batch(args)
    args.image = args.images[0]
    if args.zarr:
        raise NapariUnetError("For one image, name the output OUT.zarr instead of giving --zarr.")
    if _wants_zarr(args):
        if stack_3d and args.scheduler is not None:
            raise NapariUnetError(
                f"--stack {args.stack} runs on this machine slab by slab; drop --scheduler."
            )
        return _cmd_predict_zarr(args)
    outputs = [args.output] + ([args.probabilities] if args.probabilities else [])
    for out in outputs:
        check_output_path(out, overwrite=args.overwrite)
        if out.resolve() == args.image.resolve():
            raise NapariUnetError(f"The output {out} would overwrite the input image.")
    if args.probabilities and args.probabilities.resolve() == args.output.resolve():
        raise NapariUnetError("The labels and the probabilities need two different files.")
    model = _load_model(args.model)
    image = to_model_layout(read_image(args.image), model.in_channels)
    options = {}
    if stack_3d:
        if args.voxel_size is None:
            voxel_size = read_voxel_size(args.image)
        options = dict(stack=args.stack, voxel_size=voxel_size, z_axis=args.z_axis)
        spatial = image.shape[1:] if model.in_channels > 1 else image.shape
        if len(spatial) == 3:
            print(describe_stack_mode(spatial, args.stack, voxel_size), file=sys.stderr)
    # with --tta every tile takes 8 forward passes, and the bar counts passes
    bars = _PhaseBars("pass" if args.tta else "tile")
    try:
        result = run_to_end(
            iter_segment(
                model,
                image,
                diameter=args.diameter,
                rescale=args.rescale,
                tile_shape=args.tile,
                batch_size=args.batch_size,
                device=args.device,
                tta=args.tta,
                precision=_resolved(args),
                threshold=args.threshold,
                min_size=args.min_size,
                **options,
            ),
            _first_event(bars, args),
        )
    finally:
        bars.close()
    for note in result.notes:  # the size choice was printed before the prediction
        if note != bars.said:
            print(note, file=sys.stderr)
    labels, prob = result.labels, result.probabilities
    # uint16 opens everywhere (Fiji included); wider only when the ids need it.
    dtype = "uint16" if labels.max() < 2**16 else "uint32"
    write_tiff(args.output, labels.astype(dtype), compression="zlib")
    if args.probabilities:
        p = foreground_probability(prob) if prob.shape[0] == 2 else prob
        write_tiff(args.probabilities, p.astype("float32"), compression="zlib")
    # ids are consecutive, so the largest is the count
    print(f"{int(labels.max())} objects written to {args.output}", file=sys.stderr)
    return 0


def _is_batch(args: argparse.Namespace) -> bool:
    """Several images, a folder of images, or an existing folder to write into."""
    first, out = args.images[0], args.output
    if len(args.images) > 1 or (first.is_dir() and not _is_zarr_input(first)):
        return True
    return out.is_dir() and out.suffix.lower() != ".zarr" and not is_zarr_store(out)


def _is_zarr_input(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or is_zarr_store(path)


def _batch_inputs(items: list[Path]) -> list[Path]:
    """The files given, with every folder replaced by the images in it."""
    paths = []
    for item in items:
        if item.is_dir() and not _is_zarr_input(item):
            found = image_files(item)
            if not found:
                raise NapariUnetError(
                    f"The folder {item} holds no images (TIFF, PNG, JPEG, BMP or zarr)."
                )
            paths.extend(found)
        else:  # a missing or unreadable file fails on its own, the others go on
            paths.append(item)
    return paths


def _check_batch_output(out: Path) -> None:
    """With several images, -o must name a folder."""
    if out.exists() and not out.is_dir():
        raise NapariUnetError(
            f"The output {out} is a file; with several images or a folder, -o names a folder."
        )
    if out.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".zarr") and not out.is_dir():
        raise NapariUnetError(
            f"With several images or a folder, -o names a folder for the results; "
            f"{out} looks like a file name."
        )
    if is_zarr_store(out):
        raise NapariUnetError(f"The output {out} is a zarr store; -o names a folder for results.")


def _cmd_predict_batch(args: argparse.Namespace) -> int:
    """Several images: one at a time into the folder -o, failures listed, exit 1 if any."""
    if args.probabilities:
        raise NapariUnetError(
            "--probabilities names one file; with several images or a folder leave it out."
        )
    out = args.output
    _check_batch_output(out)
    paths = _batch_inputs(args.images)
    model = _load_model(args.model)
    zarr_out = args.zarr or args.chunk is not None or args.scheduler is not None
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    gen = segment_files(
        paths,
        out,
        model=model,
        output_format="zarr" if zarr_out else "tiff",
        overwrite=args.overwrite,
        rescale=args.rescale,
        diameter=args.diameter,
        tile_shape=args.tile,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        precision=_resolved(args),
        threshold=args.threshold,
        min_size=args.min_size,
        chunk=args.chunk,
        scheduler=args.scheduler,
    )
    n = len(paths)
    bar = None  # made on the first event: arguments refused before it print no bar
    done, failed = [], []
    try:
        for event in gen:
            if bar is None:
                _say_precision(args)
                bar_format = "{desc}{percentage:3.0f}%|{bar}|"
                bar = tqdm(total=n, desc="predict", file=sys.stderr, bar_format=bar_format)
            bar.update(event.overall * n - bar.n)
            if event.state is BatchState.STARTED:
                bar.set_description(f"{event.index + 1}/{n} {display_name(event.source)}")
            elif event.state is BatchState.DONE:
                done.append((event.source, event.n_objects, event.output))
            elif event.state is BatchState.FAILED:
                failed.append((event.source, event.message))
    except NapariUnetError:
        if created and bar is None:  # refused before any image: leave nothing behind
            out.rmdir()
        raise
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _print_batch_table(done)
        print(
            f"napari-unet: interrupted after {len(done) + len(failed)} of {n} images; the "
            f"finished results are in {out}, the image under way was not written.",
            file=sys.stderr,
        )
        return 130
    finally:
        if bar is not None:
            bar.close()
    _print_batch_table(done)
    for source, message in failed:
        print(f"napari-unet: failed: {display_name(source)}: {message}", file=sys.stderr)
    objects = sum(count for _, count, _ in done)
    summary = f"{n} images: {objects:,} objects written to {out}"
    if failed:
        summary += f"; {len(failed)} failed"
    print(summary + ".", file=sys.stderr)
    return 1 if failed else 0


def _print_batch_table(done: list) -> None:
    """Per image: its object count and result file, on stdout (for scripts)."""
    if not done:
        return
    width = max(len(display_name(source)) for source, _, _ in done)
    print(f"{'image':<{width}}  {'objects':>8}  output")
    for source, count, output in done:
        print(f"{display_name(source):<{width}}  {count:>8}  {output}")


def _cmd_weightmap(args: argparse.Namespace) -> int:
    check_output_path(args.output, overwrite=args.overwrite)
    weights = unet_weight_map(read_image(args.labels), w0=args.w0, sigma=args.sigma)
    write_tiff(args.output, weights, compression="zlib")
    print(f"weight map written to {args.output}", file=sys.stderr)
    return 0


def _train_config(args: argparse.Namespace, base):
    changes = {}
    for name, value in (
        ("steps", args.steps),
        ("time_limit", args.time_limit),
        ("seed", args.seed),
        ("learning_rate", args.lr),
        ("optimizer", args.optimizer),
        ("base_channels", args.width),
        ("tile_size", args.tile),
        ("precision", args.precision),
    ):
        if value is not None:
            changes[name] = value
    if args.steps is not None and args.time_limit is None:
        changes["time_limit"] = None
    if args.time_limit is not None and args.steps is None:
        changes["steps"] = None
    if args.no_augment:
        changes["augment"] = AugmentConfig.identity()
    if args.complete:  # a resumed run keeps its own rule otherwise
        changes["complete"] = True
    return base.replace(**changes)


def _training_set(args: argparse.Namespace) -> tuple[list, list, list | None, list[str]]:
    """Images, labels, regions and names from --image/--labels/--region or --data."""
    if args.data is not None:
        if args.labels or args.region:
            raise NapariUnetError("With --data, the labels and regions come from the folder.")
        files = find_pairs(args.data)
        paths, label_paths, region_paths = files.images, files.labels, files.regions
    else:
        paths, label_paths, region_paths = args.image, args.labels or [], args.region
        if len(label_paths) != len(paths):
            raise NapariUnetError(
                f"Got {len(paths)} --image but {len(label_paths)} --labels; give one each."
            )
        if region_paths is not None and len(region_paths) != len(paths):
            raise NapariUnetError("Give one --region per --image, or none.")
    raw = [read_image(p) for p in paths]
    names = [p.name for p in paths]
    check_same_channels([channel_count(r) for r in raw], names)
    images = [to_model_layout(r, 1) for r in raw]
    labels = [read_image(p) for p in label_paths]
    regions = None
    if region_paths is not None and any(p is not None for p in region_paths):
        regions = [None if p is None else read_image(p) for p in region_paths]
    return images, labels, regions, names


def _cmd_train(args: argparse.Namespace) -> int:
    check_output_path(args.output, overwrite=args.overwrite or args.resume == args.output)
    if args.resume and args.start:
        raise NapariUnetError("Use either --resume or --from, not both.")
    if args.width is not None and args.resume:
        raise NapariUnetError("--width cannot change the architecture of a resumed run.")
    if args.width is not None and args.start != "scratch":
        raise NapariUnetError("--width sets the architecture of a new model; add --from scratch.")
    images, labels, regions, names = _training_set(args)
    if args.resume:
        checkpoint_model = load_model(args.resume)
        stored = (checkpoint_model.metadata.get("training") or {}).get("config")
        config = _train_config(args, TrainConfig.from_dict(stored))
        data = prepare_training_data(
            images, labels, regions, model=checkpoint_model, config=config, names=names
        )
        trainer = Trainer.resume(
            args.resume, data, config, checkpoint=args.output, device=args.device
        )
    else:
        scratch = args.start == "scratch"
        # a trained start model gets the lower fine-tuning learning rate
        config = _train_config(args, TrainConfig() if scratch else TrainConfig.fine_tune())
        if scratch:
            model = new_model(config, in_channels=1)
        else:
            model = _load_model(args.start)
        data = prepare_training_data(
            images, labels, regions, model=model, config=config, names=names
        )
        trainer = Trainer(model, data, config, checkpoint=args.output, device=args.device)

    def on_interrupt(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        trainer.stop()

    print(trainer.precision.describe(), file=sys.stderr)
    bar = tqdm(total=1000, desc="train", file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")
    previous = signal.signal(signal.SIGINT, on_interrupt)
    last = None
    try:
        for event in trainer.run():
            last = event
            bar.n = int(event.fraction * 1000)
            post = f"step {event.step}"
            if event.loss is not None:
                post += f", loss {event.loss:.3f}"
            if event.validation is not None:
                post += f", val AP50 {event.validation.ap50:.2f}"
            if event.remaining is not None:
                post += f", {event.remaining:.0f} s left"
            if event.state is TrainState.CALIBRATING:
                post = event.message
            bar.set_postfix_str(post, refresh=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if last is not None and last.state in (TrainState.DONE, TrainState.STOPPED):
        v = last.validation
        score = f" (validation AP50 {v.ap50:.2f}, mean IoU {v.mean_iou:.2f})" if v else ""
        print(f"{last.message} Model written to {args.output}{score}.", file=sys.stderr)
        if trainer.baseline is not None:
            verdict = compare_to_start(v, trainer.baseline)
            worse = "; it is worse, so keep using the start model" if verdict.worse else ""
            print(f"The new model {verdict.scores()}{worse}.", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NapariUnetError as exc:
        if args.debug:
            raise
        print(f"napari-unet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("napari-unet: interrupted; no finished output was written.", file=sys.stderr)
        return 130
    except MemoryError:
        print("napari-unet: error: out of memory; try a smaller --tile.", file=sys.stderr)
        return 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"napari-unet: error: {exc.strerror or exc} ({exc.filename or ''})", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: keep the one-line promise, offer the traceback
        if args.debug:
            raise
        print(
            f"napari-unet: unexpected error: {type(exc).__name__}: {exc} "
            f"(rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
