"""The training loop: :class:`Trainer` steps an optimizer on tiles from its sampler.

:meth:`Trainer.run` is a generator: it yields a typed
:class:`~napari_unet.training.TrainEvent` after every step, so a CLI progress bar
or a napari thread worker can follow it, and :meth:`Trainer.stop` ends it between
two steps with a consistent model. Tiles come from
:class:`~napari_unet.training.sampler.TileSampler`, scores from
:func:`~napari_unet.training.validation.validate`, the optimizer's state and a
run's origin from :mod:`napari_unet.training.checkpoint`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._generators import run_to_end
from .._version import __version__
from ..device import select_device
from ..errors import NapariUnetError
from ..model import UNet
from ..modelfile import load_model, load_training_state, save_checkpoint
from ..postprocess import resolve_postprocess
from ..postprocess.describe import describe_model_rule
from ..precision import autocast, resolve_precision
from .calibrate import (
    MIN_HELD_OUT,
    calibrate_model,
    calibration_bound,
    calibration_budget,
    validation_probabilities,
)
from .checkpoint import optimizer_tensors, origin_of, restore_optimizer
from .config import TrainConfig, TrainEvent, TrainState, Validation
from .data import TrainingData, model_normalization, prepare_training_data, tile_sizes
from .loss import weighted_cross_entropy
from .sampler import TileSampler
from .validation import start_score_calibrated, validate

__all__ = ["VALIDATION_SHARE", "Trainer", "new_model", "train_model"]

# Under a time budget, validation may take at most this share of the time.
VALIDATION_SHARE = 0.1


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
        self.seconds_before = 0.0  # training time of earlier (resumed) runs
        self._val_cost: tuple[float, float] | None = None  # when the last validation ran
        # the start model's score on the same held-out cells (the guard between rounds)
        self.baseline: Validation | None = None
        # the start model's held-out predictions and rule, for a like-with-like guard
        self._start: tuple[list[np.ndarray], dict] | None = None
        self.input_size, self.output_size = tile_sizes(self.config.tile_size, model.depth)
        self.sampler = TileSampler(
            data,
            self.input_size,
            self.output_size,
            self.config.augment,
            np.random.default_rng(self.config.seed),
        )
        self.model.to(self.device, memory_format=torch.channels_last)
        self.precision = resolve_precision(self.config.precision, self.device, purpose="train")
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.name == "fp16" else None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every step has the same tile shape
        self.optimizer = self._make_optimizer()
        self.torch_generator = torch.Generator().manual_seed(self.config.seed)
        self.model.metadata["normalization"] = model_normalization(model, self.config).to_dict()
        if data.planes and data.planes[0].pad < self.model.halo + self.output_size:
            raise NapariUnetError("The training data was prepared for a smaller tile size.")
        self.started_from = origin_of(self.model.metadata)  # last: nothing can fail after it

    @property
    def rng(self) -> np.random.Generator:
        """The random generator of tile positions and augmentation (the sampler's)."""
        return self.sampler.rng

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.model.parameters()
        # foreach: one call per operation for all parameters (torch's default only on GPUs);
        # the same arithmetic as the per-parameter loop, without its ~450 small calls a step
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum, foreach=True)
        return torch.optim.Adam(params, lr=c.learning_rate, foreach=True)

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
            parts.append((self.seconds_before + elapsed) / c.time_limit)
        return min(1.0, max(parts))

    def learning_rate_at(self, fraction: float) -> float:
        """The scheduled learning rate when ``fraction`` (0..1) of the budget is used.

        Constant, or cosine decay from ``learning_rate`` to 5% of it.
        """
        c = self.config
        if c.schedule == "constant":
            return c.learning_rate
        return c.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * fraction)))

    # -- a step
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        samples = [self.sampler.sample() for _ in range(self.config.batch_size)]
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
            torch.set_rng_state(self.torch_generator.get_state())
            with autocast(self.precision, self.device):  # the weights stay float32
                logits = self.model(x)
            self.torch_generator.set_state(torch.get_rng_state())
        loss = weighted_cross_entropy(logits.float(), t, w)  # the paper's loss in float32
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return float(loss.detach())

    def validate(self, cached: list | None = None) -> Validation | None:
        """Loss, mean IoU and AP@0.5 on the held-out cells; None without validation data.

        ``cached``: the held-out crops' probabilities, when already predicted.
        """
        return validate(self.model, self.data, self.config.min_size, self.device, cached=cached)

    # -- checkpoints
    def training_record(self, seconds: float, validation: Validation | None) -> dict:
        """The run's provenance: version, steps, time, settings, data, origin, scores, random state.

        ``seconds``: this run's training time (earlier, resumed runs' time is added).
        """
        return {
            "napari_unet_version": __version__,
            "steps": self.step,
            "seconds": round(self.seconds_before + seconds, 3),
            "config": self.config.to_dict(),
            "data": self.data.summary,
            "started_from": self.started_from,
            "validation": asdict(validation) if validation else None,
            "start_validation": asdict(self.baseline) if self.baseline else None,
            "rng": self.rng.bit_generator.state,
        }

    def save(self, path: str | Path, seconds: float = 0.0, validation=None) -> Path:
        """Save a checkpoint (model, optimizer and random state) atomically."""
        state = {"torch_rng": self.torch_generator.get_state(), **optimizer_tensors(self.optimizer)}
        record = self.training_record(seconds, validation)
        return save_checkpoint(self.model, path, state, training=record)

    def _restore(self, info: dict[str, Any], state: dict) -> None:
        """Put a checkpoint's record (``info``) and tensors (``state``) back into this run."""
        # the run's own origin; a checkpoint from before origins were recorded has none
        self.started_from = info.get("started_from") or {
            "model": "unknown (the checkpoint predates provenance records)"
        }
        self.step = int(info.get("steps", 0))
        self.seconds_before = float(info.get("seconds", 0.0))
        if "rng" in info:
            self.rng.bit_generator.state = info["rng"]
        if "torch_rng" in state:
            self.torch_generator.set_state(state["torch_rng"])
        restore_optimizer(self.optimizer, state, self.device)

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
        model = load_model(path)
        info = model.metadata.get("training") or {}
        if config is None:
            config = TrainConfig.from_dict(info.get("config"))
        trainer = cls(model, data, config, checkpoint=checkpoint or path, device=device)
        trainer._restore(info, load_training_state(path))
        return trainer

    # -- the loop
    def _event(self, state: TrainState, loss, lr, start, step_time, validation, message=""):
        elapsed = time.perf_counter() - start
        c = self.config
        remaining = None
        if step_time is not None:
            left = []
            if c.steps is not None:
                left.append(max(0, c.steps - self.step) * step_time)
            if c.time_limit is not None:
                left.append(max(0.0, c.time_limit - self.seconds_before - elapsed))
            remaining = min(left)
        event = TrainEvent(
            state=state,
            step=self.step,
            total_steps=c.steps,
            loss=loss,
            learning_rate=lr,
            elapsed=elapsed,
            remaining=remaining,
            fraction=self._fraction(elapsed),
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
        started = f"Training started. {self.precision.describe()}. {self.data.partial_note}".strip()
        yield self._event(TrainState.STARTED, None, lr, start, None, None, started)
        try:
            if self.data.has_validation and self.step == 0 and self.baseline is None:
                self._score_start()  # before any step: the start model's score
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
                if self.step % c.validate_every == 0 and self._validation_due(c):
                    t_val = time.perf_counter()
                    validation = self.validate()
                    self._val_cost = (t_val, time.perf_counter())
                    yield self._event(TrainState.VALIDATED, loss, lr, start, step_time, validation)
                if self.checkpoint and self.step % c.checkpoint_every == 0:
                    self.save(self.checkpoint, time.perf_counter() - start, validation)
                    yield self._event(TrainState.CHECKPOINT, loss, lr, start, step_time, validation)
            stopped = self._stop_requested
            cached, said = None, ""
            if c.calibrate and self.step > 0:
                cached, said = yield from self._calibrate(start, loss, lr, step_time, validation)
            if self.data.has_validation and (
                cached is not None or self.history[-1].state != TrainState.VALIDATED
            ):  # scored with the rule Predict will use, the calibrated one included
                validation = self.validate(cached)
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
            f"Training {word} after {self.step} steps.{said}",
        )
        return self.model

    def _calibrate(self, start, loss, lr, step_time, validation):
        """Calibrate the instance rule on the annotated cells (a tenth of the budget).

        Returns the validation crops' probabilities (to score the final validation
        without predicting again; None when all cells were used) and a sentence.
        """
        elapsed = time.perf_counter() - start
        # stopped early: a tenth of the time actually trained, so Stop stays quick
        limit = None if self._stop_requested else self.config.time_limit
        rules = self.config.calibration_rules
        budget = calibration_budget(limit, elapsed)
        cells = self.data.validation_cells
        where = f"{cells} held-out cells" if cells >= MIN_HELD_OUT else "all annotated cells"
        yield self._event(
            TrainState.CALIBRATING, loss, lr, start, step_time, validation,
            f"Calibrating the object rule on {where} ({calibration_bound(budget, rules)}).",
        )  # fmt: skip
        cached = None
        if cells >= MIN_HELD_OUT:
            cached = validation_probabilities(self.model, self.data, self.device)
            budget = self._rescore_start(budget)
        found = calibrate_model(self.model, self.data, self.device, budget, cached, rules)
        if found.rule is None:
            return cached, f" {found.message}"
        rule = describe_model_rule(self.model)
        return cached, f" {rule[0].upper()}{rule[1:]}."

    def _score_start(self) -> None:
        """The start model's score; its predictions are kept when the end calibrates."""
        if self.config.calibrate and self.data.validation_cells >= MIN_HELD_OUT:
            self._start = (
                validation_probabilities(self.model, self.data, self.device),
                resolve_postprocess(self.model, fallback={"min_size": self.config.min_size}),
            )
            self.baseline = self.validate(self._start[0])
        else:
            self.baseline = self.validate()

    def _rescore_start(self, budget: float) -> float:
        """Half the calibration budget calibrates the start model's rule on the same cells.

        The end is scored with a rule fitted to the held-out cells, so the start is too
        (:func:`~napari_unet.training.validation.start_score_calibrated`): like with like.
        Returns the time left (a count of labellings, if set, bounds each search instead).
        """
        if self._start is None:  # resumed, or no start predictions kept
            return budget
        began = time.perf_counter()
        probs, rule = self._start
        c = self.config
        fair = start_score_calibrated(
            self.data, probs, c.min_size, rule, budget / 2, c.calibration_rules
        )
        if fair is not None:
            self.baseline = fair
        self._start = None
        return max(0.0, budget - (time.perf_counter() - began))

    def _validation_due(self, c: TrainConfig) -> bool:
        """Whether to validate now.

        Under a time budget, only while validating takes at most
        :data:`VALIDATION_SHARE` of the time: held-out cells can span a whole
        image, and every second spent scoring is a second not spent training.
        """
        if not self.data.has_validation:
            return False
        if c.time_limit is None or self._val_cost is None:
            return True
        began, ended = self._val_cost
        return ended - began <= VALIDATION_SHARE * (time.perf_counter() - ended)

    def _finish(self, seconds: float, validation: Validation | None) -> None:
        self.model.metadata["training"] = self.training_record(seconds, validation)
        self.model.metadata["training"].pop("rng")
        if self.checkpoint:
            self.save(self.checkpoint, seconds, validation)


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
    names: Sequence[str] | None = None,
    memory: Any = None,
) -> UNet:
    """Train (or fine-tune) a U-Net and return it: the one-call form of :class:`Trainer`.

    Parameters
    ----------
    images, labels, regions, names, memory
        As for :func:`prepare_training_data` (pass one ``memory`` to successive rounds).
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
    """
    if config is None:
        config = TrainConfig() if model is None else TrainConfig.fine_tune()
    if model is None:
        model = new_model(config)
    kw = {"names": names, "memory": memory}
    data = prepare_training_data(images, labels, regions, model=model, config=config, **kw)
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
