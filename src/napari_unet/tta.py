"""Test-time augmentation: the 8 symmetries of the square and their inverses.

A tile is predicted once per symmetry ``T`` of the square (identity, the
quarter, half and three-quarter turns, and each of them after a left-right
mirror); each prediction is mapped back by ``T^-1`` and the probabilities are
averaged (:func:`napari_unet.tiling.tile_probabilities`). The result is an
average over the network's views of the tile: a cell's outline no longer depends
on which way up the image lies, at 8 times the work.

Why this stays exact under overlap tiling: a tile's input has an even size at
every pooling level (it is a valid U-Net input) and starts on the pooling grid
of the whole image. Mirroring or transposing it maps each 2x2 pooling window onto
another one of the same grid, and the crops of the skip connections are
centred with even margins, so ``T^-1(net(T(tile)))`` is the network with mirrored
or transposed kernels run on the tile, on the tile's own pooling grid. Each output
pixel therefore sees the same context and the same pooling phase, whatever the
tile it falls in, and the stitched result does not depend on the tile size
(up to float rounding), as without augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import NapariUnetError

__all__ = ["Symmetry", "SYMMETRIES", "IDENTITY", "symmetries", "passes", "check_tta"]

_PLANE = (-2, -1)


@dataclass(frozen=True)
class Symmetry:
    """One symmetry of the square, acting on the last two axes ``(y, x)`` of a tensor.

    Attributes
    ----------
    quarter_turns : int
        Quarter turns (0-3), as :func:`torch.rot90` counts them, applied after the mirror.
    mirror : bool
        Mirror left-right (reverse the last axis) first.
    """

    quarter_turns: int
    mirror: bool

    @property
    def name(self) -> str:
        """A short name such as ``"mirror, rot 90"``."""
        turn = f"rot {90 * self.quarter_turns}" if self.quarter_turns else ""
        parts = ["mirror" if self.mirror else "", turn]
        return ", ".join(p for p in parts if p) or "identity"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``T(x)``; a quarter turn swaps the last two axes' sizes."""
        if self.mirror:
            x = torch.flip(x, dims=(-1,))
        if self.quarter_turns:
            x = torch.rot90(x, self.quarter_turns, dims=_PLANE)
        return x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """``T^-1(y)``: undoes :meth:`apply`, so ``invert(apply(x))`` equals ``x``."""
        if self.quarter_turns:
            y = torch.rot90(y, -self.quarter_turns, dims=_PLANE)
        if self.mirror:
            y = torch.flip(y, dims=(-1,))
        return y


#: The 8 symmetries of the square (the dihedral group of order 8), identity first.
#: Their order is the order in which the probabilities are summed.
SYMMETRIES = tuple(Symmetry(k, m) for m in (False, True) for k in range(4))
IDENTITY = SYMMETRIES[0]


def check_tta(tta: Any) -> bool:
    """``tta`` as a bool; anything but True or False is refused in one sentence."""
    if isinstance(tta, bool | np.bool_):
        return bool(tta)
    raise NapariUnetError(f"tta must be True or False, got {tta!r}.")


def symmetries(tta: bool) -> tuple[Symmetry, ...]:
    """All 8 symmetries with test-time augmentation, else the identity alone."""
    return SYMMETRIES if check_tta(tta) else (IDENTITY,)


def passes(tta: bool) -> int:
    """Forward passes per tile: 8 with test-time augmentation, else 1."""
    return len(symmetries(tta))
