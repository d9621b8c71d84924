"""The ``napari-unet`` command's options and help, for every subcommand.

Building the parser imports no engine: each subcommand's module (and torch with
it) is imported when that subcommand runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["build_parser"]


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
    _add_prediction_options(p)
    _add_size_options(p)
    _add_stack_options(p)
    _add_zarr_options(p)
    p.set_defaults(func=_run_predict)


def _add_prediction_options(p: argparse.ArgumentParser) -> None:
    """Predict: how the network runs and how its probabilities become labels."""
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


def _add_size_options(p: argparse.ArgumentParser) -> None:
    """Predict: the object size, or the factor the image is resized by."""
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


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    """Predict: what a stack's objects are (planes or 3D) and its voxel size."""
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


def _add_zarr_options(p: argparse.ArgumentParser) -> None:
    """Predict: replacing outputs, and the zarr and batch outputs."""
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
    t.add_argument(
        "--calibration-rules",
        type=int,
        default=None,
        help="search at most this many labellings when calibrating the object rule, instead "
        "of a tenth of the time: the same rule on any machine (reproducible runs)",
    )
    t.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    t.add_argument(
        "--precision",
        default=None,
        help="auto (default: bf16 where a one-time measurement on this computer found it "
        "at least 1.3x faster, else fp32), fp32, bf16, or fp16 (CUDA only)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    t.set_defaults(func=_run_train)


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
    w.set_defaults(func=_run_weightmap)


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
    e.set_defaults(func=_run_export)


# Each subcommand's module is imported when it runs: building the parser (and
# --help) loads neither torch nor the other engines.


def _run_predict(args: argparse.Namespace) -> int:
    from .predict import run

    return run(args)


def _run_train(args: argparse.Namespace) -> int:
    from .train import run

    return run(args)


def _run_weightmap(args: argparse.Namespace) -> int:
    from .weightmap import run

    return run(args)


def _run_export(args: argparse.Namespace) -> int:
    from .export import run

    return run(args)
