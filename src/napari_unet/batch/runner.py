"""Running any per-item work one item at a time: a failure is that item's, not the run's."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from ..errors import NapariUnetError
from ..events import CountedProgress
from .events import BatchEvent, BatchItem, BatchResult, BatchState, Outcome, display_name

__all__ = ["iter_batch", "problem_sentence"]


def problem_sentence(source: Path | str, exc: BaseException) -> str:
    """One sentence for why ``source`` failed, whatever was raised."""
    if isinstance(exc, NapariUnetError):
        return str(exc)
    name = display_name(source)
    if isinstance(exc, MemoryError):
        return f"{name} does not fit in memory; try a smaller tile."
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{name}: {exc.strerror or exc}{where}."
    return f"{name}: unexpected error: {type(exc).__name__}: {exc}."


def iter_batch(
    sources: Sequence[Path | str],
    segment_one: Callable[[Any, int], Generator[Any, None, Outcome]],
) -> Generator[BatchEvent, None, BatchResult]:
    """Run ``segment_one`` on every source; one that fails does not stop the others.

    Parameters
    ----------
    sources : sequence
        The items, in order (paths for files).
    segment_one : callable
        ``segment_one(source, index)`` returns a generator that may yield events
        with ``done`` and ``total`` (tile or chunk progress; others are ignored)
        and returns an :class:`Outcome`. Any exception it raises fails that item
        only, with :func:`problem_sentence` as the reason.

    Yields
    ------
    BatchEvent
        STARTED, PROGRESS..., then DONE or FAILED, for each item in turn.

    Returns
    -------
    BatchResult
    """
    n = len(sources)
    done: list[BatchItem] = []
    failures: list[tuple[Path | str, str]] = []
    for i, source in enumerate(sources):
        yield BatchEvent(BatchState.STARTED, source, i, n)
        try:
            gen = segment_one(source, i)
            outcome = yield from _progress_of(gen, source, i, n)
        except Exception as exc:  # one image's problem, whatever it is, is that image's
            message = problem_sentence(source, exc)
            failures.append((source, message))
            yield BatchEvent(BatchState.FAILED, source, i, n, message=message)
            continue
        done.append(BatchItem(source, int(outcome.n_objects), outcome.output))
        yield BatchEvent(
            BatchState.DONE,
            source,
            i,
            n,
            fraction=1.0,
            n_objects=int(outcome.n_objects),
            output=outcome.output,
            data=outcome.data,
        )
    return BatchResult(done, failures)


def _progress_of(gen: Generator, source: Path | str, i: int, n: int) -> Generator:
    """Pass on ``gen``'s tile/chunk progress as PROGRESS events; return its result."""
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, CountedProgress) and event.total:
                fraction = min(1.0, event.done / event.total)
                yield BatchEvent(BatchState.PROGRESS, source, i, n, fraction=fraction)
    finally:
        gen.close()  # a cancel (GeneratorExit here) stops the image's work at once
