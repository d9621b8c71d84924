"""Opening images lazily: zarr, OME-Zarr and TIFF files as dask arrays that read windows."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr

from ..errors import NapariUnetError
from ..layout import looks_rgb

__all__ = ["DEFAULT_CHUNK", "LazyTiff", "as_dask", "open_image_lazily"]

#: Default output chunk (and unit of work) in pixels per side; reads are grown to it.
DEFAULT_CHUNK = 1024
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def open_image_lazily(path: str | os.PathLike, *, level: int = 0) -> da.Array:
    """Open a zarr, OME-Zarr or TIFF image as a dask array, reading nothing yet.

    Parameters
    ----------
    path : path-like
        A zarr array, a zarr group holding one array, an OME-Zarr image (its
        ``multiscales`` metadata picks the level), or a TIFF file of any size
        (read through tifffile's zarr interface, tile by tile or strip by strip).
    level : int
        Resolution level of a multiscale image; 0 is full resolution.

    Returns
    -------
    dask.array.Array
        The image with singleton axes other than the last two removed, so an
        OME-Zarr ``(1, 1, 1, Y, X)`` becomes ``(Y, X)``. Pass it through
        :func:`napari_unet.layout.to_model_layout` before predicting, as for any
        image. It can be sent to cluster workers that see the same path.
    """
    p = Path(path)
    if not p.exists():
        raise NapariUnetError(f"The image {p} does not exist.")
    if p.is_file() and p.name.lower().endswith(_TIFF_SUFFIXES):
        source = LazyTiff(str(p), level)
        arr = da.from_array(source, chunks=_read_chunks(source.shape, source.chunks), asarray=True)
    elif p.is_dir():
        try:
            node = zarr.open(str(p), mode="r")
        except Exception as exc:  # zarr raises several types for "not a store"
            raise NapariUnetError(f"{p} is not a zarr store ({exc}).") from None
        z = _pick_array(node, level, p)
        arr = da.from_zarr(z, chunks=_read_chunks(z.shape, z.chunks))
    else:
        raise NapariUnetError(
            f"{p} is neither a zarr store nor a TIFF file, so it cannot be read lazily; "
            "write a TIFF output instead (-o OUT.tif) to segment it in memory."
        )
    squeeze = tuple(i for i in range(arr.ndim - 2) if arr.shape[i] == 1)
    arr = arr.squeeze(axis=squeeze) if squeeze else arr
    if arr.ndim < 2 or min(arr.shape[-2:]) < 1:
        raise NapariUnetError(f"{p} does not contain a 2D image (shape {arr.shape}).")
    return arr


def as_dask(image: Any) -> da.Array:
    """``image`` (dask, zarr or array-like) as a dask array read in window-sized chunks."""
    if isinstance(image, da.Array):
        return image
    if isinstance(image, zarr.Array):
        return da.from_zarr(image, chunks=_read_chunks(image.shape, image.chunks))
    if not hasattr(image, "shape"):
        image = np.asarray(image)
    shape = tuple(image.shape)
    return da.from_array(image, chunks=_read_chunks(shape, shape))


def _pick_array(node: Any, level: int, p: Path) -> zarr.Array:
    if isinstance(node, zarr.Array):
        return node
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if multiscales:
        datasets = multiscales[0].get("datasets", [])
        if not 0 <= level < len(datasets):
            raise NapariUnetError(f"{p} has {len(datasets)} resolution levels, not {level + 1}.")
        return node[datasets[level]["path"]]
    names = sorted(node.array_keys())
    if len(names) == 1 and level == 0:
        return node[names[0]]
    if str(level) in names:
        return node[str(level)]
    raise NapariUnetError(
        f"{p} holds {len(names)} arrays ({', '.join(names) or 'none'}) and no multiscale "
        "metadata; open the array you mean, e.g. PATH/NAME."
    )


def _read_chunks(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Dask chunks for reading: the store's own, grown to about 1024 pixels per spatial side."""
    rgb = looks_rgb(tuple(shape))
    spatial = (-3, -2) if rgb else (-2, -1)
    # one plane per read along the other axes: a window never pulls in a whole Z chunk
    out = [1] * len(shape)
    out[-1] = max(1, int(chunks[-1]))
    out[-2] = max(1, int(chunks[-2]))
    if rgb:
        out[-3] = max(1, int(chunks[-3]))
    for ax in spatial:
        c = out[ax]
        out[ax] = min(int(shape[ax]), c * max(1, round(DEFAULT_CHUNK / c)))
    return tuple(out)


class LazyTiff:
    """A picklable, lazily opened TIFF level: workers open the file themselves."""

    def __init__(self, path: str, level: int) -> None:
        self.path, self.level = path, level
        self._array = None
        self._lock = threading.Lock()
        arr = self._open()
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        # a contiguous TIFF is one "chunk" to zarr; memory-mapped, any window can be read
        self.chunks = getattr(arr, "chunks", None) or tuple(min(s, 256) for s in arr.shape)

    def _open(self):
        with self._lock:
            if self._array is None and self.level == 0:
                try:  # uncompressed and contiguous (ImageJ's default): map it, read windows
                    self._array = tifffile.memmap(self.path, mode="r", series=0, level=0)
                except Exception:  # compressed, tiled or odd: tifffile's zarr interface
                    self._array = None
            if self._array is None:
                try:
                    store = tifffile.imread(self.path, aszarr=True)
                    node = zarr.open(store, mode="r")
                except Exception as exc:  # tifffile has many exception types
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise NapariUnetError(
                        f"{self.path} could not be read as an image ({reason})."
                    ) from None
                self._array = _pick_array(node, self.level, Path(self.path))
            return self._array

    def __getitem__(self, key):
        return self._open()[key]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
