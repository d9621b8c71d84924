"""The store helpers both writers use, the 2D chunks' and the 3D slabs'.

:mod:`.chunked` and :mod:`.stack3d` share them: opening the input in the model's
layout, the run's metadata (written incomplete at the start, completed by
:func:`~napari_unet.bigimage.output.mark_complete`), where the labels say they
come from, the work arrays and the labels' type.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import zarr

from .inputs import as_dask, open_image_lazily
from .levels import create_probability_levels
from .ngff import SourceImage, read_source_image
from .result import ATTR, FORMAT_VERSION
from .target import OutputTarget

if TYPE_CHECKING:
    from ..model import UNet
    from ..normalization import Normalization
    from ..tiling import TileGrid
    from .chunks import ImageAxes

__all__ = [
    "create_work_arrays",
    "label_dtype",
    "open_input",
    "run_metadata",
    "source_ref",
    "start_metadata",
    "write_metadata",
]


def open_input(model: UNet, image: Any) -> tuple[da.Array, SourceImage | None]:
    """``image`` as a lazy array in the model's layout, and its OME-Zarr image if any."""
    if not isinstance(image, str | os.PathLike):
        return as_dask(image), None
    from ..layout import to_model_layout

    lazy = to_model_layout(open_image_lazily(image), model.in_channels)
    return as_dask(lazy), read_source_image(image)


def run_metadata(
    model: UNet,
    image: da.Array,
    norm: Normalization,
    stats: np.ndarray,
    chunk: tuple[int, int],
    plan: TileGrid | None,
    labelling: dict,
    tta: bool = False,
) -> dict:
    """What the run records, ``"complete": False`` until it is finished.

    ``plan`` is the 2D path's tile grid (None for 3D slabs, whose views plan their own);
    ``tta`` whether the tiles were predicted with test-time augmentation.
    """
    meta = {
        "format_version": FORMAT_VERSION,
        "complete": False,
        "image_shape": [int(s) for s in image.shape],
        "image_dtype": str(image.dtype),
        "model": model.config,
        "normalization": {
            **norm.to_dict(),
            "statistics": stats.tolist(),
            "subsample": "regular, shape-only (napari_unet.normalization)",
        },
        "chunk": list(chunk),
        "tta": bool(tta),
        "labels": labelling,
    }
    if plan is not None:
        meta.update(tile_step=list(plan.step), tile_input=list(plan.input_shape), halo=plan.halo)
    return meta


def start_metadata(
    target: OutputTarget,
    run: tuple[UNet, da.Array, Normalization, np.ndarray],
    chunk: tuple[int, int],
    plan: TileGrid | None,
    labelling: dict,
    *,
    tta: bool,
    precision: str,
    source: SourceImage | None,
) -> dict:
    """The run's metadata (:func:`run_metadata`, precision, source image), written.

    ``run`` is the model, the image, its normalisation and statistics. Returns the
    metadata, which :func:`~napari_unet.bigimage.output.mark_complete` finishes.
    """
    meta = run_metadata(*run, chunk, plan, labelling, tta)
    meta["precision"] = precision
    if source is not None:
        meta["source_image"] = str(source.path)
    write_metadata(target, meta)  # complete: false, until everything is written
    return meta


def source_ref(target: OutputTarget, source: SourceImage | None, output: Any) -> str:
    """NGFF ``source`` of the labels: their image, as a path relative to the label image.

    Our own store's labels point at the OME-Zarr input image (both local), else
    at the store's own image group.
    """
    if target.into_input or source is None or not isinstance(output, str | os.PathLike):
        return "../../"
    if "://" in str(output):
        return "../../"
    label_dir = (Path(output) / "labels" / target.name).resolve()
    return os.path.relpath(source.path.resolve(), label_dir).replace(os.sep, "/") + "/"


def write_metadata(target: OutputTarget, meta: dict) -> None:
    """The run's metadata on the label image (and our store's root).

    Copies: zarr keeps a written attribute's value by reference, and ``meta`` grows later.
    """
    target.label.attrs[ATTR] = copy.deepcopy(meta)
    if not target.into_input:
        target.root.attrs[ATTR] = copy.deepcopy(meta)


def create_work_arrays(
    target: OutputTarget,
    axes: ImageAxes,
    chunk: tuple[int, int],
    n_classes: int,
    probabilities: bool,
) -> tuple[zarr.Array, zarr.Array]:
    """The probabilities (kept as our image's level 0, or under ``_work/``) and local ids."""
    plane_chunk = (1,) if axes.is_stack else ()
    if probabilities:
        prob = create_probability_levels(target, axes, chunk, 1, n_classes)[0]
    else:
        prob = target.create_array(
            target.label,
            "_work/probabilities",
            shape=axes.out_shape((n_classes,)),
            chunks=(n_classes, *plane_chunk, *chunk),
            dtype="float32",
            compressors=None,  # float noise compresses little; decoding it would cost CPU
        )
    local = target.create_array(
        target.label,
        "_work/local_labels",
        shape=axes.out_shape(),
        chunks=(*plane_chunk, *chunk),
        dtype="int32",
    )
    return prob, local


def label_dtype(n_objects: int) -> str:
    """The smallest unsigned integer type that holds every id."""
    return "uint16" if n_objects < 2**16 else "uint32" if n_objects < 2**32 else "uint64"
