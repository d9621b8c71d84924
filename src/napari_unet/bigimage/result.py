"""A finished result, read back: :class:`ZarrPrediction` and :func:`open_prediction`.

napari's reader opens results through this module, which needs zarr and dask only
(never the prediction engine). Results of format version 1 (``labels/0``,
``labels/1``... and ``probabilities`` at the root of a plain zarr group) are still
read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import zarr

from ..errors import NapariUnetError
from .ngff import read_ome

__all__ = ["ATTR", "FORMAT_VERSION", "ZarrPrediction", "open_prediction", "read_result"]

#: 2: OME-Zarr (NGFF) layout; 1: ``labels/0..n`` and ``probabilities`` in a plain group.
FORMAT_VERSION = 2
#: The group attribute that holds a run's metadata.
ATTR = "napari_unet"


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
        ``viewer.add_labels(labels, multiscale=True, scale=result.scale)``.
    probabilities : dask.array.Array or None
        float32 ``(K, ..., H, W)`` class probabilities, when they were requested.
    n_objects : int
        Number of objects; ids are ``1..n_objects``.
    metadata : dict
        Everything the run recorded (model, normalisation with its statistics,
        chunking, post-processing).
    scale : tuple of float
        Pixel size along the labels' axes (``(z,) y, x``) at full resolution:
        the source OME-Zarr image's, the ``scale`` given to the run, or 1.
    translation : tuple of float
        Position of the first pixel (zeros unless the source image gives one).
    label_path : str
        The label image inside the store (``labels/segmentation``; ``labels``
        for format version 1).
    probability_levels : list of dask.array.Array
        The probabilities at every display level (full resolution first), when
        kept; empty otherwise.
    """

    path: str
    labels: list
    probabilities: Any
    n_objects: int
    metadata: dict = field(repr=False)
    scale: tuple = ()
    translation: tuple = ()
    label_path: str = "labels"
    probability_levels: list = field(default_factory=list)


def open_prediction(output: str | os.PathLike | Any, *, label: str | None = None) -> ZarrPrediction:
    """Open the result of :func:`predict_to_zarr` lazily.

    Parameters
    ----------
    output : path-like or zarr store
        Our output store (this version's OME-Zarr layout or format version 1),
        or an OME-Zarr image that napari-unet wrote labels into.
    label : str or None
        In an image with several napari-unet label images, the one to open.

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
    return read_result(root, str(output), label=label)


def read_result(root: zarr.Group, path: str, *, label: str | None = None) -> ZarrPrediction:
    """The finished result in ``root``, opened lazily; refused if foreign or incomplete."""
    meta = dict(root.attrs).get(ATTR)
    group = root
    if not isinstance(meta, dict):  # an image napari-unet wrote labels into?
        group = _our_label_image(root, path, label)
        meta = dict(group.attrs).get(ATTR)
    if not meta.get("complete"):
        raise NapariUnetError(
            f"{path} is incomplete (the run that wrote it was interrupted); run it again "
            "with --overwrite."
        )
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise NapariUnetError(
            f"{path} was written by a newer napari-unet (format {version}); update napari-unet "
            "to open it."
        )
    n_levels = int(meta["labels"]["levels"])
    if version == 1:
        label_group, label_path = root["labels"], "labels"
    else:
        label_path = meta["labels"]["path"]
        label_group = group if group is not root else root[label_path]
    singletons = tuple(meta["labels"].get("singleton_axes", ()))
    labels = []
    for lv in range(n_levels):
        arr = da.from_zarr(label_group[str(lv)])
        labels.append(arr.squeeze(axis=singletons) if singletons else arr)
    prob = meta.get("probabilities") if group is root else None
    prob_levels = []
    if prob:
        paths = [prob] if version == 1 else [str(lv) for lv in range(n_levels)]
        prob_levels = [da.from_zarr(root[p]) for p in paths]
    scale, translation = _placement(label_group, singletons, labels[0].ndim)
    return ZarrPrediction(
        path=path,
        labels=labels,
        probabilities=prob_levels[0] if prob_levels else None,
        n_objects=int(meta["n_objects"]),
        metadata=meta,
        scale=scale,
        translation=translation,
        label_path=label_path,
        probability_levels=prob_levels,
    )


def _our_label_image(root: zarr.Group, path: str, label: str | None) -> zarr.Group:
    """The napari-unet label image inside an OME-Zarr image's ``labels/`` group."""
    foreign = NapariUnetError(f"{path} was not written by napari-unet.")
    if "labels" not in root or not isinstance(root["labels"], zarr.Group):
        raise foreign
    labels = root["labels"]
    listed, _ = read_ome(dict(labels.attrs))
    names = [str(n) for n in listed.get("labels", [])]
    # unlisted groups are napari-unet runs under way (listed once complete) or foreign
    names += [n for n in labels.group_keys() if n not in names]
    ours = [n for n in names if isinstance(dict(labels[n].attrs).get(ATTR), dict)]
    if label is not None:
        if label not in ours:
            raise NapariUnetError(f"{path} has no napari-unet labels named '{label}'.")
        return labels[label]
    if not ours:
        raise foreign
    if len(ours) > 1:
        raise NapariUnetError(
            f"{path} holds {len(ours)} napari-unet label images ({', '.join(ours)}); "
            "name the one to open."
        )
    return labels[ours[0]]


def _placement(group: zarr.Group, singletons: tuple, ndim: int) -> tuple[tuple, tuple]:
    """Scale and translation of level 0 along the labels' own axes (1 and 0 if unknown)."""
    ome, _ = read_ome(dict(group.attrs))
    scale, shift = [1.0] * ndim, [0.0] * ndim
    try:
        transforms = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    except (KeyError, IndexError, TypeError):  # format version 1 had no scale
        return tuple(scale), tuple(shift)
    for t in transforms:
        values = t.get(t.get("type"), [])
        values = [v for i, v in enumerate(values) if i not in singletons]
        if t.get("type") == "scale" and len(values) == ndim:
            scale = [float(v) for v in values]
        if t.get("type") == "translation" and len(values) == ndim:
            shift = [float(v) for v in values]
    return tuple(scale), tuple(shift)
