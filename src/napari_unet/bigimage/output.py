"""Our zarr output: how it is laid out, opened for writing, marked complete and read back.

A result is a zarr group: ``labels/0`` (full resolution) and coarser ``labels/1``,
... for display (OME-Zarr multiscales), ``probabilities`` on request, and the run's
metadata in the group attribute ``"napari_unet"``, whose ``"complete": true`` is
written last.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import zarr

from ..errors import NapariUnetError
from .chunks import ImageAxes

__all__ = [
    "FORMAT_VERSION",
    "ZarrPrediction",
    "create_label_levels",
    "mark_complete",
    "ome_multiscales",
    "open_output",
    "open_prediction",
    "pyramid_levels",
    "read_result",
]

FORMAT_VERSION = 1
#: The group attribute that holds a run's metadata.
ATTR = "napari_unet"
# Display levels stop once a level fits in a screen-sized texture.
_PYRAMID_STOP = 2048
_PYRAMID_MIN_CHUNK = 32


@dataclass(frozen=True)
class ZarrPrediction:
    """A finished prediction in a zarr store, opened lazily.

    Attributes
    ----------
    path : str
        The store.
    labels : list of dask.array.Array
        Instance labels, full resolution first, then levels downsampled by 2, 4,
        ... along the last two axes (nearest neighbour); pass the list to
        ``viewer.add_labels(labels, multiscale=True)``.
    probabilities : dask.array.Array or None
        float32 ``(K, ..., H, W)`` class probabilities, when they were requested.
    n_objects : int
        Number of objects; ids are ``1..n_objects``.
    metadata : dict
        Everything the run recorded (model, normalisation with its statistics,
        chunking, post-processing).
    """

    path: str
    labels: list
    probabilities: Any
    n_objects: int
    metadata: dict = field(repr=False)


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a zarr group holding a napari-unet result (complete or not)."""
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:  # an array, or not zarr at all
        return False
    return isinstance(dict(root.attrs).get(ATTR), dict)


def _check_local_output(p: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless ours and ``overwrite``) or cannot be written."""
    if p.exists():
        is_zarr = any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zarray"))
        if not overwrite:
            raise NapariUnetError(f"The output {p} already exists; pass --overwrite to replace it.")
        if not is_zarr:
            raise NapariUnetError(
                f"The output {p} exists and is not a zarr store; it was left alone."
            )
        if not _written_by_us(p):  # e.g. the input image: --overwrite never deletes data
            raise NapariUnetError(
                f"The output {p} is a zarr store that napari-unet did not write (an image?); "
                "it was left alone. Choose another output."
            )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise NapariUnetError(f"The folder {parent} for the output does not exist.")
    if not os.access(parent, os.W_OK):
        raise NapariUnetError(f"The folder {parent} is not writable.")


def open_output(output: Any, overwrite: bool) -> zarr.Group:
    """Create the output group, marked as ours and incomplete from the start."""
    if isinstance(output, str | os.PathLike) and "://" not in str(output):
        p = Path(output)
        _check_local_output(p, overwrite)
        root = zarr.open_group(str(p), mode="w", zarr_format=3)
    else:
        root = zarr.open_group(output, mode="w" if overwrite else "w-", zarr_format=3)
    # ours from the start: a run that fails before its metadata is written is still
    # recognised as an incomplete result (and may be overwritten), not a foreign store
    root.attrs[ATTR] = {"complete": False}
    return root


def pyramid_levels(axes: ImageAxes, chunk: tuple[int, int]) -> int:
    """Display levels: halve until a level fits a screen, while chunks stay whole."""
    levels = 1
    while max(axes.shape) / 2 ** (levels - 1) > _PYRAMID_STOP and all(
        c % 2**levels == 0 and c >> levels >= _PYRAMID_MIN_CHUNK for c in chunk
    ):
        levels += 1
    return levels


def create_label_levels(
    root: zarr.Group, axes: ImageAxes, chunk: tuple[int, int], n_levels: int, dtype: str
) -> list[zarr.Array]:
    """The arrays ``labels/0`` ... ``labels/{n_levels - 1}``, each level half the last."""
    H, W = axes.shape
    cy, cx = chunk
    plane_chunk = (1,) if axes.is_stack else ()
    levels = []
    for lv in range(n_levels):
        s = 2**lv
        levels.append(
            root.create_array(
                f"labels/{lv}",
                shape=(*axes.plane_axis(), math.ceil(H / s), math.ceil(W / s)),
                chunks=(*plane_chunk, cy // s, cx // s),
                dtype=dtype,
                fill_value=0,
                overwrite=True,
            )
        )
    return levels


def ome_multiscales(axes: ImageAxes, n_levels: int) -> dict:
    """OME-Zarr 0.5 multiscales metadata of the label levels."""
    names = ([{"name": "z", "type": "space"}] if axes.is_stack else []) + [
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    lead = [1.0] if axes.is_stack else []
    return {
        "version": "0.5",
        "multiscales": [
            {
                "axes": names,
                "datasets": [
                    {
                        "path": str(lv),
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [*lead, 2.0**lv, 2.0**lv]}
                        ],
                    }
                    for lv in range(n_levels)
                ],
            }
        ],
    }


def mark_complete(
    root: zarr.Group,
    meta: dict,
    axes: ImageAxes,
    n_levels: int,
    n_objects: int,
    dtype: str,
    probabilities: str | None,
) -> None:
    """Finish the store: OME metadata on the labels, work arrays gone, then ``complete``.

    ``probabilities`` names the kept probabilities array (None: not kept). The
    metadata is written last: its ``"complete": true`` marks a finished run.
    """
    root["labels"].attrs["ome"] = ome_multiscales(axes, n_levels)
    del root["_work"]
    meta.update(
        complete=True,
        n_objects=n_objects,
        labels={**meta["labels"], "levels": n_levels, "dtype": dtype},
        probabilities=probabilities,
    )
    root.attrs[ATTR] = meta


def open_prediction(output: str | os.PathLike | Any) -> ZarrPrediction:
    """Open the result of :func:`predict_to_zarr` lazily.

    Raises
    ------
    NapariUnetError
        If the store is missing, was not written by napari-unet, or comes from an
        interrupted run.
    """
    try:
        root = zarr.open_group(str(output) if isinstance(output, os.PathLike) else output, mode="r")
    except Exception:  # zarr raises several types for a missing or foreign store
        raise NapariUnetError(f"{output} is not a zarr store.") from None
    return read_result(root, str(output))


def read_result(root: zarr.Group, path: str) -> ZarrPrediction:
    """The finished result in ``root``, opened lazily; refused if foreign or incomplete."""
    meta = dict(root.attrs).get(ATTR)
    if not isinstance(meta, dict):
        raise NapariUnetError(f"{path} was not written by napari-unet.")
    if not meta.get("complete"):
        raise NapariUnetError(
            f"{path} is incomplete (the run that wrote it was interrupted); run it again "
            "with --overwrite."
        )
    n_levels = int(meta["labels"]["levels"])
    labels = [da.from_zarr(root[f"labels/{lv}"]) for lv in range(n_levels)]
    prob = meta.get("probabilities")
    return ZarrPrediction(
        path=path,
        labels=labels,
        probabilities=da.from_zarr(root[prob]) if prob else None,
        n_objects=int(meta["n_objects"]),
        metadata=meta,
    )
