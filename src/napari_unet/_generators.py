"""Running the core's progress generators to the end, outside a GUI."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .events import CountedProgress

R = TypeVar("R")


def run_to_end(gen: Generator[Any, Any, R], on_event: Callable[[Any], Any] | None = None) -> R:
    """Exhaust ``gen``, passing every yielded event to ``on_event``; return its result.

    The blocking twin of the ``iter_*`` generators: ``predict_tiled``,
    ``segment``, ``predict_to_zarr`` and ``train_model`` are this around them.
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


def progress_callback(progress: Callable[[int, int], Any] | None) -> Callable[[Any], Any] | None:
    """``progress(done, total)`` as an ``on_event`` for counted progress events.

    Those are :class:`~napari_unet.events.CountedProgress`; other events (sentences
    such as :class:`napari_unet.events.SizeChoice`) are skipped.
    """
    if progress is None:
        return None

    def on_event(event: Any) -> None:
        if isinstance(event, CountedProgress):
            progress(event.done, event.total)

    return on_event
