"""Keeps "<labels> weight map" in step with an annotation, off the GUI thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error
from psygnal import Signal
from qtpy.QtCore import QTimer

from .layers import remove_own_layer, upsert_layer
from .workers import WorkerGroup

if TYPE_CHECKING:
    import napari

# Painting fires many events; wait this long after the last one before recomputing.
DEBOUNCE_MS = 250


def _compute(labels: np.ndarray, w0: float, sigma: float) -> tuple[np.ndarray, int]:
    from ..weightmap import touching_pairs, unet_weight_map

    return unet_weight_map(labels, w0=w0, sigma=sigma), len(touching_pairs(labels))


class WeightMapOverlay:
    """Shows the paper's weight map of a Labels layer as one Image layer, kept up to date.

    The map is recomputed in a thread worker on a snapshot of the labels, at most
    one at a time, a short while after painting stops. The result layer is
    updated in place (never a second layer), never becomes the active layer, and
    is not shown while the map is flat (no cells yet): it would only veil the image.
    Its darkest colour (invisible with additive blending) is the smallest weight.
    """

    touching = Signal(int)  # number of touching cell pairs in the latest snapshot
    updated = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, layer: Any, w0: float, sigma: float):
        self._viewer = viewer
        self.layer = layer
        self.w0, self.sigma = w0, sigma
        self._worker = None
        self._workers = WorkerGroup()
        self._dirty = False
        self._closed = False
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start)
        for name in ("paint", "data", "labels_update", "set_data"):
            getattr(layer.events, name).connect(self.schedule)
        self._start()

    @property
    def busy(self) -> bool:
        """Whether a computation is running or waiting."""
        return self._worker is not None or self._timer.isActive()

    def set_params(self, w0: float, sigma: float) -> None:
        """Change w0 and sigma; the map follows."""
        self.w0, self.sigma = float(w0), float(sigma)
        self.schedule()

    def schedule(self, *_: Any) -> None:
        """Recompute after the debounce delay (restarted by every call)."""
        self._timer.start()

    def _start(self) -> None:
        if self._closed:
            return
        if self._worker is not None:  # one at a time; run again when it is done
            self._dirty = True
            return
        self._dirty = False
        snapshot = np.array(self.layer.data, copy=True)
        self._worker = self._workers.start_function(
            _compute,
            snapshot,
            self.w0,
            self.sigma,
            returned=self._show,
            errored=self._failed,
            finished=self._done,
        )

    def _show(self, result: tuple[np.ndarray, int]) -> None:
        weights, n_touching = result
        if self._closed or self.layer not in self._viewer.layers:  # switched off meanwhile
            return
        low, high = float(weights.min()), float(weights.max())
        if high - low < 1e-6:  # no cells: a flat field that says nothing
            remove_own_layer(self._viewer, "weight map", self.layer.name)
        else:
            upsert_layer(
                self._viewer,
                weights,
                kind="image",
                role="weight map",
                source=self.layer.name,
                name=f"{self.layer.name} weight map",
                colormap="inferno",
                blending="additive",
                opacity=0.7,
                contrast_limits=(low, high),
                scale=self.layer.scale,
                translate=self.layer.translate,
            )
        self.touching.emit(n_touching)
        self.updated.emit()

    def _failed(self, exc: Exception) -> None:
        show_error(f"The weight map could not be computed: {exc}")

    def _done(self) -> None:
        self._worker = None
        if self._dirty:
            self._start()

    def close(self, remove_layer: bool = True) -> None:
        """Stop following the labels (and remove the overlay layer)."""
        self._closed = True  # a computation still running is dropped when it returns
        self._timer.stop()
        for name in ("paint", "data", "labels_update", "set_data"):
            getattr(self.layer.events, name).disconnect(self.schedule)
        if remove_layer:
            remove_own_layer(self._viewer, "weight map", self.layer.name)

    def shutdown(self, timeout: float = 10.0) -> None:
        """The dock or viewer closes: stop following and wait for a computation under way."""
        self._closed = True
        self._timer.stop()
        self._workers.stop_all(timeout)
