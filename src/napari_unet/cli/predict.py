"""``napari-unet predict``: which way an image goes, and one image in memory into TIFF."""

from __future__ import annotations

import argparse
import sys

from .._generators import run_to_end
from ..errors import NapariUnetError
from ..fileio import check_output_path, read_image, read_voxel_size, write_tiff
from ..layout import to_model_layout
from ..postprocess import foreground_probability
from ..segment import check_diameter, describe_stack_mode, iter_segment
from ..volume.voxels import check_voxel_size
from .options import check_precision_option, model_from_arg, prediction_options
from .predict_batch import is_batch, run_batch
from .predict_zarr import run_into_input, run_zarr, wants_zarr
from .progress import PhaseBars, first_event

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Segment the images the way their inputs and outputs ask; returns the exit status."""
    check_precision_option(args)
    if args.tile is not None and args.tile < 1:
        raise NapariUnetError(f"--tile must be a positive number of pixels, got {args.tile}.")
    stack_3d = args.stack != "planes"
    if args.diameter is not None:
        check_diameter(args.diameter)  # 0, negative, NaN: refused before any work
    voxel_size = None
    if args.voxel_size is not None:
        voxel_size = check_voxel_size(args.voxel_size)  # refused before any work
    if args.into_input:
        if stack_3d:
            raise NapariUnetError(
                f"--stack {args.stack} writes a separate store (-o OUT.zarr); --into-input "
                "segments an OME-Zarr image plane by plane."
            )
        return run_into_input(args)
    if args.output is None:
        raise NapariUnetError(
            "Name the output with -o OUTPUT (or write the labels into an OME-Zarr image "
            "with --into-input)."
        )
    if is_batch(args):
        if stack_3d:
            raise NapariUnetError(
                f"--stack {args.stack} takes one image written as TIFF; "
                "run it once per stack for now."
            )
        return run_batch(args)
    args.image = args.images[0]
    if args.zarr:
        raise NapariUnetError("For one image, name the output OUT.zarr instead of giving --zarr.")
    if wants_zarr(args):
        if stack_3d and args.scheduler is not None:
            raise NapariUnetError(
                f"--stack {args.stack} runs on this machine slab by slab; drop --scheduler."
            )
        return run_zarr(args)
    return _predict_in_memory(args, voxel_size)


def _predict_in_memory(args: argparse.Namespace, voxel_size) -> int:
    """One image read into memory, segmented, its labels (and probabilities) written as TIFF.

    ``voxel_size``: the checked ``--voxel-size``, or None to read the TIFF's.
    """
    outputs = [args.output] + ([args.probabilities] if args.probabilities else [])
    for out in outputs:
        check_output_path(out, overwrite=args.overwrite)
        if out.resolve() == args.image.resolve():
            raise NapariUnetError(f"The output {out} would overwrite the input image.")
    if args.probabilities and args.probabilities.resolve() == args.output.resolve():
        raise NapariUnetError("The labels and the probabilities need two different files.")
    model = model_from_arg(args.model)
    image = to_model_layout(read_image(args.image), model.in_channels)
    options = {}
    if args.stack != "planes":
        if args.voxel_size is None:
            voxel_size = read_voxel_size(args.image)
        options = dict(stack=args.stack, voxel_size=voxel_size, z_axis=args.z_axis)
        spatial = image.shape[1:] if model.in_channels > 1 else image.shape
        if len(spatial) == 3:
            print(describe_stack_mode(spatial, args.stack, voxel_size), file=sys.stderr)
    result = _segment(args, model, image, options)
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


def _segment(args: argparse.Namespace, model, image, options: dict):
    """``iter_segment`` with progress bars; its notes printed after them."""
    # with --tta every tile takes 8 forward passes, and the bar counts passes
    bars = PhaseBars("pass" if args.tta else "tile")
    try:
        result = run_to_end(
            iter_segment(
                model,
                image,
                diameter=args.diameter,
                rescale=args.rescale,
                **prediction_options(args),
                **options,
            ),
            first_event(bars, args),
        )
    finally:
        bars.close()
    for note in result.notes:  # the size choice was printed before the prediction
        if note != bars.said:
            print(note, file=sys.stderr)
    return result
