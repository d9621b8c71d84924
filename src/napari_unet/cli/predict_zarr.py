"""``napari-unet predict`` into a zarr store, or into the input OME-Zarr image, chunk by chunk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._generators import run_to_end
from ..bigimage import iter_predict_to_zarr
from ..errors import NapariUnetError
from ..fileio import is_zarr_input
from .options import model_from_arg, prediction_options
from .progress import ProgressBar, run_with_bar

__all__ = ["run_into_input", "run_zarr", "wants_zarr"]


def wants_zarr(args: argparse.Namespace) -> bool:
    """Big-image mode: a zarr store in or out, a cluster, or explicit chunks."""
    return (
        args.output.suffix == ".zarr"
        or is_zarr_input(args.image)
        or args.scheduler is not None
        or args.chunk is not None
    )


def run_zarr(args: argparse.Namespace) -> int:
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
    _refuse_resizing(args)
    model = model_from_arg(args.model)
    options = {}
    if args.stack != "planes":  # 3D objects, slab by slab in Z
        options = dict(stack=args.stack, voxel_size=args.voxel_size)
        if args.z_axis not in (None, 0):
            raise NapariUnetError(
                "A zarr stack for 3D objects must be (Z, Y, X) with Z first; --z-axis is for TIFF."
            )
    run = prediction_options(args)
    diameter, said = _size(model, args.image, args, run["precision"])
    gen = iter_predict_to_zarr(
        model,
        args.image,  # opened lazily; an OME-Zarr image's pixel size carries over
        args.output,
        **options,
        label_name=args.label_name,
        chunk=args.chunk,
        **run,
        probabilities=args.probabilities is not None,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        diameter=diameter,
    )
    result = run_with_bar(gen, before=said, args=args)
    print(f"{result.n_objects} objects written to {args.output}", file=sys.stderr)
    return 0


def run_into_input(args: argparse.Namespace) -> int:
    """Chunk-by-chunk prediction into the input OME-Zarr image's ``labels/`` group."""
    from ..bigimage.ngff import read_source_image

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
    _refuse_resizing(args)
    if not image.exists():
        raise NapariUnetError(f"The image {image} does not exist.")
    if read_source_image(image) is None:
        raise NapariUnetError(
            f"--into-input needs an OME-Zarr image (a zarr group with multiscales metadata); "
            f"{image} is not one."
        )
    model = model_from_arg(args.model)
    run = prediction_options(args)
    diameter, said = _size(model, image, args, run["precision"])
    gen = iter_predict_to_zarr(
        model,
        image,
        into_input=True,
        label_name=args.label_name,
        chunk=args.chunk,
        **run,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        diameter=diameter,
    )
    result = run_with_bar(gen, before=said, args=args)
    print(f"{result.n_objects} objects written to {image}/{result.label_path}", file=sys.stderr)
    return 0


def _refuse_resizing(args: argparse.Namespace) -> None:
    """A zarr output is predicted at the image's own scale."""
    if args.diameter is not None or args.rescale is not None:
        raise NapariUnetError(
            "--diameter and --rescale work on images that fit in memory, not on zarr output; "
            "resize the image first."
        )


def _size(model, path: Path, args: argparse.Namespace, precision) -> tuple:
    """The estimated object size of an image kept at its scale, and a callable that prints it.

    The diameter scales the instance rule as ``segment``'s estimate does, so a
    zarr output holds the labels a TIFF output would (None: not estimated). The
    estimate reads a crop of at most 1024x1024 px of three planes and segments a
    window of 256x256 px at most, whatever the image's size; its sentence is
    printed with the prediction's first event (after the precision's line).
    """
    from ..bigimage import open_image_lazily
    from ..layout import to_model_layout
    from ..sizing import iter_size_at_own_scale

    bar = ProgressBar("object size", "tile")
    try:
        lazy = to_model_layout(open_image_lazily(path), model.in_channels)
        gen = iter_size_at_own_scale(
            model, lazy, tile_shape=args.tile, batch_size=args.batch_size,
            device=args.device, precision=precision,
        )  # fmt: skip
        diameter, message = run_to_end(gen, lambda event: bar(event.done, event.total))
    except NapariUnetError:
        # the prediction says what is wrong with the image, in its own words
        return None, lambda: None
    finally:
        bar.close()
    return diameter, lambda: print(message, file=sys.stderr)
