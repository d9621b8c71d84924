"""The Train dock's augmentation preview: the tiles training would see, as layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error

from .layers import upsert_layer
from .workers import UserProblem

if TYPE_CHECKING:
    from ..training import TrainConfig


# Augmented samples the preview shows.
PREVIEW_SAMPLES = 8


class AugmentationPreview:
    """Preview augmentation in the Train dock (a mixin of ``TrainWidget``)."""

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


def _preview_samples(image, labels, region, config: TrainConfig, n: int = PREVIEW_SAMPLES):
    """Generator (for a worker): the first ``n`` tiles the trainer would train on, augmented.

    The core's :func:`~napari_unet.training.preview_samples` cuts them with the
    trainer's own sampler, so the preview shows exactly what training sees.
    """
    from ..training import preview_samples

    yield  # lets the worker start before the work
    return preview_samples(image, labels, region, config, n=n)
