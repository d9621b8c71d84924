"""The npe2 reader: napari opens a napari-unet zarr result lazily, at its pixel size.

It takes only stores napari-unet wrote (either layout, or an OME-Zarr image
holding napari-unet labels); anything else is left to other readers such as
napari-ome-zarr. No Qt and no napari import: it returns napari's layer tuples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["get_reader", "prediction_layers"]


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """The reader for ``path`` when it is a napari-unet result, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not p.is_dir() or not any((p / n).exists() for n in ("zarr.json", ".zgroup")):
        return None
    from .bigimage.output import open_prediction
    from .errors import NapariUnetError

    try:
        open_prediction(p)
    except NapariUnetError:  # not ours, or several label images, or unfinished
        return None
    return lambda path: prediction_layers(p)


def prediction_layers(path: str | os.PathLike) -> list[tuple]:
    """Layer tuples for napari: a result: the labels pyramid (and the probabilities).

    Both lazy (dask), placed by the scale and offset the result records.
    """
    from .bigimage.output import open_prediction

    r = open_prediction(path)
    name = Path(path).name.removesuffix(".zarr")
    placement = {"scale": r.scale, "translate": r.translation}
    layers = []
    if r.probability_levels:
        levels = r.probability_levels
        two = levels[0].shape[0] == 2  # background and foreground: show the foreground
        data = [lv[1] for lv in levels] if two else levels
        layers.append(
            (
                data if len(data) > 1 else data[0],
                {
                    "name": f"{name} probability",
                    "multiscale": len(data) > 1,
                    "channel_axis": None if two else 0,
                    "colormap": "magma",
                    "blending": "additive",
                    "contrast_limits": (0.0, 1.0),
                    **placement,
                },
                "image",
            )
        )
    labels = r.labels
    layers.append(
        (
            labels if len(labels) > 1 else labels[0],
            {
                "name": f"{name} segmentation",
                "multiscale": len(labels) > 1,
                "opacity": 0.5,
                **placement,
            },
            "labels",
        )
    )
    return layers
