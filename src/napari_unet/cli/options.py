"""What several commands read from their options: the model named, the precision."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..modelfile import load_model

__all__ = [
    "check_precision_option",
    "model_from_arg",
    "prediction_options",
    "resolved_precision",
    "say_precision",
]


def model_from_arg(spec: str | None):
    """The model named on the command line: a file, or the bundled one when None."""
    if spec in (None, "bundled"):
        # an optional subpackage (the GUI checks that it is installed)
        from ..bundled import load_bundled_model

        return load_bundled_model()
    return load_model(Path(spec))


def check_precision_option(args: argparse.Namespace) -> None:
    """Refuse a precision the device cannot run, before any work."""
    from ..device import select_device
    from ..precision import check_precision

    check_precision(args.precision, select_device(args.device))


def resolved_precision(args: argparse.Namespace):
    """``--precision`` resolved once for the whole run; ``args.precision`` becomes it.

    The first run on a machine measures, waiting at most a second.
    """
    from ..device import select_device
    from ..precision import resolve_precision

    args.precision = resolve_precision(args.precision, select_device(args.device))
    return args.precision


def say_precision(args: argparse.Namespace) -> None:
    """Print which precision runs and why."""
    print(resolved_precision(args).describe(), file=sys.stderr)


def prediction_options(args: argparse.Namespace) -> dict:
    """How every ``predict`` path runs the network and makes labels, from its options.

    Resolves ``--precision`` (see :func:`resolved_precision`).
    """
    return dict(
        tile_shape=args.tile,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        precision=resolved_precision(args),
        threshold=args.threshold,
        min_size=args.min_size,
    )
