"""What the Train dock does for live mode (a mixin of ``TrainWidget``).

:class:`~napari_unet._qt.live_panel.LivePanel` runs the worker and writes the
previews; here the dock picks the start model, shows the progress, and, when
live mode is switched off, ends the run as it ends a Fine-tune (the guard, the
model put in use, the round recorded and autosaved, the whole image segmented).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from napari.utils.notifications import show_error, show_info

from .model_choice import CURRENT, SCRATCH, model_loader
from .precision_choice import show_auto_ran


class TrainLive:
    """The Train dock's side of live mode."""

    def _live_model(self) -> tuple[Any, str]:
        """A loader of the start model (called in the worker) and its description."""
        choice = self._start.value
        if choice == SCRATCH:
            from ..training import new_model

            return partial(new_model, self.config()), "scratch"
        return model_loader(choice, self._start_path.value, self._session)

    def _live_started(self, image_layer: Any, source: str) -> None:
        self._target = image_layer
        self._start_source = self._start_label = source
        if self._start.value == CURRENT:
            made, k = self._model_round
            self._start_label = f"round {k}" if made is self._session.model else source
        self._trained_names = [image_layer.name]
        self.plot.clear()
        self._train.enabled = False
        self._status.value = f"Live training: preparing (starting from {source})..."
        n = len(self.training_set.entries)
        if n:  # Fine-tune would take them all: say what live takes
            images = "its image" if n == 1 else f"its {n} images"
            show_info(
                f"Live trains on '{image_layer.name}' only, not on the training set ({images})."
            )
        self.guard.clear()

    def _live_event(self, event: Any) -> None:
        from ..training.live import LiveState
        from ..training.partial import partial_sentence

        said = partial_sentence(event.partial, event.left_out)
        self.scope.set_partial(said, event.partial, event.left_out)
        if event.known:  # the overlay draws what live mode trains on
            self.scope.set_live_known(self._target, event.known)
        if event.state is LiveState.STEP:
            self.plot.add_loss(event.step, event.loss)
            self._status.value = (
                f"Live: step {event.step} on {event.cells} cells; loss {event.loss:.3f}"
            )
        elif event.state is LiveState.PREVIEW:
            p = event.preview
            self._status.value = (
                f"Live: the field in view predicted at step {p.step} ({p.seconds:.1f} s)."
            )
        elif event.message:
            self._status.value = event.message
            if event.state is LiveState.STARTED:  # it says which precision runs
                show_auto_ran(self._precision, event.message)

    def _live_done(self, model: Any, last: Any, trainer: Any) -> None:
        """Live mode was switched off: a round, as after Fine-tune."""
        self._live_trainer = trainer
        try:
            self._on_done(model, last)
        finally:
            self._live_trainer = None
            self.scope.set_live_known(None, None)  # the start model judges the strays again

    def _live_failed(self, message: str) -> None:
        self._train.enabled = True
        self.scope.set_live_known(None, None)
        self._status.value = message
        show_error(message)
