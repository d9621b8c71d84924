"""Sample data for napari's File > Open Sample menu (npe2 ``sample_data`` contributions).

Both samples come from :mod:`napari_unet.synthetic` with a fixed seed, so every
user sees the same images and their exact labels. Nothing here imports napari:
the functions return plain LayerDataTuples.
"""

from __future__ import annotations

from typing import Any

from .synthetic import make_cells, make_nuclei_3d

__all__ = ["brightfield_sample", "nuclei_sample", "nuclei_3d_sample"]

_SHAPE = (512, 512)
_NUCLEI_SEED = 2015  # the year of the U-Net paper
_BRIGHTFIELD_SEED = 4
# A confocal-like stack: Z step 3x the pixel size, small enough to open in a second.
_STACK_SHAPE = (40, 192, 192)
_STACK_VOXEL = (3.0, 1.0, 1.0)
_STACK_SEED = 1505


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


def nuclei_3d_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Synthetic 3D fluorescent nuclei (40x192x192, Z step 3x the pixel size) with 3D labels.

    Both layers carry ``scale`` = the voxel size, so napari's 3D view shows the
    nuclei with their true proportions and the Predict dock can read the Z step.

    Returns
    -------
    list of tuple
        ``[(image, {"name": "synthetic nuclei 3D", "scale": ...}, "image"),
        (labels, {"name": "synthetic nuclei 3D labels", "scale": ...}, "labels")]``.
    """
    image, labels = make_nuclei_3d(_STACK_SHAPE, voxel_size=_STACK_VOXEL, seed=_STACK_SEED)
    scale = tuple(_STACK_VOXEL)
    return [
        (image, {"name": "synthetic nuclei 3D", "scale": scale}, "image"),
        (labels, {"name": "synthetic nuclei 3D labels", "scale": scale}, "labels"),
    ]
