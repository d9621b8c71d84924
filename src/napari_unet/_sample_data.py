"""Sample data for napari's File > Open Sample menu (npe2 ``sample_data`` contributions).

Both samples come from :mod:`napari_unet.synthetic` with a fixed seed, so every
user sees the same images and their exact labels. Nothing here imports napari:
the functions return plain LayerDataTuples.
"""

from __future__ import annotations

from typing import Any

from .synthetic import make_cells

__all__ = ["brightfield_sample", "nuclei_sample"]

_SHAPE = (512, 512)
_NUCLEI_SEED = 2015  # the year of the U-Net paper
_BRIGHTFIELD_SEED = 4


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Synthetic fluorescent nuclei (512x512, uint16) with their instance labels.

    Returns
    -------
    list of tuple
        ``[(image, {"name": "synthetic nuclei"}, "image"),
        (labels, {"name": "synthetic nuclei labels"}, "labels")]``.
    """
    image, labels = make_cells(_SHAPE, style="fluorescence", seed=_NUCLEI_SEED)
    return [
        (image, {"name": "synthetic nuclei"}, "image"),
        (labels, {"name": "synthetic nuclei labels"}, "labels"),
    ]


def brightfield_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Synthetic brightfield/phase-contrast-like cells (512x512, uint16) with labels.

    Returns
    -------
    list of tuple
        ``[(image, {"name": "synthetic brightfield"}, "image"),
        (labels, {"name": "synthetic brightfield labels"}, "labels")]``.
    """
    image, labels = make_cells(_SHAPE, style="brightfield", seed=_BRIGHTFIELD_SEED)
    return [
        (image, {"name": "synthetic brightfield"}, "image"),
        (labels, {"name": "synthetic brightfield labels"}, "labels"),
    ]
