"""Reading images and writing files atomically.

Every file napari-unet writes goes through :func:`atomic_write`: the bytes land in
a temporary file beside the target, which is renamed over it only once complete,
so an interrupted write never leaves a partial file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import skimage.io
import tifffile

from .errors import NapariUnetError

__all__ = [
    "atomic_write",
    "check_output_path",
    "is_zarr_input",
    "is_zarr_store",
    "read_image",
    "read_voxel_size",
    "write_tiff",
]

_TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8", ".ome.tif"}
# The metadata files at a zarr store's root: v3 (zarr.json), v2 array and v2 group.
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store (a folder with zarr metadata)."""
    p = Path(path)
    return p.is_dir() and any((p / marker).exists() for marker in _ZARR_MARKERS)


def is_zarr_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an image to open as zarr rather than read as a file.

    A folder named ``*.zarr`` (any case, ``.ome.zarr`` included) or holding zarr
    v2/v3 metadata. A file or a missing path is never one, whatever its name: it
    is read (and refused) as a file, so the user hears that it does not exist
    or is not an image.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    bool
    """
    p = Path(path)
    return p.is_dir() and (p.name.lower().endswith(".zarr") or is_zarr_store(p))


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output path that cannot or should not be written, before any work is done.

    Parameters
    ----------
    path : path-like
        Where a file will be written.
    overwrite : bool
        Allow replacing an existing file.

    Returns
    -------
    pathlib.Path
        The path, unchanged.
    """
    p = Path(path)
    if p.is_dir():
        raise NapariUnetError(f"The output {p} is a folder, not a file name.")
    if p.exists() and not overwrite:
        raise NapariUnetError(f"The output {p} already exists; pass --overwrite to replace it.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise NapariUnetError(f"The folder {parent} for the output does not exist.")
    if not os.access(parent, os.W_OK):
        raise NapariUnetError(f"The folder {parent} is not writable.")
    return p


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    Parameters
    ----------
    path : path-like
        The final file.
    mode : str
        ``"wb"`` or ``"w"``.

    Yields
    ------
    file object
        Write to it; on a clean exit it is flushed, synced and renamed onto
        ``path``. On an exception it is removed and ``path`` is left untouched.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".part")
    except FileNotFoundError:
        raise NapariUnetError(f"The folder {parent} does not exist.") from None
    except PermissionError:
        raise NapariUnetError(f"The folder {parent} is not writable.") from None
    os.close(fd)
    try:
        # opened by name so writers that look at ``fh.name`` (tifffile) see a path
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _file_mode(target: Path) -> int:
    """Keep an existing file's permissions; new files get the usual ones (0o666 minus umask)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into memory.

    TIFF files go through tifffile; other formats (PNG, JPEG, BMP, ...) through
    scikit-image.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    numpy.ndarray
    """
    p = Path(path)
    if not p.exists():
        raise NapariUnetError(f"The file {p} does not exist.")
    if p.is_dir():
        raise NapariUnetError(f"{p} is a folder, not an image file.")
    if not os.access(p, os.R_OK):
        raise NapariUnetError(f"The file {p} is not readable (permission denied).")
    try:
        if p.suffix.lower() in _TIFF_SUFFIXES:
            data = tifffile.imread(p)
        else:
            data = skimage.io.imread(p)
    except MemoryError:
        raise NapariUnetError(f"The image {p} does not fit in memory.") from None
    except Exception as exc:  # every reader has its own exception types
        raise NapariUnetError(f"{p} could not be read as an image ({_plain(exc)}).") from None
    data = np.asarray(data)
    if data.dtype == object or data.ndim < 2 or data.size == 0:
        raise NapariUnetError(f"{p} does not contain a 2D image.")
    return data


def _plain(exc: Exception) -> str:
    """A reader's complaint in words, without the Python bytes tifffile quotes."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if reason.startswith("not a TIFF file"):
        empty = "b''" in reason
        return "the file is empty" if empty else "not a TIFF file: it starts with other bytes"
    return re.sub(r"\s*\w*=?b(['\"]).*?\1", "", reason).rstrip(": ") or type(exc).__name__


def read_voxel_size(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The ``(z, y, x)`` voxel size a TIFF records, or None when it records no Z step.

    ImageJ writes the Z step as ``spacing`` in its metadata and the pixel size as
    the X and Y resolution (pixels per unit); a missing resolution counts as 1.
    """
    p = Path(path)
    if p.suffix.lower() not in _TIFF_SUFFIXES:
        return None
    try:
        with tifffile.TiffFile(p) as tif:
            meta = tif.imagej_metadata or {}
            spacing = meta.get("spacing")
            tags = tif.pages[0].tags
            sizes = []
            for name in ("YResolution", "XResolution"):
                tag = tags.get(name)
                num, den = tag.value if tag is not None else (1, 1)
                sizes.append(den / num if num else 1.0)
    except Exception:  # no readable metadata is the common case, not an error
        return None
    if spacing is None:
        return None
    values = (float(spacing), *sizes)
    if not all(np.isfinite(v) and v > 0 for v in values):
        return None
    return values


def write_tiff(path: str | os.PathLike, data: np.ndarray, **kwargs) -> Path:
    """Write ``data`` as a TIFF file atomically.

    Parameters
    ----------
    path : path-like
        The target file.
    data : numpy.ndarray
        Array to write.
    **kwargs
        Passed to :func:`tifffile.imwrite` (e.g. ``metadata``).

    Returns
    -------
    pathlib.Path
    """
    with atomic_write(path) as fh:
        tifffile.imwrite(fh, data, **kwargs)
    return Path(path)
