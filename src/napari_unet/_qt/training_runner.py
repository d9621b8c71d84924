"""Running the headless training engine in a napari thread worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils import progress as napari_progress
from psygnal import Signal

from .prediction import UserProblem, start_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..model import UNet
    from ..training import TrainConfig, Trainer


class TrainingRunner:
    """Prepares the data and trains in a worker; Stop takes effect after the current step.

    Signals carry the engine's typed events; ``done`` carries the trained model
    (also after Stop, with the steps done so far) and ``failed`` a sentence.
    """

    event = Signal(object)  # napari_unet.training.TrainEvent
    done = Signal(object, object)  # model, last TrainEvent
    failed = Signal(str)

    def __init__(self) -> None:
        self.worker = None
        self.trainer: Trainer | None = None
        self._stop = False
        self._bar = None
        self._last = None

    @property
    def running(self) -> bool:
        """Whether training (or its data preparation) is under way."""
        return self.worker is not None

    def start(
        self, images, labels, regions, model: UNet | Callable[[], UNet], config: TrainConfig
    ) -> None:
        """Train on snapshots of the given arrays (the caller takes the snapshots).

        ``model`` may be a function that makes, reads or copies the model: it is
        called in the worker, so that work stays off the GUI thread.
        """
        if self.worker is not None:
            return
        self._stop = False
        self.trainer = None
        self._last = None
        self.worker = start_worker(
            self._job(images, labels, regions, model, config),
            yielded=self._on_event,
            returned=self._on_returned,
            errored=lambda exc: self.failed.emit(f"Training failed: {exc}"),
            finished=self._on_finished,
        )
        self._bar = napari_progress(total=1000, desc="Training U-Net")
        self.worker.start()

    def _job(self, images, labels, regions, model, config):
        import torch

        from ..training import Trainer, prepare_training_data

        if not isinstance(model, torch.nn.Module):  # a loader: run it here, in the worker
            model = model()
        data = prepare_training_data(images, labels, regions, model=model, config=config)
        if self._stop:
            return model
        self.trainer = Trainer(model, data, config)
        if self._stop:
            self.trainer.stop()
        return (yield from self.trainer.run())

    def stop(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        self._stop = True
        if self.trainer is not None:
            self.trainer.stop()

    def _on_event(self, event: Any) -> None:
        self._last = event
        if self._bar is not None:
            self._bar.n = int(event.fraction * 1000)
            self._bar.refresh()
        self.event.emit(event)

    def _on_returned(self, result: Any) -> None:
        if isinstance(result, UserProblem):
            self.failed.emit(result.message)
        else:
            self.done.emit(result, self._last)

    def _on_finished(self) -> None:
        self.worker = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
