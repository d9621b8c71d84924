"""The command's entry point: parse, run, and turn every failure into one line and an exit status.

Every expected failure prints one line and exits non-zero, without a traceback;
``--debug`` shows tracebacks for bug reports.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import NapariUnetError
from .parser import build_parser

__all__ = ["main"]


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
