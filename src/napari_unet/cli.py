"""The ``napari-unet`` command.

Every expected failure prints one line and exits non-zero, without a traceback;
``--debug`` shows tracebacks for bug reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import NapariUnetError

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

    p = sub.add_parser(
        "predict",
        help="segment an image into instance labels",
        description="Segment IMAGE by overlap-tile prediction and write instance labels as TIFF.",
    )
    p.add_argument("image", type=Path, help="input image (TIFF or any format scikit-image reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="labels TIFF to write")
    p.add_argument("--model", type=Path, required=True, help="model file (.safetensors)")
    p.add_argument("--tile", type=int, default=None, help="output tile size in pixels")
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    p.add_argument("--probabilities", type=Path, default=None, help="also write probabilities")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground probability cut")
    p.add_argument("--min-size", type=int, default=16, help="smallest object kept, in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_predict)
    return parser


class _ProgressBar:
    """A tqdm bar on stderr, created on the first update (when the total is known)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_predict(args: argparse.Namespace) -> int:
    from .fileio import check_output_path, read_image, write_tiff
    from .layout import to_model_layout
    from .modelfile import load_model
    from .postprocess import foreground_probability, labels_from_probabilities
    from .tiling import predict_tiled

    outputs = [args.output] + ([args.probabilities] if args.probabilities else [])
    for out in outputs:
        check_output_path(out, overwrite=args.overwrite)
        if out.resolve() == args.image.resolve():
            raise NapariUnetError(f"The output {out} would overwrite the input image.")
    if args.probabilities and args.probabilities.resolve() == args.output.resolve():
        raise NapariUnetError("The labels and the probabilities need two different files.")
    if args.tile is not None and args.tile < 1:
        raise NapariUnetError(f"--tile must be a positive number of pixels, got {args.tile}.")
    model = load_model(args.model)
    image = to_model_layout(read_image(args.image), model.in_channels)
    bar = _ProgressBar("predict", "tile")
    try:
        prob = predict_tiled(
            model,
            image,
            tile_shape=args.tile,
            batch_size=args.batch_size,
            device=args.device,
            progress=bar,
        )
    finally:
        bar.close()
    labels = labels_from_probabilities(prob, threshold=args.threshold, min_size=args.min_size)
    # uint16 opens everywhere (Fiji included); wider only when the ids need it.
    dtype = "uint16" if labels.max() < 2**16 else "uint32"
    write_tiff(args.output, labels.astype(dtype), compression="zlib")
    if args.probabilities:
        p = foreground_probability(prob) if prob.shape[0] == 2 else prob
        write_tiff(args.probabilities, p.astype("float32"), compression="zlib")
    # ids are consecutive, so the largest is the count
    print(f"{int(labels.max())} objects written to {args.output}", file=sys.stderr)
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
        print("napari-unet: interrupted; no output was written.", file=sys.stderr)
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
