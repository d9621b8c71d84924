"""Typed, frozen progress events that the core yields and the CLI and GUI render."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChunkProgress"]


@dataclass(frozen=True)
class ChunkProgress:
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
