"""What a round will learn from: one line before Fine-tune, a faint overlay, "complete".

Unpainted pixels are unknown unless the user says the image is completely
annotated (:mod:`napari_unet.training.known`). The Train dock shows, before
Fine-tune, how many painted cells it will train on and where (the overlay), and
offers the one click that makes every unpainted pixel background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ..errors import NapariUnetError
from ..layout import to_model_layout
from .cell_counter import CellCounter
from .layers import find_own_layer, is_lazy, layer_image, region_mask, spatial_shape, upsert_layer
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

# The Labels layer's metadata key that says its image is completely annotated.
COMPLETE_KEY = "napari_unet_complete"
# The overlay is computed again this long after the last change.
OVERLAY_DELAY_MS = 400
ROLE = "training area"


def is_complete(labels_layer: Any) -> bool:
    """Whether the user marked this annotation's image as completely annotated."""
    return labels_layer is not None and bool(labels_layer.metadata.get(COMPLETE_KEY, False))


def scope_sentence(
    cells: int,
    complete: bool,
    region: bool,
    images: int = 1,
    partial: int = 0,
    left_out: int = 0,
) -> str:
    """The line shown before Fine-tune, at most three lines in the dock.

    ``cells``: the painted cells trained on; ``partial``: how many of them look
    partly painted; ``left_out``: how many stray dabs are not trained on.
    """
    if cells == 0 and left_out:  # a round would be refused with the partial sentence
        marks = (
            "the painted mark is tiny and lies"
            if left_out == 1
            else f"all {left_out} painted marks are tiny and lie"
        )
        return f"Nothing will train: {marks} where the model sees background; paint whole cells."
    if cells == 0:
        return "No painted cell yet: paint cells in the annotation (Annotate dock)."
    s = "" if cells == 1 else "s"
    trained = f"Training on {cells} painted cell{s}" + (
        f" in {images} images" if images > 1 else ""
    )
    if complete:
        return (
            f"{trained}; the image is marked complete, so every unpainted pixel is taught as "
            "background."
        )
    if region:
        trained += " and the annotated region"
    around = "around them"
    if partial:  # their ring lies inside the nucleus: the background moves out (partial.py)
        which = "the one" if partial == 1 else f"the {partial}"
        around = f"around them, farther out for {which} partly painted"
    if region:
        around = f"there and {around.replace('them', 'the cells', 1)}"
    if left_out:  # three lines at 1366x768 (the overlay shows which; the sentence names them)
        if region:  # no room to say the partly painted ones too: the overlay shows them
            around = "there and around the cells"
        where = "" if partial or region else " on background"  # the sentence below says
        marks = f"1 tiny mark{where} is" if left_out == 1 else f"{left_out} tiny marks{where} are"
        return f"{trained} (background only {around}); {marks} left out."
    said = f"{trained} (background only {around}; the rest of the image is not used)."
    if partial:  # the advice is the partial sentence's, below: the line keeps its three lines
        return said
    return f"{said} Paint more cells, or mark the image complete, to learn more."


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


class StartJudge:
    """The start model's partial rule on one image, made in the worker and kept.

    The rule predicts the model's foreground once per area, so a stroke costs a
    prediction around its cell only (:class:`~napari_unet.training.partial.PartialRule`).

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
    """

    def __init__(self, key: tuple, loader: Any, image: Any, rgb: bool, config: Any) -> None:
        self.key, self.config = key, config
        self._loader, self._pixels, self._rgb = loader, image, rgb
        self._rule = self._image = None

    def matches(self, key: tuple) -> bool:
        """Whether this judge serves ``key`` (models and layers by identity)."""
        return len(key) == len(self.key) and all(
            a is b or (isinstance(a, str) and a == b) for a, b in zip(key, self.key)
        )

    def planned(self, labels: np.ndarray, region: Any) -> tuple[np.ndarray, Any, Any]:
        """The area a round would train on, its partly painted and left-out ids."""
        from ..modelfile import resolve_model_arg
        from ..training.data import planned_area
        from ..training.partial import PartialRule

        if self._rule is None:
            self._rule = PartialRule(resolve_model_arg(self._loader))
            # as the dock hands the image to training (train_widget._take)
            self._image = to_model_layout(np.asarray(self._pixels), 1, rgb=self._rgb)
        area, summary = planned_area(self._image, labels, region, self._rule, self.config)
        return area, summary["partial"], summary["left_out"]


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
        except (NapariUnetError, ValueError, RuntimeError):  # training will say why
            pass
    return training_area(labels, region, sigma, partial, left_out), partial, left_out


class TrainingScope(QWidget):
    """The "completely annotated" box, the line before Fine-tune, and the area overlay.

    The dock calls :meth:`set_target` with its image, annotation and region
    layers, and :meth:`set_entries` with the training set's count.
    """

    def __init__(self, viewer: napari.viewer.Viewer, sigma: float) -> None:
        super().__init__()
        self._viewer = viewer
        self._sigma = sigma
        self._image = self._labels = self._region = None
        self._counter: CellCounter | None = None
        self._set_cells: int | None = None  # cells of a non-empty training set
        self._set_images = 0
        # the finding the line and the overlay use: the start model's (see set_judge), or
        # the running live mode's (set_partial)
        self._partial_ids: tuple[int, ...] = ()
        self._left_ids: tuple[int, ...] = ()  # stray dabs, left out of training
        self._said_for: tuple | None = None  # the finding the sentence below was about
        self._provider: Any = None
        self._judge: StartJudge | None = None
        # live mode's own area trained on, by plane, and the image layer it trains on
        self._live_known: dict[int, np.ndarray] = {}
        self._live_image: Any = None
        self.complete = QCheckBox("This image is completely annotated")
        self.complete.setToolTip(
            "Every cell of the image is painted: unpainted pixels are background "
            "(otherwise they are unknown and only the area around your cells is used)."
        )
        self.show_area = QCheckBox("Show the area trained on")
        self.show_area.setChecked(True)
        self.line = QLabel("")
        self.line.setWordWrap(True)
        # which cells look partly painted (the last Fine-tune's or live mode's finding)
        self.partial = QLabel("")
        self.partial.setWordWrap(True)
        self.partial.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.complete)
        layout.addWidget(self.show_area)
        layout.addWidget(self.line)
        layout.addWidget(self.partial)
        self._workers = WorkerGroup()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(OVERLAY_DELAY_MS)
        self._timer.timeout.connect(self._compute)
        self._again = False
        self._busy = False
        self.complete.toggled.connect(self._on_complete)
        self.show_area.toggled.connect(lambda *_: self.refresh())

    # -- what it looks at
    def set_target(self, image: Any, labels: Any, region: Any) -> None:
        """Follow this image, annotation and region layer."""
        if labels is not self._labels:
            if self._labels is not None:
                self._labels.events.data.disconnect(self._schedule)
            if self._counter is not None:
                self._counter.close()
            self._counter = None
            if labels is not None:
                self._counter = CellCounter(labels)
                self._counter.changed.connect(lambda *_: self.refresh())
                labels.events.data.connect(self._schedule)  # strokes and undo change the area
            self.complete.blockSignals(True)
            self.complete.setChecked(is_complete(labels))
            self.complete.blockSignals(False)
        if region is not self._region:
            if self._region is not None:
                self._region.events.data.disconnect(self._schedule)
            if region is not None:
                region.events.data.connect(self._schedule)
        self._image, self._labels, self._region = image, labels, region
        self.refresh()

    def set_entries(self, cells: int | None, images: int = 0) -> None:
        """The training set's cells (None: the set is empty, the choice above is trained)."""
        self._set_cells, self._set_images = cells, images
        self.refresh()

    def _on_complete(self, checked: bool) -> None:
        if self._labels is not None:
            self._labels.metadata[COMPLETE_KEY] = bool(checked)  # metadata only, not the data
        self.refresh()

    def set_judge(self, provider: Any) -> None:
        """Judge partly painted cells and stray dabs with the start model, in the worker.

        ``provider()`` is asked on the GUI thread before each computation: None
        keeps the finding given by :meth:`set_partial` (live mode runs), else
        ``(key, loader, config)``: the start model's loader (None: no model, no
        finding) and what it depends on.
        """
        self._provider = provider
        self.refresh()

    def set_partial(self, sentence: str, ids: Any = (), left_out: Any = ()) -> None:
        """Show the sentence about partly painted cells ("" hides it); the overlay follows.

        ``ids`` and ``left_out``: a run's finding on the chosen image (None: keep).
        """
        self._said_for = None  # several images: the sentence is not about this one alone
        if ids is not None and left_out is not None:
            self._found(ids, left_out, schedule=True)
            self._said_for = (self._partial_ids, self._left_ids)
        if sentence != self.partial.text():
            self.partial.setText(sentence)
        self.partial.setVisible(bool(sentence))

    def set_live_known(self, image: Any, known: Any) -> None:
        """Live mode's area trained on: ``(z, mask)`` of the planes that changed.

        While live mode runs the overlay draws what it trains on, as it is
        (over-painted rims and stray dabs included); ``image`` None: live mode
        ended, the start model judges again.
        """
        if image is None:
            self._live_known, self._live_image = {}, None
            self.refresh()
            return
        if image is not self._live_image:
            self._live_known, self._live_image = {}, image
        for z, mask in known:
            self._live_known[int(z)] = mask
        self._schedule()

    def _live_area(self, image: Any, shape: tuple[int, ...]) -> np.ndarray | None:
        """The overlay of live mode's area on ``image`` (None: no live area for it)."""
        if image is not self._live_image or not self._live_known:
            return None
        area = np.zeros(shape, np.uint8)
        for z, mask in self._live_known.items():
            if len(shape) == 2 and z == 0 and mask.shape == shape:
                area[...] = mask
            elif len(shape) == 3 and z < shape[0] and mask.shape == shape[1:]:
                area[z] = mask
        return area

    @property
    def cells(self) -> int:
        """Painted cells of the annotation chosen above."""
        return self._counter.cells if self._counter is not None else 0

    def refresh(self) -> None:
        """Update the line now and the overlay shortly."""
        self._say()
        self._schedule()

    def _say(self) -> None:
        complete = self.complete.isChecked()
        region = self._region is not None and len(self._region.data) > 0
        partial = len(self._partial_ids)
        if self._set_cells is not None:  # the other images' stray dabs are not judged here
            images = max(self._set_images, 1)
            self.line.setText(scope_sentence(self._set_cells, complete, region, images, partial))
            return
        left = 0 if complete else len(self._left_ids)  # complete: no dab is left out
        cells = max(self.cells - left, 0)
        self.line.setText(scope_sentence(cells, complete, region, partial=partial, left_out=left))

    def _found(self, partial: Any, left_out: Any, schedule: bool = False) -> None:
        """A finding arrived: the line says it (and the overlay follows, when it did not)."""
        partial, left = tuple(int(i) for i in partial), tuple(int(i) for i in left_out)
        if (partial, left) != (self._partial_ids, self._left_ids):
            self._partial_ids, self._left_ids = partial, left
            self.refresh() if schedule else self._say()

    def _judge_for(self, image: Any) -> tuple[bool, StartJudge | None]:
        """(whether to use the finding as given, the start model's judge)."""
        got = self._provider() if self._provider is not None else None
        if got is None or is_lazy(image):  # live mode's finding, or no rule to ask
            return True, None
        key, loader, config = got
        if loader is None:  # no start model: nothing flagged
            return False, None
        key = (*key, image, id(image.data))
        if self._judge is None or not self._judge.matches(key):
            self._judge = StartJudge(key, loader, layer_image(image), image.rgb, config)
        return True, self._judge

    # -- the overlay
    def _schedule(self, *_: Any) -> None:
        self._timer.start()

    def _compute(self) -> None:
        image, labels = self._image, self._labels
        layers = self._viewer.layers
        if image is None or labels is None or image not in layers or labels not in layers:
            return
        if not self.show_area.isChecked() or self.complete.isChecked():
            self._hide(image.name)  # complete: the whole image, nothing to point out
            return
        if self._busy:
            self._again = True
            return
        shape = spatial_shape(image)
        data = np.array(labels.data, copy=True)
        if data.shape != shape:
            return
        try:
            region = region_mask(self._region, shape) if self._region is not None else None
        except NapariUnetError:
            region = None
        given, judge = self._judge_for(image)
        live = self._live_area(image, shape) if given else None
        if live is not None:  # what live mode trains on now, as it sent it
            self._show(image, labels, (live, self._partial_ids, self._left_ids))
            return
        if not given:
            self._found((), ())
        self._busy = True
        self._workers.start_function(
            scope_finding,
            data,
            region,
            self._sigma,
            self._partial_ids,
            self._left_ids,
            judge,
            returned=lambda found: self._show(image, labels, found),
            finished=self._on_finished,
        )

    def _on_finished(self) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self._schedule()

    def _show(self, image: Any, labels: Any, found: Any) -> None:
        if not isinstance(found, tuple) or image is not self._image:
            return
        area, partial, left_out = found
        if labels is self._labels and not self.complete.isChecked():
            self._found(partial, left_out)
            # a run's sentence that the start model of the next round no longer bears out
            # (a round made a new model, cells were repainted): not said beside the line
            said = self._said_for
            if said is not None and said != (self._partial_ids, self._left_ids):
                self.set_partial("", None, None)
        if image not in self._viewer.layers:
            return
        if not area.any():
            self._hide(image.name)
            return
        shown = find_own_layer(self._viewer, ROLE, image.name)
        if shown is not None and shown.visible and np.array_equal(shown.data, area):
            return  # the same area again (a new start model that judges alike): no redraw
        layer = upsert_layer(
            self._viewer,
            area,
            kind="image",
            role=ROLE,
            source=image.name,
            name=f"{image.name} area trained on",
            colormap="cyan",
            blending="additive",
            opacity=0.25,
            contrast_limits=(0, 1),
            scale=labels.scale,
            translate=labels.translate,
        )
        layer.visible = True

    def _hide(self, source: str) -> None:
        layer = find_own_layer(self._viewer, ROLE, source)
        if layer is not None:
            layer.visible = False

    def close_scope(self) -> None:
        """Stop following layers and wait for the overlay's worker (the dock closes)."""
        self._timer.stop()
        self.set_target(None, None, None)
        self._workers.stop_all()
