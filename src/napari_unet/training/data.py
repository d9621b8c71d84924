"""Training data: annotated planes checked, normalised, mirror-padded and weighted once.

:func:`prepare_training_data` turns (image, instance labels, annotated region)
triples, a training set of any number of images, into :class:`TrainingPlane` s;
some annotated cells are held out for validation by a fixed rule
(:mod:`napari_unet.training.split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError
from ..model import UNet, halo, input_size_for_output, output_size
from ..normalization import Normalization
from ..padding import mirror_pad
from ..weightmap import carve_gaps, unet_weight_map
from .annotated import annotated_plane_count, annotated_planes, image_names, input_triples
from .config import TrainConfig
from .partial import PartialRule, image_sentences
from .split import split_cells, validation_area

__all__ = [
    "TrainingData",
    "TrainingPlane",
    "ValidationCrop",
    "annotated_plane_count",
    "model_normalization",
    "planned_area",
    "prepare_planes",
    "prepare_training_data",
    "tile_sizes",
    "validation_windows",
]


@dataclass
class ValidationCrop:
    """A window of a plane whose held-out cells are scored (see :mod:`.split`)."""

    box: tuple[int, int, int, int]  # (y0, y1, x0, x1) in image coordinates
    labels: np.ndarray  # held-out cells in the box, 0 elsewhere
    mask: np.ndarray  # the held-out area in the box (where predictions are scored)
    target: np.ndarray  # foreground of the training target in the box
    weights: np.ndarray  # the weight map in the box, 0 outside the held-out area


@dataclass
class TrainingPlane:
    """One annotated 2D plane, normalised and padded for sampling."""

    image: np.ndarray  # (C, H + 2p, W + 2p) float32, mirror padded
    labels: np.ndarray  # (H + 2p, W + 2p) int32, mirror padded (weights are 0 outside)
    weights: np.ndarray  # (H + 2p, W + 2p) float32, 0 outside the training region
    train_pixels: np.ndarray  # flat indices (unpadded) of training-region pixels
    pad: int
    shape: tuple[int, int]
    validation: list[ValidationCrop] = field(default_factory=list)
    train_box: tuple[int, int, int, int] | None = None  # bounding box (y0, y1, x0, x1)
    # the annotation as painted (0 outside the region) and the region: the calibration's
    # cells when too few are held out
    annotation: np.ndarray | None = None
    region: np.ndarray | None = None
    # ids of partly painted cells: trained on, never scored by the calibration (a
    # stroke inside a nucleus is no outline to choose the object rule by)
    partial: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __post_init__(self) -> None:
        if self.train_box is None and len(self.train_pixels):
            ys, xs = np.divmod(self.train_pixels, self.shape[1])
            self.train_box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


@dataclass
class TrainingData:
    """Annotated planes prepared for training (see :func:`prepare_training_data`).

    ``summary`` has one dict per image: its shape, planes, annotated planes,
    annotated cells, held-out cells, region pixels and the ids of the cells
    that look partly painted (``"partial"``).
    """

    planes: list[TrainingPlane]
    in_channels: int
    summary: list[dict[str, Any]]

    @property
    def has_validation(self) -> bool:
        """Whether some annotation is held out for validation."""
        return any(p.validation for p in self.planes)

    @property
    def validation_cells(self) -> int:
        """How many annotated cells are held out for validation."""
        return sum(s["validation_cells"] for s in self.summary)

    @property
    def partial_note(self) -> str:
        """The sentence about partly painted cells ("" when every cell looks whole)."""
        return image_sentences(self.summary)


def prepare_training_data(
    images: Sequence[Any] | Any,
    labels: Sequence[Any] | Any,
    regions: Sequence[Any] | Any | None = None,
    *,
    model: UNet,
    config: TrainConfig | None = None,
    names: Sequence[str] | None = None,
    machine_cells: Sequence[Any] | None = None,
    memory: Any = None,
) -> TrainingData:
    """Check, normalise and pad training pairs for ``model``; compute weight maps once.

    Parameters
    ----------
    images : array or list of arrays
        ``(H, W)`` or stacks ``(Z, H, W)`` (``(C, H, W)`` / ``(C, Z, H, W)`` for a
        multi-channel model); several images may differ in shape and dtype.
        Stacks are split into planes; a plane counts only when it carries
        annotation (a cell, or a region).
    labels : array or list of arrays
        Instance labels, one per image, same spatial shape: 0 background, each
        annotated cell its own id.
    regions : array, list of arrays or None
        Annotated-region masks (True where the annotation is complete).
        Without ``config.complete`` (the default) the painted cells, a thin ring
        and the narrow gaps around them count too, and nothing else
        (:mod:`napari_unet.training.known`); a None entry: only those. With
        ``config.complete`` pixels outside the region carry zero loss, and a None
        entry means the whole image (for a stack: the whole of each plane that
        has a cell).
    model : UNet
        The network to train: its channels, context and stored normalisation
        (``config.normalization`` when it has none) decide the preparation.
    config : TrainConfig or None
        For ``w0``, ``sigma``, ``complete``, ``validation_fraction`` and ``tile_size``.
    names : list of str or None
        A name per image (e.g. its file name). Part of the rule that holds
        cells out for validation (:mod:`napari_unet.training.split`), so the
        same names keep the same split when annotations grow. Default:
        ``"image 1"``, ``"image 2"``, ...
    machine_cells : list of (array of int or None) or None
        Per image, the ids of cells copied from a prediction and not edited
        since (:func:`napari_unet.training.provenance.unedited_copies`): trained
        on, never held out for validation.
    memory : ForegroundMemory or None
        The start models' foreground kept from earlier rounds on these images
        (:mod:`napari_unet.training.first_sight`): areas judged before keep that
        judgement of stray dabs, over-painted and partly painted cells; None:
        ``model`` judges everything.

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
        names=names,
        machine_cells=machine_cells,
        partial=None if cfg.complete else PartialRule(model, memory=memory),
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
    names: Sequence[str] | None = None,
    machine_cells: Sequence[Any] | None = None,
    partial: Any = None,
) -> TrainingData:
    """:func:`prepare_training_data` for a network described by its channels and depth.

    ``partial``: a :class:`~napari_unet.training.partial.PartialRule` (None: every
    painted cell counts as whole).
    """
    triples = input_triples(images, labels, regions)
    names = image_names(names, len(triples))
    machine = list(machine_cells) if machine_cells is not None else [None] * len(triples)
    if len(machine) != len(triples):
        raise NapariUnetError(f"Got {len(triples)} image(s) but {len(machine)} copy records.")
    pad = halo(depth) + tile_sizes(config.tile_size, depth)[1]
    annotated = []  # per image: its annotated planes
    summary = []
    for i, (img, lab, reg) in enumerate(triples):
        which = f"image {i + 1}" if len(triples) > 1 else "the image"
        found, image_summary = annotated_planes(
            img, lab, reg, which, in_channels, normalization, config, partial
        )
        annotated.append(found)
        summary.append({"name": names[i], **image_summary})
    regions_given = any(r is not None for _, _, r in triples)
    if config.complete and regions_given and not any(s["region_pixels"] for s in summary):
        raise NapariUnetError("The annotated region excludes every pixel; nothing to train on.")
    if not any(s["cells"] for s in summary):
        if any(s["left_out"] for s in summary if "left_out" in s):  # every cell a stray dab
            raise NapariUnetError(image_sentences(summary))
        raise NapariUnetError("No annotated cell was found: paint at least one cell in the labels.")
    flat = [(i, p) for i, found in enumerate(annotated) for p in found]
    fraction = config.validation_fraction
    split = split_cells(
        [p.labels for _, p in flat],
        [f"{names[i]}:{p.z}" for i, p in flat],
        fraction,
        exclude=[machine[i] for i, _ in flat],
    )
    planes: list[TrainingPlane] = []
    for (i, p), held_out in zip(flat, split.validation):
        summary[i]["validation_cells"] += len(held_out)
        image = normalization.apply(p.image, p.stats, channel_axis=0)
        plane = _prepare_plane(
            image, p.labels, p.region, held_out, config, pad, halo(depth), machine[i]
        )
        if plane is not None:
            plane.partial = np.asarray(p.partial, np.int32)
            planes.append(plane)
    if not planes:
        raise NapariUnetError("No annotated pixels are left for training.")
    return TrainingData(planes=planes, in_channels=in_channels, summary=summary)


def planned_area(
    image: Any, labels: Any, region: Any, rule: PartialRule, config: TrainConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Where a sparse round on one image would look, decided as training decides it.

    For the Train dock's overlay, before any training: :func:`annotated_planes`
    with ``rule`` (its frozen start model gives the channels and the
    normalisation), so the stray dabs it leaves out and the sure background it
    adds are the ones a round would use.

    Parameters
    ----------
    image : array
        The image in the model's layout.
    labels : array
        ``(H, W)`` or ``(Z, H, W)`` instance labels.
    region : array or None
        The annotated region.
    rule : PartialRule
        The partial rule of the model training starts from.
    config : TrainConfig
        For ``sigma`` and the normalisation of a model that stores none.

    Returns
    -------
    area : numpy.ndarray
        uint8, the shape of ``labels``: 1 where the loss would look.
    summary : dict
        The image's ``"cells"`` (those trained on), ``"partial"`` and ``"left_out"``.
    """
    cfg = config.replace(complete=False)
    model = rule.model
    norm = model_normalization(model, cfg)
    found, summary = annotated_planes(
        image, labels, region, "the image", model.in_channels, norm, cfg, rule
    )
    area = np.zeros(np.shape(labels), np.uint8)
    for p in found:
        if area.ndim == 2:
            area[...] = p.region
        else:
            area[p.z] = p.region
    return area, summary


def tile_sizes(tile_size: int, depth: int) -> tuple[int, int]:
    """Input and output side of a training tile: the valid input nearest ``tile_size`` above."""
    n = input_size_for_output(max(1, int(tile_size) - 2 * halo(depth)), depth)
    return n, output_size(n, depth)


def model_normalization(model: UNet, config: TrainConfig) -> Normalization:
    """The model's stored normalisation; ``config``'s for a model that has none."""
    stored = model.metadata.get("normalization")
    return Normalization.from_dict(stored) if stored else config.normalization


def _prepare_plane(
    image: np.ndarray,
    labels: np.ndarray,
    region: np.ndarray,
    held_out: np.ndarray,
    cfg: TrainConfig,
    pad: int,
    context: int,
    copied: Any = None,
) -> TrainingPlane | None:
    """One plane ready for sampling, or None when none of its annotation is left for training.

    ``labels`` are 0 outside ``region``; the cells ``held_out`` and the annotated
    pixels nearest to them are kept for validation. ``pad`` pixels of mirrored
    context on each side let every tile be cut from it; ``context`` is the
    network's halo (for the cost of validation windows). ``copied``: ids of cells
    copied from a prediction and not edited; trained on, but left out of the cells
    and the region the calibration scores (they are the model's, not the user's).
    """
    val_area = validation_area(labels, region, held_out)
    train_region = region & ~val_area
    if not train_region.any():
        return None
    target = carve_gaps(labels) if cfg.separate_touching else labels
    # a sparse annotation's share of cell pixels says nothing about the image's: balancing
    # by it would tilt the network towards background (docs/benchmarks.md, sparse)
    balance = None if cfg.complete else (1.0, 1.0)
    weights = unet_weight_map(
        target, w0=cfg.w0, sigma=cfg.sigma, class_weights=balance, mask=train_region
    )
    crops = []
    if val_area.any():
        full_w = unet_weight_map(
            target, w0=cfg.w0, sigma=cfg.sigma, class_weights=balance, mask=region
        )
        for y0, y1, x0, x1 in validation_windows(val_area, context):
            mask = val_area[y0:y1, x0:x1]
            crops.append(
                ValidationCrop(
                    box=(y0, y1, x0, x1),
                    labels=np.where(mask, labels[y0:y1, x0:x1], 0),
                    mask=mask,
                    target=target[y0:y1, x0:x1] > 0,
                    weights=np.where(mask, full_w[y0:y1, x0:x1], 0).astype(np.float32),
                )
            )
    return TrainingPlane(
        image=mirror_pad(image, ((0, 0), (pad, pad), (pad, pad))),
        labels=mirror_pad(target, ((pad, pad), (pad, pad))),
        weights=np.pad(weights, pad),
        train_pixels=np.flatnonzero(train_region),
        pad=pad,
        shape=labels.shape,
        validation=crops,
        **_calibration_cells(labels, region, copied),
    )


def _calibration_cells(labels: np.ndarray, region: np.ndarray, copied: Any) -> dict[str, Any]:
    """The plane's human cells and where they are scored (copied cells left out)."""
    if copied is None or not len(copied):
        return {"annotation": labels, "region": region}
    machine = np.isin(labels, np.asarray(copied))
    return {"annotation": np.where(machine, 0, labels), "region": region & ~machine}


def validation_windows(area: np.ndarray, context: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(y0, y1, x0, x1)`` that cover ``area`` at a small prediction cost.

    Each connected part gets its bounding box; two boxes merge while predicting
    their union (with ``context`` pixels of halo around it) costs no more than
    predicting both.
    """
    parts = ndi.find_objects(ndi.label(area)[0])
    boxes = [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in parts]
    if len(boxes) > 64:  # many scattered parts: one window, not a quadratic search
        ys, xs = np.nonzero(area)
        return [(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)]

    def cost(b: tuple[int, int, int, int]) -> int:
        return (b[1] - b[0] + 2 * context) * (b[3] - b[2] + 2 * context)

    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                u = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                if cost(u) <= cost(a) + cost(b):
                    boxes[i] = u
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes
