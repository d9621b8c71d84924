"""Which files a batch takes from a folder, and what its results are called.

Results are named ``NAME_labels.tif`` (or ``NAME_labels.zarr``): the names a
training folder pairs with ``NAME.tif``, so a corrected batch result can be
trained on. :func:`image_files` skips these names, so segmenting a folder twice
never segments its own results.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import NapariUnetError
from ..fileio import is_zarr_store

__all__ = ["OWN_OUTPUTS", "image_files", "output_path"]

# What fileio.read_image reads (tifffile, then scikit-image), longest first so that
# "a.ome.tif" loses ".ome.tif", not ".tif".
_FILE_SUFFIXES = (
    ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".png", ".jpeg", ".jpg", ".bmp",
)  # fmt: skip
_ZARR_SUFFIXES = (".ome.zarr", ".zarr")
#: Name endings of napari-unet's own files, never taken for images to segment.
OWN_OUTPUTS = ("_labels", "_region", "_probabilities")


def _strip_suffix(name: str) -> str | None:
    """``name`` without its image suffix, or None when it has none we read."""
    lower = name.lower()
    for suffix in (*_FILE_SUFFIXES, *_ZARR_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images in ``folder`` that a batch segments, sorted by name.

    TIFF, PNG, JPEG and BMP files and zarr stores are taken; hidden files and
    napari-unet's own outputs (``*_labels.*``, ``*_region.*``,
    ``*_probabilities.*``) are not, so a folder can be segmented again
    without segmenting its results. Sub-folders that are not zarr stores are
    not searched.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    list of pathlib.Path
        Possibly empty.
    """
    p = Path(folder)
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is a file, not a folder"
        raise NapariUnetError(f"The folder {p} {what}.")
    try:
        entries = sorted(p.iterdir(), key=lambda e: e.name)
    except PermissionError:
        raise NapariUnetError(f"The folder {p} is not readable (permission denied).") from None
    found = []
    for entry in entries:
        stem = _strip_suffix(entry.name)
        if stem is None or entry.name.startswith(".") or stem.endswith(OWN_OUTPUTS):
            continue
        if entry.is_file() or is_zarr_store(entry):
            found.append(entry)
    return found


def output_path(
    image: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    zarr: bool = False,
    kind: str = "labels",
) -> Path:
    """Where a batch writes ``image``'s result: ``NAME_labels.tif`` (or ``.zarr``).

    Parameters
    ----------
    image : path-like
        The input image.
    out_dir : path-like or None
        The folder for results; None: next to the image.
    zarr : bool
        A zarr store instead of a TIFF file.
    kind : str
        ``"labels"`` or ``"probabilities"``.

    Returns
    -------
    pathlib.Path
    """
    p = Path(image)
    stem = _strip_suffix(p.name) or p.stem
    folder = Path(out_dir) if out_dir is not None else p.parent
    return folder / f"{stem}_{kind}{'.zarr' if zarr else '.tif'}"
