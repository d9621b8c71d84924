"""The start model's judgement behind the Train dock's line and overlay, run in a worker.

A round leaves out stray dabs and moves the background of partly painted cells
(:mod:`napari_unet.training.partial`). Before any run, the line above Fine-tune
and the overlay say the same, because they ask the same function
(:func:`~napari_unet.training.data.planned_area`) with the same start model, for
the chosen image and for every image of the training set. A :class:`StartJudge`
per image keeps its rule (the model's foreground, predicted once per area) and
its last answer, so a stroke on one image does not judge the others again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..layout import to_model_layout
from .layers import region_mask

# What a judgement may raise when the image does not suit the model (channels, NaN, a
# shape): training says why; the line counts the cells as painted.
UNSUITED = (NapariUnetError, ValueError, RuntimeError)


def training_area(
    labels: np.ndarray,
    region: np.ndarray | None,
    sigma: float,
    partial: Any = None,
    left_out: Any = None,
) -> np.ndarray:
    """The pixels the loss will look at, plane by plane (uint8, 1 where trained on).

    ``partial``: ids of the cells found partly painted (their surroundings are
    not); ``left_out``: ids of the stray dabs (neither they nor their ring are).
    """
    from ..training.known import known_area  # numba's weight map: loaded in the worker

    labels = np.asarray(labels)
    kw = {"partial": partial, "left_out": left_out}
    if labels.ndim == 2:
        return known_area(labels, sigma, region, **kw).astype(np.uint8)
    planes = [
        known_area(p, sigma, None if region is None else region[z], **kw)
        for z, p in enumerate(labels)
    ]
    return np.stack(planes).astype(np.uint8)


class SharedModel:
    """A start model's loader called once, in the worker, for every image it judges."""

    def __init__(self, loader: Any) -> None:
        self._loader, self._model = loader, None

    def __call__(self) -> Any:
        if self._model is None:
            from ..modelfile import resolve_model_arg

            self._model = resolve_model_arg(self._loader)
        return self._model


class StartJudge:
    """The start model's partial rule on one image, made in the worker and kept.

    The rule predicts the model's foreground once per area, so a stroke costs a
    prediction around its cell only (:class:`~napari_unet.training.partial.PartialRule`);
    the same annotation and region again cost a comparison.

    Parameters
    ----------
    key : tuple
        What the rule depends on (the model choice, the model, the image layer).
    loader : callable
        Makes the start model (called in the worker, once).
    image : array
        The image layer's pixels as napari holds them.
    rgb : bool
        Whether the layer is RGB.
    config : TrainConfig
        The dock's training settings.
    memory : ForegroundMemory or None
        The dock's: areas a round or live mode judged keep that judgement here too.
    """

    def __init__(
        self, key: tuple, loader: Any, image: Any, rgb: bool, config: Any, memory: Any = None
    ) -> None:
        self.key, self.config, self._memory = key, config, memory
        self._loader, self._pixels, self._rgb = loader, image, rgb
        self._rule = self._image = None
        self._last: tuple | None = None  # (labels, region, area, summary) of the last call

    def matches(self, key: tuple) -> bool:
        """Whether this judge serves ``key``.

        Models and layers by identity; names and ids by value (an ``id()`` asked
        again is an equal int, not the same object).
        """
        return len(key) == len(self.key) and all(
            a is b or (isinstance(a, str | int) and a == b) for a, b in zip(key, self.key)
        )

    def judged(self, labels: np.ndarray, region: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """:func:`~napari_unet.training.data.planned_area` on this image: (area, summary).

        ``labels`` and ``region`` are kept (hand over copies): the same ones again
        give the same answer without a judgement.
        """
        last = self._last
        if last is not None and _same(last[0], labels) and _same(last[1], region):
            return last[2], last[3]
        from ..training.data import planned_area
        from ..training.partial import PartialRule

        if self._rule is None:
            from ..modelfile import resolve_model_arg

            self._rule = PartialRule(resolve_model_arg(self._loader), memory=self._memory)
            # as the dock hands the image to training (train_widget._take)
            self._image = to_model_layout(np.asarray(self._pixels), 1, rgb=self._rgb)
        area, summary = planned_area(self._image, labels, region, self._rule, self.config)
        self._last = (labels, region, area, summary)
        return area, summary

    def planned(self, labels: np.ndarray, region: Any) -> tuple[np.ndarray, Any, Any]:
        """The area a round would train on, its partly painted and left-out ids."""
        area, summary = self.judged(labels, region)
        return area, summary["partial"], summary["left_out"]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and np.array_equal(a, b)


def scope_finding(
    labels: np.ndarray,
    region: np.ndarray | None,
    sigma: float,
    partial: Any,
    left_out: Any,
    judge: StartJudge | None = None,
) -> tuple[np.ndarray, Any, Any]:
    """The overlay's area and the finding it used: (area, partly painted ids, left-out ids).

    With a ``judge`` the start model decides, as training will; without one (live
    mode streams its own finding) or when it cannot (the image does not suit the
    model), ``partial`` and ``left_out`` are used as given.
    """
    if judge is not None and not labels.any():
        return training_area(labels, region, sigma), [], []
    if judge is not None:
        try:
            return judge.planned(labels, region)
        except UNSUITED:  # training will say why
            pass
    return training_area(labels, region, sigma, partial, left_out), partial, left_out


@dataclass
class EntryJob:
    """One image of the training set to judge (layers and arrays are read in the worker)."""

    layer: Any  # the annotation layer: names the entry in the answer
    judge: StartJudge | None  # None: not judged (a lazy image), counted as painted
    labels: Any  # the annotation's array as napari holds it
    region: Any  # the region layer, or None
    shape: tuple[int, ...]  # the image's spatial shape
    complete: bool  # "completely annotated": the whole image is the region, as in a round


def judge_entry(job: EntryJob) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """An entry's (partly painted ids, left-out ids) as a round finds them.

    The entry's arrays as Fine-tune takes them (``train_widget._take``): a copy
    of the annotation, the whole image as the region when it is marked complete.
    None when it cannot be judged (the image does not suit the model, the
    annotation's shape is not the image's): the caller counts its cells as painted.
    """
    if job.judge is None:
        return None
    try:
        labels = np.array(job.labels, copy=True)  # read here, off the GUI thread
        if labels.shape != tuple(job.shape):
            return None
        if not labels.any():
            return (), ()
        shape = labels.shape
        # a region layer without shapes raises: Fine-tune will say so
        region = np.ones(shape, bool) if job.complete else region_mask(job.region, shape)
        _, summary = job.judge.judged(labels, region)
    except UNSUITED:
        return None
    return tuple(summary["partial"]), tuple(summary["left_out"])


def scope_job(overlay: tuple | None, entries: list[EntryJob] | None) -> tuple[Any, Any]:
    """The worker's work: the overlay's finding and the training set's, in one pass.

    One worker at a time uses the judges (a judge's rule is not shared between
    threads); the chosen image, when it is in the set too, is judged once.
    """
    found = scope_finding(*overlay) if overlay is not None else None
    judged = [judge_entry(job) for job in entries] if entries is not None else None
    return found, judged
