"""``napari-unet weightmap``: the paper's boundary weight map of a label image."""

from __future__ import annotations

import argparse
import sys

from ..fileio import check_output_path, read_image, write_tiff
from ..weightmap import unet_weight_map

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Write the weight map of a label image; returns the exit status."""
    check_output_path(args.output, overwrite=args.overwrite)
    weights = unet_weight_map(read_image(args.labels), w0=args.w0, sigma=args.sigma)
    write_tiff(args.output, weights, compression="zlib")
    print(f"weight map written to {args.output}", file=sys.stderr)
    return 0
