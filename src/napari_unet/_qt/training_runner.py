"""Running the headless training engine in a napari thread worker."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from napari.utils import progress as napari_progress
from psygnal import Signal

from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..model import UNet
    from ..training import TrainConfig, Trainer


def recovery_folder() -> Path:
    """Where a model trained when napari closed mid-training is saved.

    ``$NAPARI_UNET_DATA_DIR/interrupted``, by default in the user's data folder
    (``~/.local/share/napari-unet/interrupted`` on Linux).
    """
    base = os.environ.get("NAPARI_UNET_DATA_DIR") or platformdirs.user_data_dir("napari-unet")
    return Path(base) / "interrupted"


def recent_recovered_model(days: float = 7.0) -> Path | None:
    """The newest model saved by :meth:`TrainingRunner.shutdown` in the last ``days``."""
    folder = recovery_folder()
    files = sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    if files and time.time() - files[-1].stat().st_mtime < days * 86400:
        return files[-1]
    return None


class TrainingRunner:
    """Prepares the data and trains in a worker; Stop takes effect after the current step.

    Signals carry the engine's typed events; ``done`` carries the trained model
    (also after Stop, with the steps done so far) and ``failed`` a sentence.
    When the dock or napari closes mid-run, :meth:`shutdown` stops after the
    current step and saves the model trained so far in :func:`recovery_folder`.
    """

    event = Signal(object)  # napari_unet.training.TrainEvent
    done = Signal(object, object)  # model, last TrainEvent
    failed = Signal(str)

    def __init__(self) -> None:
        self.worker = None
        self.trainer: Trainer | None = None
        self.saved_on_close: Path | None = None
        self._workers = WorkerGroup()
        self._stop = False
        self._closing = False
        self._told = False
        self._name = "training"
        self._bar = None
        self._last = None

    @property
    def running(self) -> bool:
        """Whether training (or its data preparation) is under way."""
        return self.worker is not None

    def start(
        self,
        images,
        labels,
        regions,
        model: UNet | Callable[[], UNet],
        config: TrainConfig,
        *,
        name: str = "training",
        names: list[str] | None = None,
        copied: list[Any] | None = None,
        memory: Any = None,
    ) -> None:
        """Train on snapshots of the given arrays (the caller takes the snapshots).

        ``model`` may be a function that makes, reads or copies the model: it is
        called in the worker, so that work stays off the GUI thread. ``name``
        (the image's) names the file saved if napari closes mid-run; ``names``
        name the training set's images (see ``prepare_training_data``);
        ``copied`` holds, per image, the record of cells copied from a prediction
        (:func:`~napari_unet.training.provenance.cell_signatures`), so that those
        not edited since are never validation cells; ``memory`` (a
        :class:`~napari_unet.training.first_sight.ForegroundMemory`) keeps the
        earlier rounds' judgement of the paint.
        """
        if self.worker is not None:
            return
        self._stop = False
        self.trainer = None
        self._last = None
        self._name = name
        # before the worker starts: napari's progress bar may process events
        self._bar = napari_progress(total=1000, desc="Training U-Net")
        self.worker = self._workers.start_generator(
            self._job(images, labels, regions, model, config, names, copied, memory),
            yielded=self._on_event,
            returned=self._on_returned,
            errored=lambda exc: self.failed.emit(f"Training failed: {exc}"),
            finished=self._on_finished,
        )

    def _job(self, images, labels, regions, model, config, names=None, copied=None, memory=None):
        from ..modelfile import resolve_model_arg
        from ..training import Trainer, prepare_training_data, unedited_copies

        model = resolve_model_arg(model)  # a loader runs here, in the worker
        records = copied or [None] * len(labels)
        machine = [unedited_copies(lab, rec) for lab, rec in zip(labels, records)]
        data = prepare_training_data(
            images, labels, regions, model=model, config=config, names=names,
            machine_cells=machine, memory=memory,
        )  # fmt: skip
        if self._stop:
            return model
        self.trainer = Trainer(model, data, config)
        if self._stop:
            self.trainer.stop()
        model = yield from self.trainer.run()
        if self._closing and self.trainer.step > 0:
            self._save_on_close(model)
        return model

    def _save_on_close(self, model: UNet) -> None:
        """Napari is closing: keep the model trained so far where the user finds it."""
        from ..modelfile import save_model

        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self._name)[:60]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = recovery_folder() / f"{stamp}-{safe}-{self.trainer.step}steps.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saved_on_close = save_model(model, path)

    def stop(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        self._stop = True
        if self.trainer is not None:
            self.trainer.stop()

    def ask_to_stop(self) -> None:
        """Closing: stop after the current step and save what was trained (no wait)."""
        self._closing = True
        self.stop()

    def shutdown(self, timeout: float = 30.0) -> Path | None:
        """The dock or napari closes: stop after the current step, save, and wait.

        Returns the file the model trained so far was saved to (None when no
        step had been taken, or nothing was running).
        """
        self.ask_to_stop()  # the trainer stops after its step and returns the model
        self._workers.stop_all(timeout, interrupt=False)
        self._on_finished()  # its signals are no longer delivered
        path = self.saved_on_close
        if path is not None and not self._told:
            self._told = True
            print(
                f"napari-unet: napari closed during training; the model trained so far "
                f"({self.trainer.step} steps) is saved to {path}",
                file=sys.stderr,
            )
        return path

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
