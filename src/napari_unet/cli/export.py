"""``napari-unet export``: a model as a bioimage.io package."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from .._generators import run_to_end
from ..fileio import check_output_path, read_image
from .options import model_from_arg

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Write the model as a bioimage.io package; returns the exit status."""
    from ..export.bioimageio import iter_export_bioimageio

    check_output_path(args.output, overwrite=args.overwrite)
    model = model_from_arg(args.model)
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
