"""What decides a training run (:class:`TrainConfig`) and what it reports (:class:`TrainEvent`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any

from ..augment import AugmentConfig
from ..errors import NapariUnetError
from ..normalization import Normalization
from ..paper import SIGMA, W0
from ..precision import check_precision

__all__ = [
    "FINE_TUNE_LEARNING_RATE",
    "INTERACTIVE_SECONDS",
    "TrainConfig",
    "TrainEvent",
    "TrainState",
    "Validation",
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

    Why the defaults are what they are: docs/benchmarks.md, "Why the training defaults".

    Attributes
    ----------
    steps : int or None
        Step budget. Training ends at whichever budget runs out first.
    time_limit : float or None
        Time budget in seconds (validation included).
    learning_rate : float
        Learning rate (the peak of a cosine schedule). To fine-tune a trained
        model use :data:`FINE_TUNE_LEARNING_RATE` (3e-4) instead, as
        :meth:`fine_tune` does.
    optimizer : {"adam", "sgd"}
        ``"adam"`` (default) or the paper's ``"sgd"`` with ``momentum``.
    momentum : float
        SGD momentum (the paper's 0.99).
    schedule : {"constant", "cosine"}
        Constant (default), or cosine decay to 5% over the budget.
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
        Share of the annotated cells held out for validation (0 turns it off);
        which ones follows a fixed rule (:mod:`napari_unet.training.split`).
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
    complete : bool
        Whether every unpainted pixel is background (the paper's dense ground
        truth). False (default): unpainted is unknown; the loss covers the
        painted cells, a thin ring and the narrow gaps around them, and the
        annotated region (:mod:`napari_unet.training.known`). An annotated
        region always counts as complete; with ``complete=True`` nothing outside
        it counts, as before.
    calibrate : bool
        After training, search the instance rule (components or watershed, its
        thresholds and filters) on the annotated cells and store it in the
        model's ``metadata["postprocess"]``, within a tenth of the training
        budget (:mod:`napari_unet.training.calibrate`).
    calibration_rules : int or None
        Bound the calibration by a number of labellings searched (each with all
        its size and confidence filters) instead of a tenth of the time: the
        same rule on any machine and under any load, for reproducible runs and
        benchmarks. None (default): the time share; the whole search (about
        105 labellings) takes about 3 s on a 256x256 window on a 2-core laptop,
        and a larger annotation's windows reach less of it.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Of the forward and backward passes: float32, or bfloat16/float16 autocast
        with float32 master weights and the weighted loss in float32 (``"fp16"``:
        CUDA only, with a gradient scaler). ``"auto"``: the mixed precision only
        where this machine's measured training step is at least 1.3x faster
        (:mod:`napari_unet.precision`). Validation predicts in float32 either way.
    """

    steps: int | None = 1000
    time_limit: float | None = None
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.99
    schedule: str = "constant"
    tile_size: int = 380
    batch_size: int = 1
    w0: float = W0
    sigma: float = SIGMA
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
    complete: bool = False
    calibrate: bool = True
    calibration_rules: int | None = None
    precision: str = "auto"

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
        if self.calibration_rules is not None and int(self.calibration_rules) < 1:
            raise NapariUnetError(
                f"calibration_rules must be at least 1, got {self.calibration_rules}."
            )
        for name in ("batch_size", "validate_every", "checkpoint_every", "tile_size"):
            if int(getattr(self, name)) < 1:
                raise NapariUnetError(f"{name} must be at least 1, got {getattr(self, name)}.")
        check_precision(self.precision)  # the name; the device is checked on use
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
        """Inverse of :meth:`to_dict`; unknown keys are refused.

        A record without ``complete`` was written before sparse annotations
        existed, when every unpainted pixel was background: it reads as complete.
        Likewise one without ``precision`` ran in float32, and one without
        ``calibrate`` was never calibrated.
        """
        if not data:
            return cls()
        data = {"complete": True, "precision": "fp32", "calibrate": False, **data}
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
    CALIBRATING = "calibrating"
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
