"""The Train dock: fine-tune the U-Net on the annotation with one click.

The dock is assembled from its jobs: the form and its settings
(:mod:`.train_form`), a run and its progress (here), the project's rounds
(:mod:`.train_rounds`) and the augmentation preview (:mod:`.augmentation_preview`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ProgressBar, PushButton
from napari.utils.notifications import show_error, show_info

from ..errors import NapariUnetError
from ..layout import to_model_layout
from ..training.first_sight import ForegroundMemory
from .augmentation_preview import PREVIEW_SAMPLES, AugmentationPreview
from .correction_panel import CorrectionPanel
from .dock import ScrollingDock, StatusLine
from .layers import layer_image, region_mask, spatial_shape
from .live_panel import LivePanel
from .loss_plot import LossPlot
from .model_choice import CURRENT, SCRATCH, model_loader
from .precision_choice import show_auto_ran
from .prediction import PredictionRunner
from .project_panel import ProjectPanel
from .project_session import project_for
from .round_guard import RoundGuardNote
from .round_history_panel import RoundHistoryPanel
from .session import state_for
from .train_form import TrainForm
from .train_live import TrainLive
from .train_rounds import TrainRounds
from .training_runner import TrainingRunner
from .training_scope import TrainingScope, is_complete
from .training_set_panel import TrainingSetPanel
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_SAMPLES", "TrainWidget", "TrainingSnapshot"]


class TrainWidget(TrainForm, TrainRounds, TrainLive, AugmentationPreview, ScrollingDock):
    """Fine-tune on the annotation; live loss plot, Stop keeps the model trained so far.

    The annotation is the viewer's current one (made or chosen in the Annotate
    dock, else the selected Labels layer); the lists leave out the plugin's own
    results (probability, segmentation, weight map) unless asked to offer them.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from ..training import TrainConfig

        self._defaults = TrainConfig.interactive()
        self._viewer = viewer
        self._state = state_for(viewer)
        self._session = self._state.model
        self._runner = TrainingRunner()
        # the line, live mode and every round judge the same paint the same
        self.first_sight = ForegroundMemory()
        self._predictor = PredictionRunner(viewer)
        self._workers = WorkerGroup()  # the augmentation preview
        self._preview_worker = None
        self.project_panel = ProjectPanel(viewer)
        self.form.native.layout().addWidget(self.project_panel.native)
        self.form.extend(self._data_fields(viewer))
        self.training_set = TrainingSetPanel(viewer, region_mask)
        self.scope = TrainingScope(viewer, self._defaults.sigma, self.first_sight)
        self.form.native.layout().addWidget(self.scope)
        self._preview = PushButton(text="Preview augmentation")
        self._train = PushButton(text="Fine-tune")
        self._stop = PushButton(text="Stop", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1000)
        self._left = StatusLine(1, label="Time left", value="")
        self._status = StatusLine(3, label="", value="")
        self._refresh = CheckBox(text="Segment the image when training ends", value=True)
        # Fine-tune shows without scrolling at 1366x768: what to train on, how long, the
        # button and its status; the training set and the augmentation come below
        self.live = LivePanel(self)
        controls = [self._train, self.live.toggle, self._stop, self._progress, self._left]
        controls.append(self._status)
        self.form.extend([*self._budget_fields(), *controls, self._refresh])
        self.form.native.layout().addWidget(self.training_set)
        self.form.extend([*self._augment_fields(), self._preview, self._offer_derived])
        self.plot = LossPlot()
        self.form.native.layout().addWidget(self.plot)
        self.guard = RoundGuardNote()
        self.form.native.layout().addWidget(self.guard)
        self.history = RoundHistoryPanel()
        self.form.native.layout().addWidget(self.history)
        self.correction = CorrectionPanel(viewer)
        self.form.native.layout().addWidget(self.correction.native)
        self._project = project_for(viewer)
        self._model_round: tuple[Any, int | None] = (None, None)  # the model a round made
        self._start.changed.connect(self._on_start)
        self._train.changed.connect(self.fine_tune)
        self._stop.changed.connect(self.stop)
        self._preview.changed.connect(self.preview_augmentation)
        self.training_set.add_button.clicked.connect(self.add_to_set)
        self.history.use_round.connect(self.use_round)
        self.guard.use_anyway.connect(self.use_round)
        self.training_set.changed.connect(self._on_set_changed)
        self._project.changed.connect(self._on_project)
        self._project.opened.connect(self._on_opened)
        self._session.changed.connect(self._on_model)
        self._on_model(self._session)
        self._runner.event.connect(self._on_event)
        self._runner.done.connect(self._on_done)
        self._runner.failed.connect(self._on_failed)
        self._offer_derived.changed.connect(lambda *_: self.reset_choices())
        self._image.changed.connect(lambda _: self._annotation.reset_choices())
        self._image.changed.connect(self._retarget)
        self._annotation.changed.connect(self._retarget)
        self._region.changed.connect(self._retarget)
        self._state.annotation.changed.connect(self._follow)
        self.place(self.project_panel.native)
        self.place(self.training_set, after=self._refresh)
        # what the round will learn from, said right above Fine-tune
        self.place(self.scope, after=self._lr)
        self.finish(self._state)
        self._state.warm_up()  # numba kernels and torch load off the GUI thread, now
        self._follow(self._state.annotation)
        self._on_project()
        # the line and the overlay leave out what the start model finds a stray dab
        self._start.changed.connect(self._rejudge)
        self._start_path.changed.connect(self._rejudge)
        self._session.changed.connect(self._rejudge)
        self.scope.set_judge(self._scope_model)
        self._retarget()

    def _ask_to_stop(self) -> None:
        self._runner.ask_to_stop()
        self._predictor.cancel()

    def _shutdown(self) -> None:
        """The dock or the viewer closes: stop (keeping the model trained so far) and wait."""
        self._state.annotation.changed.disconnect(self._follow)
        self._project.changed.disconnect(self._on_project)
        self._project.opened.disconnect(self._on_opened)
        self._session.changed.disconnect(self._on_model)
        self._session.changed.disconnect(self._rejudge)
        self.training_set.close_counters()
        self.scope.close_scope()
        self.correction.shutdown()
        self.live.shutdown()
        self._runner.shutdown()
        self._predictor.shutdown()
        self._workers.stop_all()

    @property
    def runner(self) -> TrainingRunner:
        """The training runner (its worker, trainer and signals)."""
        return self._runner

    @property
    def predictor(self) -> PredictionRunner:
        """The runner that refreshes the segmentation after training."""
        return self._predictor

    def _snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
        """Copies of the chosen image, annotation and region taken now."""
        image_layer, labels_layer = self._image.value, self._annotation.value
        if image_layer is None:
            raise NapariUnetError("Choose an image to train on first.")
        if labels_layer is None:
            raise NapariUnetError(
                "Choose or create an annotation first (Annotate dock: New annotation)."
            )
        return _take(image_layer, labels_layer, self._region.value)

    def _set_snapshot(self) -> TrainingSnapshot:
        """Copies of every entry of the training set (the current choice when it is empty)."""
        entries = self.training_set.entries
        if not entries:
            image, labels, region, layer = self._snapshot()
            copied = [_copied(self._annotation.value)]
            return TrainingSnapshot([image], [labels], [region], [layer.name], [layer], copied)
        taken = [_take(e.image, e.labels, e.region) for e in entries]
        return TrainingSnapshot(
            [t[0] for t in taken],
            [t[1] for t in taken],
            [t[2] for t in taken],
            [e.name for e in entries],
            [e.image for e in entries],
            [_copied(e.labels) for e in entries],
        )

    def _scope_model(self) -> tuple | None:
        """The start model the training scope judges by (see ``TrainingScope.set_judge``)."""
        if self.live.running:  # live mode's own finding arrives with its steps
            return None
        key = (self._start.value, str(self._start_path.value), self._session.model)
        try:
            loader, _ = self._live_model()
        except NapariUnetError:  # no model chosen yet: Fine-tune will say so
            return key, None, self._defaults
        return key, loader, self._defaults

    def _rejudge(self, *_: Any) -> None:
        self.scope.refresh()

    def _retarget(self, *_: Any) -> None:
        """Correct the mistakes and the training scope work on the chosen layers."""
        image, labels, region = self._image.value, self._annotation.value, self._region.value
        self.correction.set_target(image, labels, region)
        self.scope.set_target(image, labels, region)

    def _on_set_changed(self) -> None:
        self.scope.set_entries(self.training_set.entries)

    def add_to_set(self) -> None:
        """Add the chosen image, annotation and region to the training set."""
        try:
            entry = self.training_set.add(
                self._image.value, self._annotation.value, self._region.value
            )
        except ValueError as exc:
            show_error(str(exc))
            return
        self._status.value = f"Added '{entry.name}' to the training set."
        self._project.track(None, entry.image, entry.labels, entry.region)

    def _on_opened(self, restored: list) -> None:
        """A project was opened: its entries become the training set."""
        for old in list(self.training_set.entries):
            self.training_set.remove(old)
        for r in restored:
            if r.image is not None and r.labels is not None:
                try:
                    self.training_set.add(r.image, r.labels, r.region)
                except ValueError as exc:
                    show_error(str(exc))

    # -- actions
    def fine_tune(self) -> None:
        """Start training in a worker on snapshots of the current layers."""
        if self.live.running:
            show_error("Live training is on; switch it off to record its round first.")
            return
        if self._runner.running:
            return
        try:
            snap = self._set_snapshot()
            config = self.config()
            choice = self._start.value
            # the model is made, read or copied in the worker: tens of ms off the GUI thread
            if choice == SCRATCH:
                from ..training import new_model

                model, source = partial(new_model, config), "scratch"
            else:
                model, source = model_loader(choice, self._start_path.value, self._session)
        except ValueError as exc:
            show_error(str(exc))
            return
        target = self._image.value
        self._target = target if target in snap.layers else snap.layers[0]
        self._start_source = source
        self._start_label = source
        if choice == CURRENT:
            made, k = self._model_round
            self._start_label = f"round {k}" if made is self._session.model else source
        self._trained_names = snap.names
        self.plot.clear()
        self._progress.value = 0
        self._status.value = f"Preparing the data (starting from {source})..."
        self._train.enabled = False
        self._stop.enabled = True
        self._runner.start(
            snap.images,
            snap.labels,
            snap.regions,
            model,
            config,
            name=self._target.name,
            names=snap.names,
            copied=snap.copied,
            memory=self.first_sight,
        )
        self.guard.clear()

    def stop(self) -> None:
        """Stop after the current step, keeping the model trained so far."""
        self._runner.stop()

    def _on_event(self, event: Any) -> None:
        from ..training import TrainState

        self._progress.value = int(event.fraction * 1000)
        if event.remaining is not None:
            self._left.value = f"{event.remaining:.0f} s"
        if event.state is TrainState.STARTED:  # it says which precision runs, and why
            self._status.value = event.message
            trainer = self._runner.trainer
            show_auto_ran(self._precision, event.message)  # "Precision: float32 (auto: ..."
            data = trainer.data if trainer is not None else None
            if data is not None:  # one image's ids (several images: the sentence only)
                alone = len(data.summary) == 1 and self._target is self._image.value
                one = data.summary[0] if alone else {}  # the overlay's image only
                self.scope.set_partial(data.partial_note, one.get("partial"), one.get("left_out"))
        elif event.state is TrainState.STEP:
            self.plot.add_loss(event.step, event.loss)
            self._status.value = f"Step {event.step}: loss of this step {event.loss:.3f}"
        elif event.state is TrainState.CALIBRATING:  # says how long it may take
            self._status.value = event.message
        elif event.validation is not None and event.state in (
            TrainState.VALIDATED,
            TrainState.DONE,
            TrainState.STOPPED,
        ):
            # the final validation arrives with DONE/STOPPED; plot each step's once
            if not self.plot.val_steps or self.plot.val_steps[-1] != event.step:
                v = event.validation
                self.plot.add_validation(event.step, v.loss, v.ap50)

    def _on_done(self, model: Any, last: Any) -> None:
        self._train.enabled = True
        self._stop.enabled = False
        if last is None or last.step == 0:
            self._status.value = "Training stopped before the first step; the model is unchanged."
            return
        from ..training import compare_to_start

        v = last.validation
        score = f"; validation AP50 {v.ap50:.2f}, mean IoU {v.mean_iou:.2f}" if v else ""
        trainer = self._round_trainer()
        ran = getattr(trainer, "precision", None)
        show_auto_ran(self._precision, ran)
        said = f" {ran.describe()}." if ran is not None else ""
        self._status.value = f"{last.message.rstrip('.')}{score}.{said}"
        self._left.value = ""
        verdict = compare_to_start(v, trainer.baseline if trainer is not None else None)
        origin = getattr(self, "_start_source", "scratch")
        if origin == "scratch":  # random weights were never a model in use: nothing to keep
            verdict = replace(verdict, worse=False)
        if verdict.worse:  # keep it in the history, leave the model in use as it is
            self._record_round(model, last, verdict)
            return
        how = "trained here from scratch" if origin == "scratch" else f"{origin}, fine-tuned here"
        self._session.set_model(model, f"{how} ({last.step} steps)")
        show_info(f"{last.message} The new model is now in use.")
        self._record_round(model, last, verdict)
        self._start.value = CURRENT  # the next round starts from this one
        target = getattr(self, "_target", None)
        if self._refresh.value and target is not None and target in self._viewer.layers:
            try:
                # the model now knows this image's scale: no size estimate, no resize
                self._predictor.start(target, model, rescale=1.0)
            except ValueError as exc:
                show_error(str(exc))

    def _on_failed(self, message: str) -> None:
        self._train.enabled = True
        self._stop.enabled = False
        self._status.value = message
        show_error(message)


@dataclass
class TrainingSnapshot:
    """Copies of a training set's arrays, taken when Fine-tune is pressed."""

    images: list[np.ndarray]
    labels: list[np.ndarray]
    regions: list[np.ndarray | None]
    names: list[str]
    layers: list[Any]  # the image layers
    copied: list[Any]  # per entry: the record of cells copied from a prediction, or None


def _take(image_layer: Any, labels_layer: Any, region_layer: Any) -> tuple:
    """Copies of one entry's image (in the model's layout), annotation and region mask."""
    labels = np.array(labels_layer.data, copy=True)
    shape = spatial_shape(image_layer)
    if labels.shape != shape:
        raise NapariUnetError(
            f"The annotation '{labels_layer.name}' has shape {labels.shape} but the image "
            f"'{image_layer.name}' has shape {shape}."
        )
    image = to_model_layout(np.array(layer_image(image_layer), copy=True), 1, rgb=image_layer.rgb)
    if is_complete(labels_layer):  # "completely annotated": every unpainted pixel is background
        return image, labels, np.ones(shape, bool), image_layer
    return image, labels, region_mask(region_layer, shape), image_layer


def _copied(labels_layer: Any) -> Any:
    """The record of the cells copied into ``labels_layer`` from a prediction, if any."""
    from ..training.provenance import COPIED_KEY

    record = labels_layer.metadata.get(COPIED_KEY) if labels_layer is not None else None
    return dict(record) if record else None
