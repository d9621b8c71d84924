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
from .cell_counter import CellCounter
from .layers import find_own_layer, is_lazy, layer_image, region_mask, spatial_shape, upsert_layer
from .scope_judge import EntryJob, SharedModel, StartJudge, scope_job
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
    elsewhere: int = 0,
) -> str:
    """The line shown before Fine-tune, at most three lines in the dock.

    ``cells``: the painted cells trained on; ``partial``: how many of them look
    partly painted; ``left_out``: how many stray dabs are not trained on, of
    which ``elsewhere`` lie on other images of the training set than the one
    chosen (the overlay cannot show those; said when it fits).
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
        f" across {images} images" if images > 1 else ""
    )
    if complete and left_out:  # a round leaves them out too: neither cell nor background
        return _fitting(
            f"{trained}; the image is marked complete{how}{_left_out(left_out, elsewhere, w, b)}"
            for how in (", so every other pixel is background", "")
            for w, b in ((True, True), (False, False))
        )
    if complete:
        return (
            f"{trained}; the image is marked complete, so every unpainted pixel is taught as "
            "background."
        )
    if region:
        trained += " and the annotated region"
    around = plain = "there and around the cells" if region else "around them"
    if partial:  # their ring lies inside the nucleus: the background moves out (partial.py)
        which = "the one" if partial == 1 else f"the {partial}"
        around = f"{plain}, farther out for {which} partly painted"
    if left_out:  # three lines at 1366x768 (the overlay shows which; the sentence names them)
        background = not (partial or region)  # else the partial sentence below says where
        forms = ((around, True), (around, False), (plain, True), (plain, False), ("", False))
        return _fitting(  # the overlay shows the area when there is no room to say it
            f"{trained}{f' (background only {a})' if a else ''}"
            f"{_left_out(left_out, elsewhere, w, background)}"
            for a, w in forms
        )
    said = f"{trained} (background only {around}; the rest of the image is not used)."
    if partial:  # the advice is the partial sentence's, below: the line keeps its three lines
        return said
    return f"{said} Paint more cells, or mark the image complete, to learn more."


# Characters of the line that keep within three lines of the dock at 1366x768 (measured:
# 131 fit, 142 took four; tests/_qt/test_training_scope.py checks every form).
LINE_CHARS = 132


def _fitting(candidates: Any) -> str:
    """The first sentence that keeps within three lines (the last one when none does)."""
    said = ""
    for said in candidates:
        if len(said) <= LINE_CHARS:
            break
    return said


def _left_out(n: int, elsewhere: int, where: bool, background: bool) -> str:
    """The end of the line: how many tiny marks are left out (``where``: and where)."""
    if not where or not (elsewhere or background):
        place = ""
    elif elsewhere == n:
        place = " on another image" if n == 1 else " on other images"
    elif elsewhere:
        place = f" ({elsewhere} on other images)"
    else:  # on the chosen image: the overlay shows them
        place = " on background"
    marks = f"1 tiny mark{place} is" if n == 1 else f"{n} tiny marks{place} are"
    return f"; {marks} left out."


class TrainingScope(QWidget):
    """The "completely annotated" box, the line before Fine-tune, and the area overlay.

    The dock calls :meth:`set_target` with its image, annotation and region
    layers, and :meth:`set_entries` with the training set's entries.
    """

    def __init__(self, viewer: napari.viewer.Viewer, sigma: float, memory: Any = None) -> None:
        super().__init__()
        self._viewer = viewer
        self._memory = memory  # the dock's ForegroundMemory: judged as the rounds judge
        self._sigma = sigma
        self._image = self._labels = self._region = None
        self._counter: CellCounter | None = None
        self._entries: list[Any] = []  # the training set's (empty: the choice above is trained)
        # per entry (by its annotation layer): (layer, partly painted ids, left-out ids)
        self._set_found: dict[int, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {}
        # the finding the line and the overlay use: the start model's (see set_judge), or
        # the running live mode's (set_partial)
        self._partial_ids: tuple[int, ...] = ()
        self._left_ids: tuple[int, ...] = ()  # stray dabs, left out of training
        self._said_for: tuple | None = None  # the finding the sentence below was about
        self._provider: Any = None
        self._judges: dict[int, StartJudge] = {}  # per image layer (chosen or in the set)
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

    def set_entries(self, entries: Any) -> None:
        """The training set's entries (``image``, ``labels``, ``region``, ``counter`` each).

        Empty: the choice above is trained. Each entry's strokes and region change
        what a round leaves out on it: it is judged again then, alone.
        """
        entries = list(entries or ())
        old = {id(x): x for e in self._entries for x in (e.labels, e.region) if x is not None}
        new = {id(x): x for e in entries for x in (e.labels, e.region) if x is not None}
        for key in old.keys() - new.keys():
            old[key].events.data.disconnect(self._schedule_set)
        for key in new.keys() - old.keys():
            new[key].events.data.connect(self._schedule_set)
        self._entries = entries
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
        if self._entries:  # every image's dabs, judged as a round judges them
            self.line.setText(scope_sentence(*self._set_counts(complete)))
            return
        region = self._region is not None and len(self._region.data) > 0
        partial = len(self._partial_ids)
        left = len(self._left_ids)  # a round leaves them out, complete or not
        cells = max(self.cells - left, 0)
        self.line.setText(scope_sentence(cells, complete, region, partial=partial, left_out=left))

    def _set_counts(self, complete: bool) -> tuple:
        """:func:`scope_sentence`'s arguments for the training set.

        An entry not judged (yet, or its image does not suit the model) counts
        its painted cells, as the set's table does.
        """
        cells = partial = left = elsewhere = 0
        for e in self._entries:
            layer, ids, stray = self._set_found.get(id(e.labels), (None, (), ()))
            if layer is not e.labels:
                ids, stray = (), ()
            cells += max(e.counter.cells - len(stray), 0)
            partial, left = partial + len(ids), left + len(stray)
            if e.image is not self._image:  # the overlay cannot show these
                elsewhere += len(stray)
        region = any(e.region is not None and len(e.region.data) > 0 for e in self._entries)
        return cells, complete, region, len(self._entries), partial, left, elsewhere

    def _found(self, partial: Any, left_out: Any, schedule: bool = False) -> None:
        """A finding arrived: the line says it (and the overlay follows, when it did not)."""
        partial, left = tuple(int(i) for i in partial), tuple(int(i) for i in left_out)
        if (partial, left) != (self._partial_ids, self._left_ids):
            self._partial_ids, self._left_ids = partial, left
            self.refresh() if schedule else self._say()

    def _judge_of(self, image: Any, got: tuple, shared: SharedModel) -> StartJudge | None:
        """The start model's judge of ``image``, kept while the model and its data are."""
        if is_lazy(image):  # no rule to ask: predicting all of it is Predict's work
            return None
        key, _, config = got
        key = (*key, image, id(image.data))
        judge = self._judges.get(id(image))
        if judge is None or not judge.matches(key):
            judge = StartJudge(
                key, shared, layer_image(image), image.rgb, config, memory=self._memory
            )
            self._judges[id(image)] = judge  # the key holds the layer: its id stays its own
        return judge

    # -- the overlay and the set's judgement, in one worker
    def _schedule(self, *_: Any) -> None:
        self._timer.start()

    def _schedule_set(self, *_: Any) -> None:  # an entry's strokes or region
        self._timer.start()

    def _compute(self) -> None:
        if self._busy:
            self._again = True
            return
        # the start model's (key, loader, config); None while live mode sends its finding
        got = self._provider() if self._provider is not None else None
        shared = SharedModel(got[1]) if got is not None and got[1] is not None else None
        overlay = self._overlay_work(got, shared)
        entries = self._entry_work(got, shared)
        keep = {id(self._image), *(id(e.image) for e in self._entries)}
        self._judges = {k: j for k, j in self._judges.items() if k in keep}
        if overlay is None and entries is None:
            return
        image, labels = self._image, self._labels
        self._busy = True
        self._workers.start_function(
            scope_job,
            overlay,
            entries,
            returned=lambda result: self._judged(image, labels, entries, result),
            finished=self._on_finished,
        )

    def _overlay_work(self, got: Any, shared: Any) -> tuple | None:
        """:func:`scope_finding`'s arguments for the chosen image (None: nothing to find)."""
        image, labels = self._image, self._labels
        layers = self._viewer.layers
        if image is None or labels is None or image not in layers or labels not in layers:
            return None
        if not self._drawn():
            self._hide(image.name)  # the stray dabs are still found, for the line
        shape = spatial_shape(image)
        if tuple(labels.data.shape) != shape:
            return None
        given = got is None or shared is not None  # else no start model: nothing flagged
        live = self._live_area(image, shape) if given else None
        if live is not None:  # what live mode trains on now, as it sent it: no copy, no worker
            self._show(image, labels, (live, self._partial_ids, self._left_ids))
            return None
        data = np.array(labels.data, copy=True)
        try:
            region = region_mask(self._region, shape) if self._region is not None else None
        except NapariUnetError:
            region = None
        if self.complete.isChecked():  # as Fine-tune takes it: the whole image is the region
            region = np.ones(shape, bool)
        judge = self._judge_of(image, got, shared) if shared is not None else None
        if not given:
            self._found((), ())
        return data, region, self._sigma, self._partial_ids, self._left_ids, judge

    def _entry_work(self, got: Any, shared: Any) -> list[EntryJob] | None:
        """The training set's entries to judge (None: nothing to judge now)."""
        if not self._entries or got is None:  # live mode runs: what was found stays
            return None
        if shared is None:  # no start model: nothing is left out
            self._set_found = {}
            self._say()
            return None
        return [
            EntryJob(
                e.labels,
                self._judge_of(e.image, got, shared),
                e.labels.data,
                e.region,
                spatial_shape(e.image),
                is_complete(e.labels),  # as Fine-tune takes it: the whole image is the region
            )
            for e in self._entries
        ]

    def _judged(self, image: Any, labels: Any, entries: Any, result: Any) -> None:
        found, judged = result
        if judged is not None:
            self._set_found = {
                id(job.layer): (job.layer, *r) for job, r in zip(entries, judged) if r is not None
            }
            self._say()
        if found is not None:
            self._show(image, labels, found)

    def _on_finished(self) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self._schedule()

    def _show(self, image: Any, labels: Any, found: Any) -> None:
        if not isinstance(found, tuple) or image is not self._image:
            return
        area, partial, left_out = found
        if labels is self._labels:
            self._found(partial, left_out)
            # a run's sentence that the start model of the next round no longer bears out
            # (a round made a new model, cells were repainted): not said beside the line
            said = self._said_for
            if said is not None and said != (self._partial_ids, self._left_ids):
                self.set_partial("", None, None)
        if image not in self._viewer.layers or not self._drawn():
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

    def _drawn(self) -> bool:
        """Whether the overlay shows (complete: the whole image, nothing to point out)."""
        return self.show_area.isChecked() and not self.complete.isChecked()

    def _hide(self, source: str) -> None:
        layer = find_own_layer(self._viewer, ROLE, source)
        if layer is not None:
            layer.visible = False

    def close_scope(self) -> None:
        """Stop following layers and wait for the overlay's worker (the dock closes)."""
        self.set_entries([])
        self.set_target(None, None, None)
        self._timer.stop()
        self._workers.stop_all()
