"""Training data: annotated planes checked, normalised, mirror-padded and weighted once.

:func:`prepare_training_data` turns (image, instance labels, annotated region)
triples into :class:`TrainingPlane` s; a band of each plane's annotation may be
held out for validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..model import UNet, halo, input_size_for_output, output_size
from ..normalization import Normalization
from ..padding import mirror_pad
from ..weightmap import carve_gaps, unet_weight_map
from .config import TrainConfig

__all__ = [
    "TrainingData",
    "TrainingPlane",
    "model_normalization",
    "prepare_planes",
    "prepare_training_data",
    "tile_sizes",
]


@dataclass
class TrainingPlane:
    """One annotated 2D plane, normalised and padded for sampling."""

    image: np.ndarray  # (C, H + 2p, W + 2p) float32, mirror padded
    labels: np.ndarray  # (H + 2p, W + 2p) int32, mirror padded (weights are 0 outside)
    weights: np.ndarray  # (H + 2p, W + 2p) float32, 0 outside the training region
    train_pixels: np.ndarray  # flat indices (unpadded) of training-region pixels
    pad: int
    shape: tuple[int, int]
    val_box: tuple[int, int, int, int] | None  # (y0, y1, x0, x1) in image coordinates
    val_labels: np.ndarray | None  # labels in the box, 0 outside the annotated region
    val_mask: np.ndarray | None  # annotated pixels in the box
    val_target: np.ndarray | None  # foreground of the training target in the box
    val_weights: np.ndarray | None
    train_box: tuple[int, int, int, int] | None = None  # bounding box (y0, y1, x0, x1)

    def __post_init__(self) -> None:
        if self.train_box is None and len(self.train_pixels):
            ys, xs = np.divmod(self.train_pixels, self.shape[1])
            self.train_box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


@dataclass
class TrainingData:
    """Annotated planes prepared for training (see :func:`prepare_training_data`)."""

    planes: list[TrainingPlane]
    in_channels: int
    summary: list[dict[str, Any]]

    @property
    def has_validation(self) -> bool:
        """Whether some annotation is held out for validation."""
        return any(p.val_box is not None for p in self.planes)


def prepare_training_data(
    images: Sequence[Any] | Any,
    labels: Sequence[Any] | Any,
    regions: Sequence[Any] | Any | None = None,
    *,
    model: UNet,
    config: TrainConfig | None = None,
) -> TrainingData:
    """Check, normalise and pad training pairs for ``model``; compute weight maps once.

    Parameters
    ----------
    images : array or list of arrays
        ``(H, W)`` or stacks ``(Z, H, W)`` (``(C, H, W)`` / ``(C, Z, H, W)`` for a
        multi-channel model); several images may differ in shape. Stacks are
        split into planes.
    labels : array or list of arrays
        Instance labels, one per image, same spatial shape: 0 background, each
        annotated cell its own id.
    regions : array, list of arrays or None
        Annotated-region masks (True where the annotation is complete). Pixels
        outside carry zero loss. ``None`` (or a None entry) means the whole image.
    model : UNet
        The network to train: its channels, context and stored normalisation
        (``config.normalization`` when it has none) decide the preparation.
    config : TrainConfig or None
        For ``w0``, ``sigma``, ``validation_fraction`` and ``tile_size``.

    Returns
    -------
    TrainingData
    """
    cfg = config or TrainConfig()
    return prepare_planes(
        images,
        labels,
        regions,
        in_channels=model.in_channels,
        depth=model.depth,
        normalization=model_normalization(model, cfg),
        config=cfg,
    )


def prepare_planes(
    images: Sequence[Any] | Any,
    labels: Sequence[Any] | Any,
    regions: Sequence[Any] | Any | None,
    *,
    in_channels: int,
    depth: int,
    normalization: Normalization,
    config: TrainConfig,
) -> TrainingData:
    """:func:`prepare_training_data` for a network described by its channels and depth."""
    triples = _triples(images, labels, regions)
    pad = halo(depth) + tile_sizes(config.tile_size, depth)[1]
    planes: list[TrainingPlane] = []
    summary = []
    for i, (img, lab, reg) in enumerate(triples):
        which = f"image {i + 1}" if len(triples) > 1 else "the image"
        image_planes, image_summary = _prepare_image(
            img, lab, reg, which, in_channels, normalization, config, pad
        )
        planes += image_planes
        summary.append(image_summary)
    if not any(s["region_pixels"] for s in summary):
        raise NapariUnetError("The annotated region excludes every pixel; nothing to train on.")
    if not any(s["cells"] for s in summary):
        raise NapariUnetError("No annotated cell was found: paint at least one cell in the labels.")
    if not planes:
        raise NapariUnetError("No annotated pixels are left for training.")
    return TrainingData(planes=planes, in_channels=in_channels, summary=summary)


def tile_sizes(tile_size: int, depth: int) -> tuple[int, int]:
    """Input and output side of a training tile: the valid input nearest ``tile_size`` above."""
    n = input_size_for_output(max(1, int(tile_size) - 2 * halo(depth)), depth)
    return n, output_size(n, depth)


def model_normalization(model: UNet, config: TrainConfig) -> Normalization:
    """The model's stored normalisation; ``config``'s for a model that has none."""
    stored = model.metadata.get("normalization")
    return Normalization.from_dict(stored) if stored else config.normalization


def _triples(images: Any, labels: Any, regions: Any) -> list[tuple[Any, Any, Any]]:
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


def _prepare_image(
    img: Any,
    lab: Any,
    reg: Any,
    which: str,
    in_channels: int,
    norm: Normalization,
    cfg: TrainConfig,
    pad: int,
) -> tuple[list[TrainingPlane], dict[str, Any]]:
    """The training planes of one image (or stack), and a summary of its annotation."""
    img = np.asarray(img)
    stats = norm.statistics(img, channel_axis=0 if in_channels > 1 else None)  # refuses NaN/Inf
    img_planes = _planes_of(img, in_channels)
    spatial = img_planes[0].shape[1:]
    stack_shape = (len(img_planes), *spatial) if len(img_planes) > 1 else spatial
    lab = _check_labels(lab, stack_shape, which)
    lab_planes = [lab] if lab.ndim == 2 else list(lab)
    reg_planes = _region_planes(reg, stack_shape, spatial, len(img_planes), which)
    planes = []
    n_cells = n_region = 0
    for ip, lp, rp in zip(img_planes, lab_planes, reg_planes):
        n_region += int(rp.sum())
        if not rp.any():
            continue
        cells = np.unique(lp[rp])
        n_cells += int((cells > 0).sum())
        plane = _prepare_plane(norm.apply(ip, stats, channel_axis=0), lp, rp, cfg, pad)
        if plane is not None:
            planes.append(plane)
    summary = {
        "shape": list(img.shape),
        "planes": len(img_planes),
        "cells": int(n_cells),
        "region_pixels": n_region,
    }
    return planes, summary


def _region_planes(
    reg: Any, stack_shape: tuple[int, ...], spatial: tuple[int, ...], n: int, which: str
) -> list[np.ndarray]:
    """The annotated region of each plane (all of it when ``reg`` is None)."""
    if reg is None:
        return [np.ones(spatial, bool)] * n
    r = np.asarray(reg)
    if r.shape != stack_shape:
        raise NapariUnetError(
            f"The annotated region for {which} has shape {r.shape} "
            f"but the image has shape {stack_shape}."
        )
    r = r.astype(bool)
    return [r] if r.ndim == 2 else list(r)


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


def _validation_box(region: np.ndarray, fraction: float) -> tuple[int, int, int, int] | None:
    """The last ``fraction`` of the annotated bounding box along its longer axis."""
    ys, xs = np.nonzero(region.any(1)), np.nonzero(region.any(0))
    y0, y1 = int(ys[0][0]), int(ys[0][-1]) + 1
    x0, x1 = int(xs[0][0]), int(xs[0][-1]) + 1
    if y1 - y0 >= x1 - x0:
        cut = y1 - max(1, round((y1 - y0) * fraction))
        return (cut, y1, x0, x1)
    cut = x1 - max(1, round((x1 - x0) * fraction))
    return (y0, y1, cut, x1)


def _prepare_plane(
    image: np.ndarray,
    labels: np.ndarray,
    region: np.ndarray,
    cfg: TrainConfig,
    pad: int,
) -> TrainingPlane | None:
    """One plane ready for sampling, or None when none of its annotation is left for training.

    ``pad`` pixels of mirrored context on each side let every tile be cut from it.
    """
    H, W = labels.shape
    val_box = None
    train_region = region
    if cfg.validation_fraction > 0:
        box = _validation_box(region, cfg.validation_fraction)
        y0, y1, x0, x1 = box
        in_box = np.zeros_like(region)
        in_box[y0:y1, x0:x1] = True
        val_region = region & in_box
        rest = region & ~in_box
        # validate only where both parts keep annotated cells
        if (labels[val_region] > 0).any() and (labels[rest] > 0).any():
            val_box, train_region = box, rest
    if not train_region.any():
        return None
    # labels outside the annotated region are unknown: they must not shape the weights
    lab32 = np.where(region, _compact_ids(labels), 0).astype(np.int32)
    target = carve_gaps(lab32) if cfg.separate_touching else lab32
    weights = unet_weight_map(target, w0=cfg.w0, sigma=cfg.sigma, mask=train_region)
    val_labels = val_mask = val_weights = val_target = None
    if val_box is not None:
        y0, y1, x0, x1 = val_box
        val_mask = region[y0:y1, x0:x1]
        val_labels = np.where(val_mask, lab32[y0:y1, x0:x1], 0)
        val_target = target[y0:y1, x0:x1] > 0
        full_w = unet_weight_map(target, w0=cfg.w0, sigma=cfg.sigma, mask=region)
        val_weights = full_w[y0:y1, x0:x1]
    return TrainingPlane(
        image=mirror_pad(image, ((0, 0), (pad, pad), (pad, pad))),
        labels=mirror_pad(target, ((pad, pad), (pad, pad))),
        weights=np.pad(weights, pad),
        train_pixels=np.flatnonzero(train_region),
        pad=pad,
        shape=(H, W),
        val_box=val_box,
        val_labels=val_labels,
        val_mask=val_mask,
        val_target=val_target,
        val_weights=val_weights,
    )


def _compact_ids(labels: np.ndarray) -> np.ndarray:
    """int32 labels with the same partition (huge ids would not fit otherwise)."""
    if labels.size == 0 or labels.max() < 2**31:
        return labels.astype(np.int32)
    ids, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int32)
    return out if ids[0] == 0 else out + 1
