"""The user's training inputs, checked and cut into the planes that are annotated.

Images, labels and annotated regions come as one of each or as lists of them
(:func:`input_triples`), 2D or stacks, one or several channels; each image's
annotated planes (:func:`annotated_planes`) are where a loss can look.
:mod:`napari_unet.training.data` prepares them for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..normalization import Normalization
from .config import TrainConfig
from .known import known_area, ring_width

__all__ = [
    "AnnotatedPlane",
    "annotated_plane_count",
    "annotated_planes",
    "image_names",
    "input_triples",
]


def input_triples(images: Any, labels: Any, regions: Any) -> list[tuple[Any, Any, Any]]:
    """(image, labels, region) per image; a region of None is the whole image."""
    image_list, label_list = _as_list(images), _as_list(labels)
    region_list = _as_list(regions) or [None] * len(image_list)
    if not image_list:
        raise NapariUnetError("No training images were given.")
    if len(label_list) != len(image_list):
        raise NapariUnetError(
            f"Got {len(image_list)} image(s) but {len(label_list)} label image(s); "
            "give one label image per image."
        )
    if len(region_list) != len(image_list):
        raise NapariUnetError(
            f"Got {len(image_list)} image(s) but {len(region_list)} region mask(s)."
        )
    return list(zip(image_list, label_list, region_list))


@dataclass
class AnnotatedPlane:
    """One annotated plane before preparation."""

    z: int
    image: np.ndarray  # (C, H, W), raw
    stats: Any  # the image's normalisation statistics
    labels: np.ndarray  # int32, 0 outside the region
    region: np.ndarray  # bool
    partial: tuple[int, ...] = ()  # ids of the cells that look partly painted


def annotated_planes(
    img: Any,
    lab: Any,
    reg: Any,
    which: str,
    in_channels: int,
    norm: Normalization,
    cfg: TrainConfig,
    partial: Any = None,
) -> tuple[list[AnnotatedPlane], dict[str, Any]]:
    """The annotated planes of one image (or stack), and a summary of its annotation.

    A plane's ``region`` is where the loss looks: the annotated region (the whole
    plane for a complete annotation without one) or, for a sparse annotation,
    :func:`~napari_unet.training.known.known_area`, less the surroundings of the
    cells that ``partial`` (a :class:`~napari_unet.training.partial.PartialRule`)
    finds partly painted (the start model's sure background near them counts
    instead); their ids are the summary's ``"partial"``. Stray dabs (tiny marks on
    what the start model is sure is background) are left out: ``"left_out"``.
    """
    img = np.asarray(img)
    stats = norm.statistics(img, channel_axis=0 if in_channels > 1 else None)  # refuses NaN/Inf
    img_planes = _planes_of(img, in_channels)
    spatial = img_planes[0].shape[1:]
    stack_shape = (len(img_planes), *spatial) if len(img_planes) > 1 else spatial
    lab = _check_labels(lab, stack_shape, which)
    lab_planes = [lab] if lab.ndim == 2 else list(lab)
    if reg is None and not cfg.complete:
        reg_planes = [None] * len(lab_planes)
    else:
        reg_planes = _region_planes(reg, lab_planes, stack_shape, spatial, which)
    found, flagged, left = [], [], []
    n_cells = n_region = 0
    for z, (ip, lp, rp) in enumerate(zip(img_planes, lab_planes, reg_planes)):
        ids = None
        if cfg.complete:
            lab32 = np.where(rp, _compact_ids(lp), 0).astype(np.int32)
        else:  # painted cells count wherever they are; unpainted only where known
            lab32 = _compact_ids(lp)
            sure = stray = over = None
            if partial is not None and lab32.any():
                x = norm.apply(ip, stats, channel_axis=0).astype(np.float32)
                ids, sure, stray, over = partial(x, lab32, ring_width(lab32, cfg.sigma), z)
                flagged += [int(i) for i in ids]
                left += [int(i) for i in stray]
            rp = known_area(
                lab32, cfg.sigma, rp, partial=ids, left_out=stray, sure=sure, overhang=over
            )
            if stray is not None and len(stray):  # stray dabs: neither cell nor background
                lab32 = np.where(np.isin(lab32, stray), 0, lab32)
        if not rp.any():
            continue
        n_region += int(rp.sum())
        n_cells += int((np.unique(lab32) > 0).sum())
        partly = tuple(int(i) for i in ids) if ids is not None else ()
        found.append(AnnotatedPlane(z, ip, stats, lab32, rp, partly))
    summary = {
        "shape": list(img.shape),
        "planes": len(img_planes),
        "annotated_planes": len(found),
        "cells": int(n_cells),
        "validation_cells": 0,
        "region_pixels": n_region,
        "complete": bool(cfg.complete),
        "partial": sorted(set(flagged)),
        "left_out": sorted(set(left)),
    }
    return found, summary


def annotated_plane_count(labels: Any, region: Any = None) -> tuple[int, int]:
    """How many planes of an annotation count for training, of how many.

    Parameters
    ----------
    labels : array
        ``(H, W)`` or ``(Z, H, W)`` instance labels.
    region : array or None
        The annotated-region mask, same shape; None: a plane counts when it has a
        cell (a 2D image always counts: all of it is annotated).

    Returns
    -------
    annotated, planes : int, int
    """
    lab = np.asarray(labels)
    if lab.ndim == 2:
        counts = region is None or bool(np.asarray(region).any())
        return int(counts), 1
    if region is not None:
        return int(np.asarray(region).reshape(len(lab), -1).any(1).sum()), len(lab)
    return int(lab.reshape(len(lab), -1).any(1).sum()), len(lab)


def _region_planes(
    reg: Any,
    lab_planes: list[np.ndarray],
    stack_shape: tuple[int, ...],
    spatial: tuple[int, ...],
    which: str,
) -> list[np.ndarray]:
    """The annotated region of each plane.

    Without a region mask, a 2D image is annotated everywhere, and a plane of a
    stack is annotated everywhere when it has a cell and nowhere otherwise (an
    unpainted plane is not a plane without cells).
    """
    if reg is None:
        if len(lab_planes) == 1:
            return [np.ones(spatial, bool)]
        return [np.full(spatial, bool(lp.any())) for lp in lab_planes]
    r = np.asarray(reg)
    if r.shape != stack_shape:
        raise NapariUnetError(
            f"The annotated region for {which} has shape {r.shape} "
            f"but the image has shape {stack_shape}."
        )
    r = r.astype(bool)
    return [r] if r.ndim == 2 else list(r)


def image_names(names: Sequence[str] | None, n: int) -> list[str]:
    """One name per image (the default numbers them)."""
    if names is None:
        return [f"image {i + 1}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise NapariUnetError(f"Got {n} image(s) but {len(names)} name(s).")
    return names


def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, list | tuple):
        return list(x)
    return [x]


def _check_labels(labels: Any, shape: tuple[int, ...], which: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise NapariUnetError(
            f"The labels for {which} have shape {lab.shape} but the image has shape {shape}."
        )
    if lab.dtype == bool:
        raise NapariUnetError(
            f"The labels for {which} are a yes/no mask; give each cell its own number."
        )
    if np.issubdtype(lab.dtype, np.floating):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise NapariUnetError(f"The labels for {which} must be whole numbers (cell ids).")
        lab = lab.astype(np.int64)
    if not np.issubdtype(lab.dtype, np.integer):
        raise NapariUnetError(f"The labels for {which} must be integers, not {lab.dtype}.")
    if lab.size and lab.min() < 0:
        raise NapariUnetError(f"The labels for {which} contain negative ids.")
    return lab


def _planes_of(image: np.ndarray, in_channels: int) -> list[np.ndarray]:
    """Split an image into (C, H, W) planes."""
    if in_channels == 1:
        if image.ndim == 2:
            return [image[None]]
        if image.ndim == 3:
            return [p[None] for p in image]
        raise NapariUnetError(
            f"Training images must be (H, W) or a stack (Z, H, W); got shape {image.shape}."
        )
    if image.ndim == 3 and image.shape[0] == in_channels:
        return [image]
    if image.ndim == 4 and image.shape[0] == in_channels:
        return [image[:, z] for z in range(image.shape[1])]
    raise NapariUnetError(
        f"Training images must be ({in_channels}, H, W) or ({in_channels}, Z, H, W) for this "
        f"model; got shape {image.shape}."
    )


def _compact_ids(labels: np.ndarray) -> np.ndarray:
    """int32 labels with the same partition (huge ids would not fit otherwise)."""
    if labels.size == 0 or labels.max() < 2**31:
        return labels.astype(np.int32)
    ids, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int32)
    return out if ids[0] == 0 else out + 1
