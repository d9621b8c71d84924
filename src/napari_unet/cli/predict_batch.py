"""``napari-unet predict`` on several images or a folder: one at a time into a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..batch import BatchState, display_name, image_files, segment_files
from ..errors import NapariUnetError
from ..fileio import is_zarr_input, is_zarr_store
from .options import model_from_arg, prediction_options, say_precision

__all__ = ["is_batch", "run_batch"]


def is_batch(args: argparse.Namespace) -> bool:
    """Several images, a folder of images, or an existing folder to write into."""
    first, out = args.images[0], args.output
    if len(args.images) > 1 or (first.is_dir() and not is_zarr_input(first)):
        return True
    return out.is_dir() and out.suffix.lower() != ".zarr" and not is_zarr_store(out)


def _batch_inputs(items: list[Path]) -> list[Path]:
    """The files given, with every folder replaced by the images in it."""
    paths = []
    for item in items:
        if item.is_dir() and not is_zarr_input(item):
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


def run_batch(args: argparse.Namespace) -> int:
    """Several images: one at a time into the folder -o, failures listed, exit 1 if any."""
    if args.probabilities:
        raise NapariUnetError(
            "--probabilities names one file; with several images or a folder leave it out."
        )
    out = args.output
    _check_batch_output(out)
    paths = _batch_inputs(args.images)
    model = model_from_arg(args.model)
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
        **prediction_options(args),
        chunk=args.chunk,
        scheduler=args.scheduler,
    )
    n = len(paths)
    bar = None  # made on the first event: arguments refused before it print no bar
    done, failed = [], []
    try:
        for event in gen:
            if bar is None:
                say_precision(args)
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
