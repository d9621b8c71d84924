"""The Train dock's form: what to train on, from which model, how long, how augmented."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, SpinBox

from .annotate_widget import REGION_TIP
from .layers import image_of, is_derived, layer_choices
from .model_choice import CURRENT, FILE, SCRATCH, bundled_available, model_choices
from .precision_choice import precision_choice

if TYPE_CHECKING:
    import napari

    from ..augment import AugmentConfig
    from ..training import TrainConfig


class TrainForm:
    """The fields of the Train dock and the settings they make (a mixin of ``TrainWidget``).

    The dock calls the ``_*_fields`` builders while it lays out its form.
    """

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
