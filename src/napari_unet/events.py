"""The events the core's generators yield, which the CLI and the GUI both render.

Two kinds, told apart by their base class rather than by their attributes:

- :class:`CountedProgress`: work counted as ``done`` of ``total`` steps (a bar);
  :class:`TileProgress` for a prediction, :class:`SizeProgress` for the size
  estimate's model passes, :class:`ChunkProgress` for a big image's phases.
- :class:`Announcement`: a sentence for the user (``text``), said when it is
  known, before the work it describes: :class:`SizeChoice` (the object size
  estimated and the resize chosen) and :class:`Note` (anything else, such as what
  a resize or a stack mode will cost).

Every event is a frozen dataclass; tests compare them by value. This module
imports nothing of napari-unet but type names, so every other module can look
down at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .precision import Precision

__all__ = [
    "Announcement",
    "ChunkProgress",
    "CountedProgress",
    "DiameterEstimate",
    "Note",
    "SizeChoice",
    "SizeProgress",
    "TileProgress",
]


class CountedProgress:
    """Base of the events that count work: ``done`` of ``total`` steps.

    A consumer that draws a bar needs only these two numbers
    (:func:`napari_unet._generators.progress_callback`); the subclasses say what
    is counted. It holds no fields itself, so each subclass keeps its own field
    order (and its positional arguments).
    """

    __slots__ = ()
    done: int
    total: int


class Announcement:
    """Base of the events that carry one or two sentences for the user (``text``)."""

    __slots__ = ()
    text: str


@dataclass(frozen=True)
class TileProgress(CountedProgress):
    """Progress of a prediction: ``done`` of ``total`` tile passes (over all planes).

    A tile takes one forward pass, or 8 with test-time augmentation (``tta``),
    so the count is the work done and the work left, either way. ``precision``:
    the precision the passes run in, and why (None where not known).
    """

    done: int
    total: int
    precision: Precision | None = field(default=None, compare=False)  # says, not counts


@dataclass(frozen=True)
class SizeProgress(CountedProgress):
    """Progress of one of the size estimate's model passes: ``done`` of ``total`` tiles."""

    done: int
    total: int


@dataclass(frozen=True)
class DiameterEstimate:
    """The typical object diameter of an image, as :func:`napari_unet.estimate_diameter` found it.

    Attributes
    ----------
    diameter : float or None
        Median equivalent diameter (that of the disc of the same area) in the
        image's pixels; None when there were too few objects to tell.
    count : int
        How many objects the estimate rests on.
    quartiles : tuple of float or None
        25th and 75th percentiles of the objects' diameters.
    source : {"model", "image", "none"}
        ``"model"``: measured on the model's objects at a scale it knows;
        ``"image"``: the model-free estimate (no model given, a model that
        records no range, a model that found too few objects, or a size in the
        middle of the range on an image bigger than one window); ``"none"``: no
        estimate.
    empty : bool
        The image is constant or shows nothing above its noise.
    note : str
        One sentence on what was found (for the user).
    """

    diameter: float | None
    count: int
    quartiles: tuple[float, float] | None
    source: str
    empty: bool = False
    note: str = ""


@dataclass(frozen=True)
class SizeChoice(Announcement):
    """Event of :func:`napari_unet.segment.iter_segment`: the size was estimated, the factor chosen.

    Yielded once, before the prediction starts. ``message`` says the estimate
    and the factor (it is also one of the result's notes); ``resize``, when the
    image is resized, what that costs (:func:`napari_unet.rescaling.describe_resize`).
    The CLI and the GUI show :attr:`text`, both.
    """

    estimate: DiameterEstimate
    rescale: float
    message: str
    resize: str = field(default="", compare=False)  # says, as the message does

    @property
    def text(self) -> str:
        """The message and, when the image is resized, what the resize costs."""
        return f"{self.message} {self.resize}" if self.resize else self.message


@dataclass(frozen=True)
class Note(Announcement):
    """A sentence for the user, said before the work it is about (e.g. a resize's cost)."""

    text: str


@dataclass(frozen=True)
class ChunkProgress(CountedProgress):
    """Progress of :func:`napari_unet.bigimage.iter_predict_to_zarr`.

    Attributes
    ----------
    phase : str
        ``"statistics"``, ``"predict"``, ``"label"``, ``"relabel"`` or ``"done"``.
    done, total : int
        Steps done and in all; one step per chunk and phase (plus one for the
        statistics), so ``done / total`` is the overall fraction.
    """

    phase: str
    done: int
    total: int
