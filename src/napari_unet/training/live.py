"""Live training: the model keeps learning while the user paints, and shows the field in view.

:class:`LiveTrainer` runs :class:`~napari_unet.training.Trainer`'s steps (its
optimizer, loss, sampler and random state) without a budget, from the current
model, until :meth:`LiveTrainer.stop`. Another thread (the GUI's) hands it
changes with :meth:`LiveTrainer.update`: between two steps they join the
training data through :class:`~napari_unet.training.live_data.LiveData`, which
re-prepares only the changed area. It also asks for previews with
:meth:`LiveTrainer.request_preview`: every ``preview_every`` seconds (longer
when a preview is slow, so that previews take at most ``preview_share`` of the
time) the box in view is predicted with the latest weights
(:func:`~napari_unet.training.live_preview.box_probabilities`) and labelled with
the model's rule. The rule itself is calibrated on the painted cells as
Fine-tune calibrates it (:func:`~napari_unet.training.calibrate.calibrate_model`):
every ``calibrate_every`` seconds while training (less often when it is slow,
so that it takes at most a tenth of the time), and once more when it stops; a
rule fitted to the start model's objects cuts or merges the new ones (rods
under the bundled model's watershed: AP@0.5 0.41 -> 0.70 on 40 painted cells,
docs/benchmarks.md). When it stops, the run is scored on the held-out cells
(the start model too, on the same cells, with the same rule) and recorded in
the model's metadata as a Fine-tune run is, so the caller can record a round.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch

from ..errors import NapariUnetError
from ..model import UNet
from ..postprocess import labels_from_probabilities
from ..postprocess.describe import describe_model_rule
from .calibrate import CALIBRATION_SHARE, calibrate_model
from .config import INTERACTIVE_SECONDS, TrainConfig, Validation
from .live_data import LiveData
from .live_preview import box_probabilities
from .partial import PartialRule
from .trainer import Trainer
from .validation import validate

__all__ = ["LiveEvent", "LivePreview", "LiveState", "LiveTrainer"]

Box = tuple[int, int, int, int]


class LiveState(Enum):
    """What a :class:`LiveEvent` reports."""

    STARTED = "started"
    STEP = "step"
    UPDATED = "updated"  # annotation changes joined the training data
    PREVIEW = "preview"
    CALIBRATED = "calibrated"  # the instance rule was calibrated on the painted cells
    WAITING = "waiting"  # nothing left to train on (every cell erased)
    STOPPED = "stopped"


@dataclass(frozen=True)
class LivePreview:
    """The model's view of a box of one plane, at a step."""

    z: int
    box: Box  # (y0, y1, x0, x1), clipped to the image
    probabilities: np.ndarray  # (K, y1 - y0, x1 - x0)
    labels: np.ndarray  # (y1 - y0, x1 - x0) int32, by the model's rule
    step: int
    seconds: float  # what the preview cost


@dataclass(frozen=True)
class LiveEvent:
    """Progress of live training.

    ``areas``: for UPDATED, the boxes re-prepared; ``known``: for STARTED and
    UPDATED, ``(z, mask)`` of every plane whose trained area may have changed
    (:meth:`LiveData.known`: what the loss looks at); ``preview`` for PREVIEW;
    ``validation`` (and ``start_validation``, the start model on the same
    cells) for STOPPED; ``partial``: the cells that look partly painted now
    (:mod:`napari_unet.training.partial`); ``left_out``: the stray dabs left out
    of training; ``seconds``: what a CALIBRATED event's calibration cost.
    """

    state: LiveState
    step: int
    loss: float | None
    elapsed: float
    cells: int
    message: str = ""
    areas: tuple[Box, ...] = ()
    preview: LivePreview | None = None
    validation: Validation | None = None
    start_validation: Validation | None = None
    partial: tuple[int, ...] = ()  # ids of the cells that look partly painted
    seconds: float = 0.0
    left_out: tuple[int, ...] = ()  # ids of the stray dabs, not trained on
    known: tuple[tuple[int, np.ndarray], ...] = ()  # (plane, area trained on) that changed


class LiveTrainer:
    """Trains continuously on an annotation that keeps changing.

    Parameters
    ----------
    model : UNet
        The current model, trained in place.
    image : array
        The image being annotated (2D or a stack), as for
        :func:`~napari_unet.training.prepare_training_data`.
    labels : array
        Its annotation now (copied; later changes come through :meth:`update`).
    config : TrainConfig or None
        ``TrainConfig.fine_tune()`` by default; the budget (``steps``,
        ``time_limit``) is ignored: it trains until :meth:`stop`. The learning
        rate is constant. ``calibrate`` False keeps the model's rule.
    name : str
        The image's name in the validation split's rule (use the project's
        entry name, so rounds share the split).
    device : str or None
    preview_every : float
        Seconds between previews at least.
    preview_share : float
        The largest share of the time previews may take.
    region : array or None
        Where the annotation is complete (later changes through :meth:`update_region`).
    copied : mapping or None
        The record of cells copied from a prediction: never held out while unedited.
    calibrate_every : float or None
        Seconds between calibrations of the rule while training, at least (None:
        only when it stops).
    memory : ForegroundMemory or None
        The start models' foreground kept from earlier rounds (see
        :func:`~napari_unet.training.prepare_training_data`).
    clock : callable
        Returns the time in seconds; every interval and cost above is read from
        it. A benchmark passes a simulated clock (one that advances by training
        steps) so that previews and calibrations fall at the same steps on any
        machine; with ``config.calibration_rules`` such a run is reproducible.

    Raises
    ------
    NapariUnetError
        When the annotation has no cell, or does not fit the image or model.
    """

    def __init__(
        self,
        model: UNet,
        image: Any,
        labels: Any,
        *,
        config: TrainConfig | None = None,
        name: str = "image 1",
        device: str | None = None,
        preview_every: float = 10.0,
        preview_share: float = 1.0 / 3.0,
        region: Any = None,
        copied: Any = None,
        calibrate_every: float | None = 30.0,
        memory: Any = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        cfg = config or TrainConfig.fine_tune()
        self.calibrates = bool(cfg.calibrate)
        cfg = cfg.replace(schedule="constant", calibrate=False)
        rule = None if cfg.complete else PartialRule(model, memory=memory)
        self.live = LiveData(
            image, np.array(labels, copy=True), model=model, config=cfg, name=name,
            region=region, copied=copied, partial=rule,
        )  # fmt: skip
        if not self.live.cells:
            raise NapariUnetError("Paint at least one cell before starting live training.")
        self.trainer = Trainer(model, self.live.data, cfg, device=device)
        self.model = model
        self.preview_every = float(preview_every)
        self.preview_share = float(preview_share)
        self._start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._updates: queue.SimpleQueue = queue.SimpleQueue()
        self._request: tuple[int, Box] | None = None
        self._wake = threading.Event()
        self._stop = False
        self._last_preview: tuple[float, float, int, tuple[int, Box]] | None = None
        self._normalized: tuple[int, np.ndarray] | None = None
        self.calibrate_every = calibrate_every
        self._clock = clock
        # the last calibration: when it ended, what it cost, at which step
        self._last_calibration: tuple[float, float, int] | None = None

    # -- from any thread
    def update(self, z: int, box: Box, labels: np.ndarray) -> None:
        """Hand over the annotation's new values in ``box`` of plane ``z`` (thread-safe).

        ``labels`` must not change afterwards (give a copy of the box).
        """
        self._updates.put((int(z), tuple(int(v) for v in box), labels))
        self._wake.set()

    def update_region(self, region: Any) -> None:
        """Hand over a new annotated region (a mask of the labels' shape, or None; thread-safe)."""
        self._updates.put((None, None, None if region is None else np.array(region, bool)))
        self._wake.set()

    def request_preview(self, z: int, box: Box) -> None:
        """Ask for previews of ``box`` of plane ``z`` from now on (thread-safe)."""
        self._request = (int(z), tuple(int(v) for v in box))
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current step (thread-safe)."""
        self._stop = True
        self.trainer.stop()
        self._wake.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop

    # -- the loop
    def _event(self, state: LiveState, loss: float | None, start: float, **kw: Any) -> LiveEvent:
        elapsed = self._clock() - start
        partial, left = tuple(self.live.partial_cells), tuple(self.live.left_out)
        return LiveEvent(
            state, self.trainer.step, loss, elapsed, self.live.cells, partial=partial,
            left_out=left, **kw,
        )  # fmt: skip

    def run(self) -> Generator[LiveEvent, None, UNet]:
        """Train until :meth:`stop`, taking changes and answering previews between steps.

        Yields
        ------
        LiveEvent
            STARTED; then STEP after every step, UPDATED when changes joined,
            PREVIEW when a preview is ready, WAITING while nothing is left to
            train on; finally STOPPED with the scores.

        Returns
        -------
        UNet
            The trained model (``StopIteration.value``).
        """
        start = self._clock()
        trainer, lr = self.trainer, self.trainer.config.learning_rate
        loss = None
        said = (
            f"Live training started. {trainer.precision.describe()}. {self.live.data.partial_note}"
        )
        known = self._known(self.live.planes)
        yield self._event(LiveState.STARTED, None, start, message=said.strip(), known=known)
        try:
            while not self._stop:
                areas, planes = self._take_updates()
                if areas:
                    known = self._known(planes)
                    yield self._event(LiveState.UPDATED, loss, start, areas=areas, known=known)
                preview = self._preview_if_due()
                if preview is not None:
                    yield self._event(LiveState.PREVIEW, loss, start, preview=preview)
                if self._calibration_due(start):
                    said, cost = self.calibrate(self._budget(start))
                    yield self._event(LiveState.CALIBRATED, loss, start, message=said, seconds=cost)
                if self._stop:
                    break
                if not self.live.data.planes:
                    self._wake.wait(0.2)
                    self._wake.clear()
                    said = "Nothing to train on: paint a cell."
                    yield self._event(LiveState.WAITING, loss, start, message=said)
                    continue
                loss = trainer.train_step(lr)
                if not math.isfinite(loss):
                    raise NapariUnetError(
                        "Training diverged (the loss is not a number); try a smaller learning rate."
                    )
                yield self._event(LiveState.STEP, loss, start)
            validation, baseline = self._finish(self._clock() - start)
        finally:
            self.model.eval()
        said = f"Live training stopped after {trainer.step} steps on {self.live.cells} cells."
        yield self._event(
            LiveState.STOPPED, loss, start, message=said,
            validation=validation, start_validation=baseline,
        )  # fmt: skip
        return self.model

    def _take_updates(self) -> tuple[tuple[Box, ...], set[int]]:
        """Apply the queued changes: the boxes re-prepared and the planes they were in."""
        areas, planes = [], set()
        while True:
            try:
                z, box, labels = self._updates.get_nowait()
            except queue.Empty:
                return tuple(areas), planes
            if z is None:  # a new region: any plane's area may have moved, or gone
                before = set(self.live.planes)
                area = self.live.set_region(labels)
                changed = before | set(self.live.planes)
            else:
                area = self.live.update(z, box, labels)
                h, w = self.live.shape[-2:]
                # a whole plane: the split may have moved, and other planes with it
                changed = {z, *self.live.planes} if area == (0, h, 0, w) else {z}
            if area is not None:
                areas.append(area)
                planes |= changed

    def _known(self, planes: Any) -> tuple[tuple[int, np.ndarray], ...]:
        """``(z, area trained on)`` of ``planes`` (a plane no longer annotated: all False)."""
        return tuple((int(z), self.live.known(z)) for z in sorted(planes))

    # -- previews
    def _preview_if_due(self) -> LivePreview | None:
        request = self._request
        if request is None:
            return None
        now = self._clock()
        if self._last_preview is not None:
            began, cost, step, asked = self._last_preview
            interval = max(self.preview_every, cost / self.preview_share)
            fresh = step == self.trainer.step and asked == request
            if fresh or now - began < interval:
                return None
        return self.preview(*request)

    def preview(self, z: int, box: Box) -> LivePreview | None:
        """Predict ``box`` of plane ``z`` with the current weights and label it.

        None when stopped meanwhile. Called by :meth:`run` when a preview is due.
        """
        began = self._clock()
        image = self._plane_image(z)
        trainer = self.trainer
        probs = box_probabilities(
            self.model, image, box, trainer.device, trainer.precision, lambda: self._stop
        )
        if probs is None:
            return None
        labels = labels_from_probabilities(probs, model=self.model)
        h, w = image.shape[-2:]
        clipped = (max(0, box[0]), min(h, box[1]), max(0, box[2]), min(w, box[3]))
        cost = self._clock() - began
        self._last_preview = (began, cost, trainer.step, (z, tuple(box)))
        return LivePreview(z, clipped, probs, labels, trainer.step, cost)

    def _plane_image(self, z: int) -> np.ndarray:
        if self._normalized is None or self._normalized[0] != z:
            self._normalized = (z, self.live.normalized(z))
        return self._normalized[1]

    # -- the instance rule
    def _calibration_due(self, start: float) -> bool:
        if not self.calibrates or self.calibrate_every is None or not self.live.data.planes:
            return False
        ended, cost, step = self._last_calibration or (start, 0.0, 0)
        wait = max(self.calibrate_every, cost / CALIBRATION_SHARE)
        return self.trainer.step > step and self._clock() - ended >= wait

    def _budget(self, start: float) -> float:
        """A tenth of the time since the last calibration (at most Fine-tune's, 12 s)."""
        ended = self._last_calibration[0] if self._last_calibration else start
        since = self._clock() - ended
        return CALIBRATION_SHARE * min(since, INTERACTIVE_SECONDS)

    def calibrate(self, budget: float) -> tuple[str, float]:
        """Calibrate the model's rule on the painted cells now, as Fine-tune does at its end.

        The held-out cells when there are enough (else all painted cells), the
        search stopped after ``budget`` seconds (or ``config.calibration_rules``
        labellings, when set); the rule in use stays unless
        another scores higher. Called by :meth:`run` when due.

        Returns
        -------
        (str, float)
            A sentence for the status, and what the calibration cost in seconds.
        """
        began = self._clock()
        rules = self.trainer.config.calibration_rules
        found = calibrate_model(
            self.model, self.live.data, self.trainer.device, budget, rules=rules
        )
        cost = self._clock() - began
        self._last_calibration = (self._clock(), cost, self.trainer.step)
        if found.rule is None:
            return found.message, cost
        rule = describe_model_rule(self.model)
        return f"Live: the object rule calibrated at step {self.trainer.step}: {rule}.", cost

    # -- the end
    def _finish(self, seconds: float) -> tuple[Validation | None, Validation | None]:
        """Calibrate the rule, score the run and the start model on the held-out cells; record."""
        trainer = self.trainer
        done = self._last_calibration is not None and self._last_calibration[2] == trainer.step
        if self.calibrates and trainer.step > 0 and self.live.data.planes and not done:
            self.calibrate(self._budget(self._clock() - seconds))
        trainer.config = trainer.config.replace(steps=max(1, trainer.step))
        validation = trainer.validate() if self.live.data.has_validation else None
        baseline = self._start_score() if validation is not None else None
        trainer.baseline = baseline
        trainer._finish(seconds, validation)
        return validation, baseline

    def _start_score(self) -> Validation | None:
        """The start model's score on the same held-out cells (the guard between rounds)."""
        now = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            with torch.no_grad():
                self.model.load_state_dict(self._start_state)
            return validate(self.model, self.live.data, self.trainer.config.min_size,
                            self.trainer.device)  # fmt: skip
        finally:
            with torch.no_grad():
                self.model.load_state_dict(now)
