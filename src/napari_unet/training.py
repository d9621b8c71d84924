"""The training engine: fine-tune a U-Net from a few annotations, headless.

A :class:`Trainer` turns (image, instance labels, optional annotated region)
pairs into random valid-size tiles, augments each one (elastic deformation and
the rest, one field for image, labels and weight map), and minimises the paper's
pixel-wise softmax cross-entropy weighted by the boundary weight map.
:meth:`Trainer.run` is a generator: it yields a typed :class:`TrainEvent` after
every step, so a CLI progress bar or a napari thread worker can follow it, and
:meth:`Trainer.stop` ends it between two steps with a consistent model.

Pixels outside the annotated region carry zero loss. A band of the annotation is
held out for validation (loss, mean IoU and AP@0.5 on instances).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._generators import run_to_end
from .augment import AugmentConfig, augment_sample
from .device import select_device
from .errors import NapariUnetError
from .metrics import instance_scores
from .model import UNet, input_size_for_output, output_size
from .normalization import Normalization
from .padding import mirror_pad
from .postprocess import labels_from_probabilities
from .tiling import predict_tiled
from .weightmap import carve_gaps, unet_weight_map

__all__ = [
    "TrainConfig",
    "TrainState",
    "TrainEvent",
    "Validation",
    "TrainingData",
    "Trainer",
    "prepare_training_data",
    "weighted_cross_entropy",
    "train_model",
    "new_model",
]

_OPTIMIZERS = ("adam", "sgd")
# Time budget of an interactive fine-tune ("within minutes on an ordinary laptop").
INTERACTIVE_SECONDS = 120.0
#: Learning rate for fine-tuning a trained model (the bundled one, a file): 3e-3, the best
#: from scratch, first undid what the bundled model knew (docs/benchmarks.md).
FINE_TUNE_LEARNING_RATE = 3e-4
_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; the GUI takes its defaults from here.

    Attributes
    ----------
    steps : int or None
        Step budget. Training ends at whichever budget runs out first.
    time_limit : float or None
        Time budget in seconds (validation included).
    learning_rate : float
        Learning rate (the peak of a cosine schedule). 3e-3 with Adam reached
        AP@0.5 0.9 from scratch sooner than 1e-3, 3e-4 or 1e-2; to fine-tune a
        trained model use :data:`FINE_TUNE_LEARNING_RATE` (3e-4) instead, as
        :meth:`fine_tune` does (docs/benchmarks.md).
    optimizer : {"adam", "sgd"}
        ``"adam"`` (default, chosen by measured time to quality, see
        docs/benchmarks.md) or the paper's ``"sgd"`` with ``momentum`` 0.99,
        which learned more slowly from scratch at every learning rate tried and
        diverged at 1e-2 without decay.
    momentum : float
        SGD momentum (the paper's 0.99).
    schedule : {"constant", "cosine"}
        Constant (default: it did at least as well as cosine in minutes-long
        runs, and what the model has learnt at any moment does not depend on the
        budget set in advance, which suits stopping when the result looks good),
        or cosine decay to 5% over the budget.
    tile_size : int
        Network input side per training tile, rounded up to a valid size
        (the paper uses 572 with batch 1).
    batch_size : int
        Tiles per step.
    w0, sigma : float
        Border term of the weight map (paper: 10 and 5 pixels).
    augment : AugmentConfig
        Augmentation; the paper's by default.
    validation_fraction : float
        Share of the annotated area held out for validation (0 turns it off).
    validate_every : int
        Steps between validations (and one at the end).
    checkpoint_every : int
        Steps between checkpoints when a checkpoint path is given.
    seed : int
        Seeds sampling, augmentation, dropout and a model made from scratch.
    base_channels, depth, dropout : int, int, float
        Architecture of a model made from scratch.
    normalization : Normalization
        Intensity normalisation of a model made from scratch (a model that
        already has one keeps it).
    min_size : int
        Smallest predicted object kept when scoring.
    separate_touching : bool
        Where two annotated cells touch with no background between them, the
        training target gets a 1-pixel background gap (:func:`carve_gaps`), so the
        network learns to separate them and the weight map stresses the gap. The
        user's labels are not changed; validation scores use them as they are.
    """

    steps: int | None = 1000
    time_limit: float | None = None
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.99
    schedule: str = "constant"
    tile_size: int = 380
    batch_size: int = 1
    w0: float = 10.0
    sigma: float = 5.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    validation_fraction: float = 0.15
    validate_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0
    base_channels: int = 16
    depth: int = 5
    dropout: float = 0.0
    normalization: Normalization = field(default_factory=Normalization)
    min_size: int = 16
    separate_touching: bool = True

    def __post_init__(self) -> None:
        if self.steps is None and self.time_limit is None:
            raise NapariUnetError("Give a step budget, a time budget, or both.")
        if self.steps is not None and int(self.steps) < 1:
            raise NapariUnetError(f"The step budget must be at least 1, got {self.steps}.")
        if self.time_limit is not None and not float(self.time_limit) > 0:
            raise NapariUnetError(f"The time budget must be positive, got {self.time_limit}.")
        if self.optimizer not in _OPTIMIZERS:
            raise NapariUnetError(
                f"Unknown optimizer {self.optimizer!r}; use {' or '.join(_OPTIMIZERS)}."
            )
        if self.schedule not in _SCHEDULES:
            raise NapariUnetError(
                f"Unknown schedule {self.schedule!r}; use {' or '.join(_SCHEDULES)}."
            )
        if not self.learning_rate > 0:
            raise NapariUnetError(f"The learning rate must be positive, got {self.learning_rate}.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise NapariUnetError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}."
            )
        for name in ("batch_size", "validate_every", "checkpoint_every", "tile_size"):
            if int(getattr(self, name)) < 1:
                raise NapariUnetError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.sigma <= 0 or self.w0 < 0:
            raise NapariUnetError("The weight map needs sigma > 0 and w0 >= 0.")
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        if isinstance(self.normalization, dict):
            object.__setattr__(self, "normalization", Normalization.from_dict(self.normalization))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, stored as training provenance in model files."""
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        if not data:
            return cls()
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise NapariUnetError(f"Unknown training setting(s): {', '.join(unknown)}.")
        return cls(**data)

    @classmethod
    def interactive(cls, *, fine_tune: bool = True) -> TrainConfig:
        """The defaults of the napari Train dock: two minutes, from a trained model or not."""
        base = cls.fine_tune() if fine_tune else cls()
        return base.replace(time_limit=INTERACTIVE_SECONDS)

    @classmethod
    def fine_tune(cls, **changes: Any) -> TrainConfig:
        """Defaults for continuing from a trained model: the lower learning rate."""
        return cls(**{"learning_rate": FINE_TUNE_LEARNING_RATE, **changes})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)


class TrainState(Enum):
    """What a :class:`TrainEvent` reports."""

    STARTED = "started"
    STEP = "step"
    VALIDATED = "validated"
    CHECKPOINT = "checkpoint"
    DONE = "done"
    STOPPED = "stopped"
    CRASHED = "crashed"


@dataclass(frozen=True)
class Validation:
    """Scores on the held-out part of the annotation."""

    loss: float
    mean_iou: float
    ap50: float
    n_true: int
    n_pred: int


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a training run.

    Attributes
    ----------
    state : TrainState
    step : int
        Steps done so far (over all runs when resumed).
    total_steps : int or None
        The step budget, if any.
    loss : float or None
        Training loss of the last step (None before the first).
    learning_rate : float
    elapsed : float
        Seconds spent in this run.
    remaining : float or None
        Estimated seconds left (None until a step has been timed).
    fraction : float
        Share of the budget used, 0..1 (drives progress bars).
    validation : Validation or None
        The latest validation.
    message : str
        A sentence for STARTED, DONE, STOPPED and CRASHED events.
    """

    state: TrainState
    step: int
    total_steps: int | None
    loss: float | None
    learning_rate: float
    elapsed: float
    remaining: float | None
    fraction: float
    validation: Validation | None = None
    message: str = ""


# ------------------------------------------------------------------------------------ data


@dataclass
class _Plane:
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

    planes: list[_Plane]
    in_channels: int
    summary: list[dict[str, Any]]

    @property
    def has_validation(self) -> bool:
        """Whether some annotation is held out for validation."""
        return any(p.val_box is not None for p in self.planes)


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
    norm = _model_normalization(model, cfg)
    in_channels = model.in_channels
    halo = model.halo
    output = output_size(_valid_input(cfg.tile_size, model.depth), model.depth)
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
    planes: list[_Plane] = []
    summary = []
    for i, (img, lab, reg) in enumerate(zip(image_list, label_list, region_list)):
        which = f"image {i + 1}" if len(image_list) > 1 else "the image"
        img = np.asarray(img)
        chan = 0 if in_channels > 1 else None
        stats = norm.statistics(img, channel_axis=chan)  # refuses NaN/Inf
        img_planes = _planes_of(img, in_channels)
        spatial = img_planes[0].shape[1:]
        stack_shape = (len(img_planes), *spatial) if len(img_planes) > 1 else spatial
        lab = _check_labels(lab, stack_shape, which)
        lab_planes = [lab] if lab.ndim == 2 else list(lab)
        if reg is None:
            reg_planes = [np.ones(spatial, bool)] * len(img_planes)
        else:
            r = np.asarray(reg)
            if r.shape != stack_shape:
                raise NapariUnetError(
                    f"The annotated region for {which} has shape {r.shape} "
                    f"but the image has shape {stack_shape}."
                )
            r = r.astype(bool)
            reg_planes = [r] if r.ndim == 2 else list(r)
        n_cells = n_region = 0
        for ip, lp, rp in zip(img_planes, lab_planes, reg_planes):
            n_region += int(rp.sum())
            if not rp.any():
                continue
            cells = np.unique(lp[rp])
            cells = cells[cells > 0]
            n_cells += len(cells)
            plane = _prepare_plane(norm.apply(ip, stats, channel_axis=0), lp, rp, cfg, halo, output)
            if plane is not None:
                planes.append(plane)
        summary.append(
            {
                "shape": list(img.shape),
                "planes": len(img_planes),
                "cells": int(n_cells),
                "region_pixels": n_region,
            }
        )
    if not any(s["region_pixels"] for s in summary):
        raise NapariUnetError("The annotated region excludes every pixel; nothing to train on.")
    if not any(s["cells"] for s in summary):
        raise NapariUnetError("No annotated cell was found: paint at least one cell in the labels.")
    if not planes:
        raise NapariUnetError("No annotated pixels are left for training.")
    return TrainingData(planes=planes, in_channels=in_channels, summary=summary)


def _prepare_plane(
    image: np.ndarray,
    labels: np.ndarray,
    region: np.ndarray,
    cfg: TrainConfig,
    halo: int,
    output: int,
) -> _Plane | None:
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
    pad = halo + output
    val_labels = val_mask = val_weights = val_target = None
    if val_box is not None:
        y0, y1, x0, x1 = val_box
        val_mask = region[y0:y1, x0:x1]
        val_labels = np.where(val_mask, lab32[y0:y1, x0:x1], 0)
        val_target = target[y0:y1, x0:x1] > 0
        full_w = unet_weight_map(target, w0=cfg.w0, sigma=cfg.sigma, mask=region)
        val_weights = full_w[y0:y1, x0:x1]
    return _Plane(
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


# ------------------------------------------------------------------------------------ loss


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The paper's loss: softmax cross-entropy, each pixel weighted by ``weights``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, K, H, W)`` network output.
    target : torch.Tensor
        ``(N, H, W)`` class indices (int64).
    weights : torch.Tensor
        ``(N, H, W)`` the weight map; 0 where a pixel must not count.

    Returns
    -------
    torch.Tensor
        Scalar: the weighted sum divided by the number of pixels that count, so
        the scale does not depend on the tile size or the annotated share.
    """
    ce = F.cross_entropy(logits, target, reduction="none")
    counted = (weights > 0).sum().clamp_min(1)
    return (ce * weights).sum() / counted


# --------------------------------------------------------------------------------- trainer


class Trainer:
    """Fine-tunes a :class:`~napari_unet.UNet` on prepared data.

    Parameters
    ----------
    model : UNet
        The network to train (in place). A model without a stored normalisation
        gets ``config.normalization``.
    data : TrainingData
        From :func:`prepare_training_data`.
    config : TrainConfig
    checkpoint : path-like or None
        Where to save checkpoints (every ``config.checkpoint_every`` steps and at
        the end); each save is atomic and can be resumed with :meth:`resume`.
    device : str or None
        ``None`` picks CUDA, then MPS, then CPU.

    Notes
    -----
    Drive it with ``for event in trainer.run(): ...``. :meth:`stop` may be called
    from another thread; it takes effect after the current step, and the
    generator then returns the model as trained so far.
    """

    def __init__(
        self,
        model: UNet,
        data: TrainingData,
        config: TrainConfig | None = None,
        *,
        checkpoint: str | Path | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        if data.in_channels != model.in_channels:
            raise NapariUnetError(
                f"The model takes {model.in_channels} channel(s) but the data has "
                f"{data.in_channels}."
            )
        self.model = model
        self.data = data
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.device = select_device(device)
        self.step = 0
        self.history: list[TrainEvent] = []
        self._stop_requested = False
        self._seconds_before = 0.0  # training time of earlier (resumed) runs
        self.rng = np.random.default_rng(self.config.seed)
        self.input_size = _valid_input(self.config.tile_size, model.depth)
        self.output_size = output_size(self.input_size, model.depth)
        self.model.to(self.device, memory_format=torch.channels_last)
        self.optimizer = self._make_optimizer()
        self._torch_gen = torch.Generator().manual_seed(self.config.seed)
        self.model.metadata["normalization"] = _model_normalization(model, self.config).to_dict()
        if data.planes and data.planes[0].pad < self.model.halo + self.output_size:
            raise NapariUnetError("The training data was prepared for a smaller tile size.")
        self.started_from = _origin(self.model.metadata)  # last: nothing can fail after it

    # -- construction helpers
    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.model.parameters()
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum)
        return torch.optim.Adam(params, lr=c.learning_rate)

    def stop(self) -> None:
        """Ask the run to stop after the current step (thread-safe)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop_requested

    # -- schedule
    def _fraction(self, elapsed: float) -> float:
        c = self.config
        parts = []
        if c.steps is not None:
            parts.append(self.step / c.steps)
        if c.time_limit is not None:
            parts.append((self._seconds_before + elapsed) / c.time_limit)
        return min(1.0, max(parts))

    def learning_rate_at(self, fraction: float) -> float:
        """The scheduled learning rate when ``fraction`` (0..1) of the budget is used.

        Constant, or cosine decay from ``learning_rate`` to 5% of it.
        """
        c = self.config
        if c.schedule == "constant":
            return c.learning_rate
        return c.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * fraction)))

    # -- sampling
    def _sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented training tile: input (C, N, N), target and weights (O, O)."""
        planes = self.data.planes
        sizes = np.array([len(p.train_pixels) for p in planes], dtype=np.float64)
        plane = planes[int(self.rng.choice(len(planes), p=sizes / sizes.sum()))]
        flat = plane.train_pixels[int(self.rng.integers(len(plane.train_pixels)))]
        py, px = divmod(int(flat), plane.shape[1])
        n, o = self.input_size, self.output_size
        h = (n - o) // 2
        y0, y1, x0, x1 = plane.train_box
        oy = self._window(py, y0, y1, o)
        ox = self._window(px, x0, x1, o)
        y, x = oy - h + plane.pad, ox - h + plane.pad
        img = plane.image[:, y : y + n, x : x + n]
        lab = plane.labels[y : y + n, x : x + n]
        wts = plane.weights[y : y + n, x : x + n]
        img, lab, wts = augment_sample(img, lab, wts, config=self.config.augment, rng=self.rng)
        target = (lab[h : h + o, h : h + o] > 0).astype(np.int64)
        return img, target, wts[h : h + o, h : h + o]

    def _window(self, p: int, lo: int, hi: int, o: int) -> int:
        """Origin of an ``o``-pixel output window that holds pixel ``p``.

        Uniform among the windows that stay inside the annotated extent
        ``[lo, hi)`` (or cover all of it when it is smaller than ``o``): pixels
        outside carry no loss, so a window hanging over the edge wastes the step
        (about 40% of the pixels when half an image is annotated).
        """
        first = max(p - o + 1, min(lo, hi - o))
        last = min(p, max(hi - o, lo))
        return first + int(self.rng.integers(last - first + 1))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        samples = [self._sample() for _ in range(self.config.batch_size)]
        x = torch.from_numpy(np.stack([s[0] for s in samples]).astype(np.float32))
        t = torch.from_numpy(np.stack([s[1] for s in samples]))
        w = torch.from_numpy(np.stack([s[2] for s in samples]).astype(np.float32))
        dev = self.device
        return x.to(dev).contiguous(memory_format=torch.channels_last), t.to(dev), w.to(dev)

    def train_step(self, lr: float) -> float:
        """One optimisation step; returns its loss."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, t, w = self._batch()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_gen.get_state())
            logits = self.model(x)
            self._torch_gen.set_state(torch.get_rng_state())
        loss = weighted_cross_entropy(logits, t, w)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    # -- validation
    def validate(self) -> Validation | None:
        """Loss, mean IoU and AP@0.5 on the held-out band(s); None without validation data."""
        if not self.data.has_validation:
            return None
        h = self.model.halo
        total_loss, counted = 0.0, 0
        tp = n_true = n_pred = 0
        iou_sum = 0.0
        for plane in self.data.planes:
            if plane.val_box is None:
                continue
            y0, y1, x0, x1 = plane.val_box
            p = plane.pad
            crop = plane.image[:, y0 + p - h : y1 + p + h, x0 + p - h : x1 + p + h]
            crop = crop[0] if crop.shape[0] == 1 else crop
            prob = predict_tiled(self.model, crop, normalization=False, device=self.device)
            prob = prob[:, h:-h, h:-h]
            target = torch.from_numpy(plane.val_target.astype(np.int64))[None]
            weights = torch.from_numpy(plane.val_weights.astype(np.float32))[None]
            logp = torch.from_numpy(np.log(np.clip(prob, 1e-7, 1.0)))[None]
            ce = F.nll_loss(logp, target, reduction="none")
            total_loss += float((ce * weights).sum())
            counted += int((weights > 0).sum())
            pred = labels_from_probabilities(prob, min_size=self.config.min_size)
            pred = _drop_outside(pred, plane.val_mask)
            s = instance_scores(plane.val_labels, pred)
            tp, n_true, n_pred = tp + s.tp, n_true + s.n_true, n_pred + s.n_pred
            iou_sum += s.mean_iou * s.n_true
        denom = n_true + n_pred - tp
        return Validation(
            loss=total_loss / max(counted, 1),
            mean_iou=iou_sum / n_true if n_true else 1.0,
            ap50=tp / denom if denom else 1.0,
            n_true=n_true,
            n_pred=n_pred,
        )

    # -- checkpoints
    def _provenance(self, seconds: float, validation: Validation | None) -> dict[str, Any]:
        from . import __version__

        return {
            "napari_unet_version": __version__,
            "steps": self.step,
            "seconds": round(self._seconds_before + seconds, 3),
            "config": self.config.to_dict(),
            "data": self.data.summary,
            "started_from": self.started_from,
            "validation": asdict(validation) if validation else None,
            "rng": self.rng.bit_generator.state,
        }

    def save(self, path: str | Path, seconds: float = 0.0, validation=None) -> Path:
        """Save a checkpoint (model, optimizer and random state) atomically."""
        from .modelfile import save_checkpoint

        state: dict[str, torch.Tensor] = {"torch_rng": self._torch_gen.get_state()}
        opt = self.optimizer.state_dict()
        for idx, pstate in opt["state"].items():
            for key, value in pstate.items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                state[f"optim.{idx}.{key}"] = tensor
        return save_checkpoint(
            self.model, path, state, training=self._provenance(seconds, validation)
        )

    @classmethod
    def resume(
        cls,
        path: str | Path,
        data: TrainingData,
        config: TrainConfig | None = None,
        *,
        checkpoint: str | Path | None = None,
        device: str | None = None,
    ) -> Trainer:
        """Continue a run from a checkpoint written by :meth:`save`.

        ``config`` defaults to the checkpoint's own; give one to extend the
        budget (``steps`` counts all steps, earlier runs included).
        """
        from .modelfile import load_model, load_training_state

        model = load_model(path)
        info = model.metadata.get("training") or {}
        if config is None:
            config = TrainConfig.from_dict(info.get("config"))
        trainer = cls(model, data, config, checkpoint=checkpoint or path, device=device)
        # the run's own origin; a checkpoint from before origins were recorded has none
        trainer.started_from = info.get("started_from") or {
            "model": "unknown (the checkpoint predates provenance records)"
        }
        state = load_training_state(path)
        trainer.step = int(info.get("steps", 0))
        trainer._seconds_before = float(info.get("seconds", 0.0))
        if "rng" in info:
            trainer.rng.bit_generator.state = info["rng"]
        if "torch_rng" in state:
            trainer._torch_gen.set_state(state["torch_rng"])
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in state.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = value.to(trainer.device)
        if opt_state:
            sd = trainer.optimizer.state_dict()
            for pstate in opt_state.values():
                if "step" in pstate:
                    pstate["step"] = pstate["step"].to("cpu")
            sd["state"] = opt_state
            trainer.optimizer.load_state_dict(sd)
        return trainer

    # -- the loop
    def _event(self, state: TrainState, loss, lr, start, step_time, validation, message=""):
        elapsed = time.perf_counter() - start
        fraction = self._fraction(elapsed)
        remaining = None
        c = self.config
        if step_time is not None:
            left = []
            if c.steps is not None:
                left.append(max(0, c.steps - self.step) * step_time)
            if c.time_limit is not None:
                left.append(max(0.0, c.time_limit - self._seconds_before - elapsed))
            remaining = min(left)
        event = TrainEvent(
            state=state,
            step=self.step,
            total_steps=c.steps,
            loss=loss,
            learning_rate=lr,
            elapsed=elapsed,
            remaining=remaining,
            fraction=fraction,
            validation=validation,
            message=message,
        )
        self.history.append(event)
        return event

    def run(self) -> Generator[TrainEvent, None, UNet]:
        """Train until a budget runs out or :meth:`stop` is called.

        Yields
        ------
        TrainEvent
            STARTED, then a STEP after every step, VALIDATED and CHECKPOINT when
            they happen, and finally DONE or STOPPED (CRASHED before an error
            propagates).

        Returns
        -------
        UNet
            The trained model (``StopIteration.value``).
        """
        c = self.config
        start = time.perf_counter()
        loss = None
        validation = None
        step_time = None
        lr = self.learning_rate_at(self._fraction(0.0))
        yield self._event(TrainState.STARTED, None, lr, start, None, None, "Training started.")
        try:
            while not self._stop_requested and self._fraction(time.perf_counter() - start) < 1.0:
                lr = self.learning_rate_at(self._fraction(time.perf_counter() - start))
                t0 = time.perf_counter()
                loss = self.train_step(lr)
                if not math.isfinite(loss):
                    raise NapariUnetError(
                        "Training diverged (the loss is not a number); try a smaller learning rate."
                    )
                dt = time.perf_counter() - t0
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                yield self._event(TrainState.STEP, loss, lr, start, step_time, validation)
                if self.step % c.validate_every == 0 and self.data.has_validation:
                    validation = self.validate()
                    yield self._event(TrainState.VALIDATED, loss, lr, start, step_time, validation)
                if self.checkpoint and self.step % c.checkpoint_every == 0:
                    self.save(self.checkpoint, time.perf_counter() - start, validation)
                    yield self._event(TrainState.CHECKPOINT, loss, lr, start, step_time, validation)
            stopped = self._stop_requested
            if self.data.has_validation and (self.history[-1].state != TrainState.VALIDATED):
                validation = self.validate()
            self._finish(time.perf_counter() - start, validation)
        except Exception as exc:
            yield self._event(TrainState.CRASHED, loss, lr, start, step_time, validation, str(exc))
            raise
        finally:
            self.model.eval()
        state = TrainState.STOPPED if stopped else TrainState.DONE
        word = "stopped" if stopped else "finished"
        yield self._event(
            state,
            loss,
            lr,
            start,
            step_time,
            validation,
            f"Training {word} after {self.step} steps.",
        )
        return self.model

    def _finish(self, seconds: float, validation: Validation | None) -> None:
        self.model.metadata["training"] = self._provenance(seconds, validation)
        self.model.metadata["training"].pop("rng")
        if self.checkpoint:
            self.save(self.checkpoint, seconds, validation)


def _origin(metadata: dict[str, Any]) -> dict[str, Any]:
    """Where a run starts: scratch, or a named/trained model (whose scores no longer apply).

    The start model's own description, training data and evaluation move in
    here (with its own origin, so fine-tuning twice keeps the whole chain), and
    a named model gets ", fine-tuned" added, so a fine-tuned model never shows
    the name, data or scores of the weights it started from as its own.
    (Changes ``metadata``.)
    """
    training = metadata.get("training") or {}
    if not training and "name" not in metadata:
        return {"model": "scratch"}
    name = metadata.get("name", "a trained model")
    origin = {"model": name, "steps": training.get("steps")}
    if training.get("started_from"):
        origin["started_from"] = training["started_from"]
    for key in ("description", "training_data"):
        if key in metadata:
            origin[key] = metadata.pop(key)
    if "name" in metadata and not name.endswith(", fine-tuned"):
        metadata["name"] = f"{name}, fine-tuned"
    if "evaluation" in metadata:
        origin["evaluation"] = {
            k: v for k, v in metadata.pop("evaluation").items() if k in ("ap50", "mean_iou")
        }
    return origin


def _model_normalization(model: UNet, config: TrainConfig) -> Normalization:
    """The model's stored normalisation; ``config``'s for a model that has none."""
    stored = model.metadata.get("normalization")
    return Normalization.from_dict(stored) if stored else config.normalization


def _valid_input(size: int, depth: int) -> int:
    """The valid input size nearest ``size`` from above."""
    from .model import halo

    return input_size_for_output(max(1, int(size) - 2 * halo(depth)), depth)


def _drop_outside(pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove predicted objects mostly outside the annotated region (they cannot be scored)."""
    if mask.all():
        return pred
    n = int(pred.max())
    inside = np.bincount(pred[mask].ravel(), minlength=n + 1)
    total = np.bincount(pred.ravel(), minlength=n + 1)
    keep = inside * 2 >= total
    keep[0] = False
    return np.where(keep[pred], pred, 0)


def train_model(
    images: Sequence[Any] | Any,
    labels: Sequence[Any] | Any,
    regions: Sequence[Any] | Any | None = None,
    *,
    model: UNet | None = None,
    config: TrainConfig | None = None,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    progress: Callable[[TrainEvent], Any] | None = None,
) -> UNet:
    """Train (or fine-tune) a U-Net and return it: the one-call form of :class:`Trainer`.

    Parameters
    ----------
    images, labels, regions
        As for :func:`prepare_training_data`.
    model : UNet or None
        The start model; ``None`` makes one from scratch with the paper's
        initialisation and ``config``'s architecture.
    config : TrainConfig or None
        None: ``TrainConfig()`` from scratch, ``TrainConfig.fine_tune()`` (the
        lower learning rate) when ``model`` is given.
    checkpoint : path-like or None
        Checkpoint file, saved atomically during and after training.
    device : str or None
    progress : callable or None
        Called with every :class:`TrainEvent`.

    Returns
    -------
    UNet
    """
    if config is None:
        config = TrainConfig() if model is None else TrainConfig.fine_tune()
    if model is None:
        model = new_model(config)
    data = prepare_training_data(images, labels, regions, model=model, config=config)
    trainer = Trainer(model, data, config, checkpoint=checkpoint, device=device)
    return run_to_end(trainer.run(), progress)


def new_model(config: TrainConfig, in_channels: int = 1) -> UNet:
    """A U-Net from scratch with the paper's initialisation, seeded by ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = UNet(
            in_channels=in_channels,
            n_classes=2,
            base_channels=config.base_channels,
            depth=config.depth,
            dropout=config.dropout,
        )
    model.metadata["normalization"] = config.normalization.to_dict()
    return model
