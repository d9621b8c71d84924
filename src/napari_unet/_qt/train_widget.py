"""The Train dock: fine-tune the U-Net on the annotation with one click."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info

from ..errors import NapariUnetError
from ..layout import to_model_layout
from ..postprocess.describe import describe_model_rule
from .annotate_widget import REGION_TIP
from .correction_panel import CorrectionPanel
from .dock import ScrollingDock, StatusLine
from .layers import (
    image_of,
    is_derived,
    layer_choices,
    layer_image,
    region_mask,
    spatial_shape,
    upsert_layer,
)
from .loss_plot import LossPlot
from .model_choice import (
    CURRENT,
    FILE,
    SCRATCH,
    bundled_available,
    model_choices,
    model_loader,
)
from .precision_choice import precision_choice
from .prediction import PredictionRunner
from .project_panel import ProjectPanel
from .project_session import project_for
from .round_guard import RoundGuardNote
from .round_history_panel import RoundHistoryPanel
from .session import state_for
from .training_runner import TrainingRunner
from .training_scope import TrainingScope, is_complete
from .training_set_panel import TrainingSetPanel
from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    import napari

    from ..augment import AugmentConfig
    from ..training import TrainConfig

# Augmented samples the preview shows.
PREVIEW_SAMPLES = 8


class TrainWidget(ScrollingDock):
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
        self._predictor = PredictionRunner(viewer)
        self._workers = WorkerGroup()  # the augmentation preview
        self._preview_worker = None
        self.project_panel = ProjectPanel(viewer)
        self.form.native.layout().addWidget(self.project_panel.native)
        self.form.extend(self._data_fields(viewer))
        self.training_set = TrainingSetPanel(viewer, region_mask)
        self.scope = TrainingScope(viewer, self._defaults.sigma)
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
        controls = [self._train, self._stop, self._progress, self._left, self._status]
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
        self._retarget()

    def _data_fields(self, viewer: napari.viewer.Viewer) -> list:
        """What to train on: image, annotation, region."""
        self._offer_derived = CheckBox(
            text="Offer the plugin's results as training data",
            value=False,
            tooltip="Also list probability, segmentation and weight-map layers below.",
        )
        derived = lambda: self._offer_derived.value  # noqa: E731
        self._image = ComboBox(
            label="Image", choices=layer_choices(viewer, "Image", derived=derived)
        )
        self._annotation = ComboBox(
            label="Annotation",
            choices=layer_choices(
                viewer, "Labels", derived=derived, fits=lambda: self._image.value
            ),
            nullable=True,
        )
        self._region = ComboBox(
            label="Annotated region",
            choices=layer_choices(viewer, "Shapes"),
            nullable=True,
            tooltip=REGION_TIP,
        )
        return [self._image, self._annotation, self._region]

    def _budget_fields(self) -> list:
        """Where to start from, how long, how fast."""
        defaults = self._defaults
        self._start = ComboBox(
            label="Start from",
            choices=model_choices(scratch=True),
            value="bundled" if bundled_available() else SCRATCH,
            tooltip="current: the model in use; bundled: the shipped nuclei model; "
            "scratch: random weights (paper initialisation).",
        )
        self._start_path = FileEdit(label="Model file", mode="r", filter="*.safetensors")
        self._start_path.visible = False
        self._steps = SpinBox(
            label="Max steps (0: no limit)", value=defaults.steps or 0, min=0, max=1_000_000
        )
        self._time = FloatSpinBox(
            label="Time budget (s)",
            value=defaults.time_limit or 0.0,
            min=0.0,
            max=86400.0,
            step=10.0,
            tooltip="Training stops at whichever budget runs out first; 0 = none.",
        )
        self._time.native.setSpecialValueText("no limit")  # shown for 0
        self._auto_lr = self._default_lr(self._start.value)
        self._lr = FloatSpinBox(
            label="Learning rate",
            value=self._auto_lr,
            min=1e-6,
            max=1.0,
            step=1e-4,
            tooltip="How big a step the model takes after each batch: larger learns faster but "
            "can undo what the model knew. It follows 'Start from' (lower to fine-tune a "
            "trained model) until you change it; touch it only when the loss jumps about "
            "(lower it) or hardly falls after a few hundred steps (raise it).",
        )
        self._lr.native.setDecimals(6)
        self._precision = precision_choice(
            "Fast: bfloat16 training steps (float32 weights and loss) where a one-time check "
            "found them at least 1.3x faster on this computer, else float32. Exact: float32 "
            "always. The status says which ran."
        )
        return [self._start, self._start_path, self._steps, self._time, self._lr, self._precision]

    def _augment_fields(self) -> list:
        """The paper's augmentation, with its defaults."""
        aug = self._defaults.augment
        self._elastic = FloatSpinBox(
            label="Elastic sigma (px)",
            value=aug.sigma,
            min=0.0,
            max=50.0,
            tooltip="How strongly images are bent, in pixels (the paper uses 10): training "
            "sees each cell in many plausible shapes. 0 switches the bending off.",
        )
        self._grid = SpinBox(label="Elastic grid", value=aug.grid_points, min=2, max=10)
        self._rotation = FloatSpinBox(label="Rotation (deg)", value=aug.rotation, min=0, max=180)
        self._intensity = FloatSpinBox(
            label="Intensity changes",
            value=1.0,
            min=0.0,
            max=3.0,
            step=0.25,
            tooltip="Scales contrast, brightness, gamma and noise changes (1 = default).",
        )
        return [self._elastic, self._grid, self._rotation, self._intensity]

    # -- which annotation
    def _follow(self, choice: Any, parts: frozenset | None = None) -> None:
        """Train on the viewer's current annotation (else the selected Labels layer).

        Only the parts that changed (``parts``; all when the dock opens) are taken
        over, so a change of region leaves an annotation chosen here alone.
        """
        from napari.layers import Labels

        layers = self._viewer.layers
        self.reset_choices()
        if parts is None or "labels" in parts:
            labels = choice.labels if choice.labels in layers else None
            active = layers.selection.active
            if labels is None and isinstance(active, Labels) and not is_derived(active):
                labels = active
            image = image_of(self._viewer, labels) if labels is not None else None
            if image is None and choice.image in layers:
                image = choice.image
            if image is not None:
                self._image.value = image
            self._annotation.reset_choices()  # the annotations that fit this image
            if labels is None or labels in self._annotation.choices:
                self._annotation.value = labels
        if parts is None or "region" in parts:
            self._region.value = choice.region if choice.region in layers else None

    def _ask_to_stop(self) -> None:
        self._runner.ask_to_stop()
        self._predictor.cancel()

    def _shutdown(self) -> None:
        """The dock or the viewer closes: stop (keeping the model trained so far) and wait."""
        self._state.annotation.changed.disconnect(self._follow)
        self._project.changed.disconnect(self._on_project)
        self._project.opened.disconnect(self._on_opened)
        self._session.changed.disconnect(self._on_model)
        self.training_set.close_counters()
        self.scope.close_scope()
        self.correction.shutdown()
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

    # -- settings
    @staticmethod
    def _default_lr(choice: str) -> float:
        from ..training import TrainConfig

        return TrainConfig.interactive(fine_tune=choice != SCRATCH).learning_rate

    def _on_model(self, session: Any) -> None:
        """One model in use per viewer: the next round starts from it, wherever it was chosen."""
        if session.model is not None:
            self._start.value = CURRENT

    def _on_start(self, choice: str) -> None:
        self._start_path.visible = choice == FILE
        new = self._default_lr(choice)
        if abs(self._lr.value - self._auto_lr) < 1e-9:  # the user has not set their own
            self._lr.value = new
        self._auto_lr = new

    def augment_config(self) -> AugmentConfig:
        """The augmentation settings shown in the dock."""
        a = self._defaults.augment
        k = self._intensity.value
        return a.__class__.from_dict(
            {
                **a.to_dict(),
                "sigma": self._elastic.value,
                "elastic": self._elastic.value > 0,
                "grid_points": self._grid.value,
                "rotation": self._rotation.value,
                "contrast": a.contrast * k,
                "brightness": a.brightness * k,
                "gamma": a.gamma * k,
                "noise": a.noise * k,
            }
        )

    def config(self) -> TrainConfig:
        """The training settings shown in the dock."""
        return self._defaults.replace(
            steps=self._steps.value or None,
            time_limit=self._time.value or None,
            learning_rate=self._lr.value,
            augment=self.augment_config(),
            precision=self._precision.value,
        )

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

    def _retarget(self, *_: Any) -> None:
        """Correct the mistakes and the training scope work on the chosen layers."""
        image, labels, region = self._image.value, self._annotation.value, self._region.value
        self.correction.set_target(image, labels, region)
        self.scope.set_target(image, labels, region)

    def _on_set_changed(self) -> None:
        entries = self.training_set.entries
        cells = sum(self.training_set.counts()) if entries else None
        self.scope.set_entries(cells, len(entries))

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
        ran = getattr(self._runner.trainer, "precision", None)
        said = f" {ran.describe()}." if ran is not None else ""
        self._status.value = f"{last.message.rstrip('.')}{score}.{said}"
        self._left.value = ""
        trainer = self._runner.trainer
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

    # -- rounds
    def _on_project(self, *_: Any) -> None:
        project = self._project.project
        try:
            self.history.show_history(project.history if project is not None else None)
        except ValueError as exc:  # a damaged history.json: say so, show no rounds
            show_error(str(exc))
            self.history.show_history(None)

    def _record_round(self, model: Any, last: Any, verdict: Any) -> None:
        """Keep this Fine-tune as the project's next round (model, scores), off the GUI thread.

        A round the guard found worse (``verdict.worse``) is kept but not put in use.
        """
        target = getattr(self, "_target", None)
        trainer = self._runner.trainer
        if target is None or trainer is None:
            return
        try:
            project = self._project.ensure(target)
        except ValueError as exc:
            show_error(f"The round could not be kept in a project: {exc}")
            return
        v = last.validation
        info = dict(
            start_model=getattr(self, "_start_label", "scratch"),
            cells=sum(s["cells"] for s in trainer.data.summary),
            steps=last.step,
            seconds=round(float(last.elapsed), 1),
            ap50=None if v is None else round(v.ap50, 4),
            mean_iou=None if v is None else round(v.mean_iou, 4),
            val_cells=0 if v is None else int(v.n_true),
            entries=list(self._trained_names),
            start_ap50=None if verdict.start is None else round(verdict.start.ap50, 4),
            start_mean_iou=None if verdict.start is None else round(verdict.start.mean_iou, 4),
            objects=describe_model_rule(model),
        )
        history = project.history
        self._workers.start_function(
            partial(history.add_round, model, make_current=not verdict.worse, **info),
            returned=lambda record: self._on_round(history, model, record, verdict),
            errored=lambda exc: show_error(f"The round could not be saved: {exc}"),
        )

    def _on_round(self, history: Any, model: Any, record: Any, verdict: Any) -> None:
        if isinstance(record, UserProblem):
            show_error(f"The round could not be saved: {record.message}")
            return
        self.history.show_history(history)
        if verdict.worse:
            sentence = verdict.sentence(f"Round {record.round}")
            self._status.value = sentence
            self.guard.offer(record.round, sentence)
            show_info(f"{sentence} Use round {record.round} anyway?")
            return
        self._model_round = (model, record.round)

    def use_round(self, k: int) -> None:
        """Make round ``k``'s model the one in use again (read in a worker)."""
        project = self._project.project
        if project is None:
            return
        history = project.history

        def load() -> Any:
            model = history.load_model(k)
            history.set_current(k)
            return model

        def done(model: Any) -> None:
            if isinstance(model, UserProblem):
                show_error(model.message)
                return
            self._session.set_model(model, f"round {k} of the project")
            self._model_round = (model, k)
            self._start.value = CURRENT
            self.history.show_history(history)
            show_info(f"Round {k}'s model is in use again.")

        self._workers.start_function(load, returned=done, errored=lambda e: show_error(str(e)))

    # -- augmentation preview
    def preview_augmentation(self) -> None:
        """Add (or replace) stacks of augmented samples with their labels and weight map."""
        if self._preview_worker is not None:
            return
        try:
            image, labels, region, image_layer = self._snapshot()
            config = self.config()
        except ValueError as exc:
            show_error(str(exc))
            return
        self._preview_worker = self._workers.start_generator(
            _preview_samples(image, labels, region, config),
            returned=lambda result: self._show_preview(image_layer.name, result),
            errored=lambda exc: show_error(f"Preview failed: {exc}"),
            finished=lambda: setattr(self, "_preview_worker", None),
        )

    def _show_preview(self, source: str, result: Any) -> None:
        if isinstance(result, UserProblem):
            show_error(result.message)
            return
        images, labels, weights = result
        upsert_layer(
            self._viewer,
            images,
            kind="image",
            role="preview image",
            source=source,
            name=f"{source} augmentation preview",
        )
        upsert_layer(
            self._viewer,
            weights,
            kind="image",
            role="preview weights",
            source=source,
            name=f"{source} augmented weight map",
            colormap="inferno",
            blending="additive",
            opacity=0.5,
        )
        upsert_layer(
            self._viewer,
            labels,
            kind="labels",
            role="preview labels",
            source=source,
            name=f"{source} augmented labels",
            opacity=0.4,
        )
        self._viewer.dims.set_current_step(0, 0)


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


def _preview_samples(image, labels, region, config: TrainConfig, n: int = PREVIEW_SAMPLES):
    """Generator (for a worker): the first ``n`` tiles the trainer would train on, augmented.

    The core's :func:`~napari_unet.training.preview_samples` cuts them with the
    trainer's own sampler, so the preview shows exactly what training sees.
    """
    from ..training import preview_samples

    yield  # lets the worker start before the work
    return preview_samples(image, labels, region, config, n=n)
