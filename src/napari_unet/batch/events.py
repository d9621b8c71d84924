"""What a batch run reports: per-image events, the items done, the run's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BatchEvent", "BatchItem", "BatchResult", "BatchState", "Outcome", "display_name"]


class BatchState(Enum):
    """What a :class:`BatchEvent` reports."""

    STARTED = "started"  # an image begins
    PROGRESS = "progress"  # its prediction moved on
    DONE = "done"  # it is segmented (and written)
    FAILED = "failed"  # it failed; the run goes on with the next


@dataclass(frozen=True)
class BatchEvent:
    """Progress of a batch run.

    Attributes
    ----------
    state : BatchState
    source : pathlib.Path or str
        The image: a file's path, or whatever the caller of :func:`iter_batch`
        names its items by (the GUI: a layer name).
    index : int
        Its place in the run, from 0.
    total : int
        Images in the run.
    fraction : float
        Share of this image done, 0..1.
    n_objects : int or None
        Objects found (DONE).
    output : pathlib.Path or None
        Where the result was written (DONE, for files).
    message : str
        Why it failed, in one sentence (FAILED).
    data : Any
        What the item's work handed back besides its count (the GUI's arrays);
        None for files, whose results are on disk.
    """

    state: BatchState
    source: Path | str
    index: int
    total: int
    fraction: float = 0.0
    n_objects: int | None = None
    output: Path | None = None
    message: str = ""
    data: Any = None

    @property
    def overall(self) -> float:
        """Share of the whole run done, 0..1 (drives one progress bar)."""
        done = self.index + (1.0 if self.state in (BatchState.DONE, BatchState.FAILED) else 0.0)
        if self.state is BatchState.PROGRESS:
            done += self.fraction
        return done / max(self.total, 1)


@dataclass(frozen=True)
class BatchItem:
    """One image a batch segmented: where the result went and how many objects it has."""

    source: Path | str
    n_objects: int
    output: Path | None = None


@dataclass(frozen=True)
class BatchResult:
    """What :func:`segment_files` (and :func:`iter_batch`) return.

    Attributes
    ----------
    done : list of BatchItem
        The images segmented, in the order given.
    failures : list of (source, str)
        The images that failed, each with its one-sentence reason.
    cancelled : bool
        Whether the run stopped before its last image (only :func:`iter_batch`'s
        callers that stop it themselves set this).
    """

    done: list[BatchItem] = field(default_factory=list)
    failures: list[tuple[Path | str, str]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def n_objects(self) -> int:
        """Objects found in all images together."""
        return sum(item.n_objects for item in self.done)

    def summary(self) -> str:
        """One line: "12 images: 1,234 objects; 1 failed: bad.tif"."""
        n = len(self.done) + len(self.failures)
        text = f"{n} image{'s' if n != 1 else ''}: {self.n_objects:,} objects"
        if self.failures:
            names = ", ".join(display_name(source) for source, _ in self.failures)
            text += f"; {len(self.failures)} failed: {names}"
        return text


class Outcome(NamedTuple):
    """What one item's work returns to :func:`iter_batch`."""

    n_objects: int
    output: Path | None = None
    data: Any = None


def display_name(source: Path | str) -> str:
    """A file's name (not its whole path), or the item's own name."""
    return source.name if isinstance(source, Path) else str(source)
