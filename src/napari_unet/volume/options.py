"""The 3D modes' options and the "views" labelling, shared by both 3D paths.

The in-memory pipeline (:mod:`.pipeline`) and the zarr slabs
(:mod:`napari_unet.bigimage.stack3d`) resolve and check the options here and
label the averaged views here, so a stack gives the same objects either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import NapariUnetError
from ..postprocess import METHODS
from ..postprocess.rules import keep_confident
from .instances import labels_3d
from .linking import LINK_IOU, drop_small_3d

__all__ = ["OPTIONS_3D", "ViewsLabelling", "default_min_volume", "take_3d_options"]

#: Keywords only the 3D modes take (besides the 2D post-processing ones).
OPTIONS_3D = ("link_iou", "min_volume")


def default_min_volume(min_size: int, voxel_size: Sequence[float]) -> int:
    """Voxels of a ball whose cross-section is ``min_size`` pixels, in the stack's voxels.

    ``min_size`` says how small an object may look in a plane; the ball with that
    cross-section is the smallest 3D object kept, so a speck in one plane goes
    while a small nucleus spanning a few planes stays.
    """
    if min_size <= 0:
        return 0
    d = 2.0 * math.sqrt(min_size / math.pi)
    ball = math.pi / 6.0 * d**3
    s = min(voxel_size[1], voxel_size[2])
    voxel = voxel_size[0] * voxel_size[1] * voxel_size[2] / s**3
    return max(1, round(ball / voxel))


def take_3d_options(options: dict, min_size: int, voxel_size: Sequence[float]) -> tuple[float, int]:
    """Take the link IoU and the smallest volume out of resolved post-processing ``options``.

    ``options`` are :func:`~napari_unet.postprocess.resolve_postprocess`'s for a
    3D mode. The volume defaults to :func:`default_min_volume` of ``min_size``
    and is checked.
    """
    link_iou = float(options.pop("link_iou", LINK_IOU))
    min_volume = options.pop("min_volume", None)
    if min_volume is None:
        min_volume = default_min_volume(min_size, voxel_size)
    if int(min_volume) < 0:
        raise NapariUnetError(f"min_volume must be 0 or more, got {min_volume}.")
    return link_iou, int(min_volume)


@dataclass(frozen=True)
class ViewsLabelling:
    """How ``"views"`` cuts 3D objects from the averaged probabilities."""

    method: str
    threshold: float
    h: float
    smoothing: float
    seed_threshold: Any
    min_confidence: float

    @classmethod
    def take(cls, options: dict) -> ViewsLabelling:
        """From resolved options (after :func:`take_3d_options`), checked.

        ``min_size`` is ignored (3D objects have ``min_volume``); any option left
        over is refused in one sentence.
        """
        options = dict(options)
        options.pop("min_size", None)
        labelling = cls(
            seed_threshold=options.pop("seed_threshold"),
            threshold=options.pop("threshold"),
            min_confidence=float(options.pop("min_confidence")),
            method=options.pop("method"),
            h=float(options.pop("h")),
            smoothing=float(options.pop("smoothing")),
        )
        if options:
            raise NapariUnetError(
                f"Unknown option(s) for 3D objects: {', '.join(sorted(options))}."
            )
        if labelling.method not in METHODS:
            raise NapariUnetError(
                f"Unknown method {labelling.method!r}; use {' or '.join(METHODS)}."
            )
        if not 0.0 < labelling.threshold < 1.0:
            raise NapariUnetError(
                f"The threshold must be between 0 and 1, got {labelling.threshold}."
            )
        return labelling

    def label(
        self,
        prob: np.ndarray,
        voxel_size: Sequence[float],
        min_volume: int,
        rescale: float = 1.0,
    ) -> np.ndarray:
        """3D objects of the probabilities ``(K, Z, H, W)``; ``rescale`` as the network saw them.

        Objects the network is unsure of go, as in 2D (ids stay consecutive).
        """
        fg = np.subtract(np.float32(1.0), prob[0])
        if self.method == "components":
            labels = drop_small_3d(ndi.label(fg > self.threshold)[0], min_volume)
        else:
            s = min(voxel_size[1], voxel_size[2])
            labels = labels_3d(
                fg,
                threshold=self.threshold,
                sampling=[v / s for v in voxel_size],
                min_volume=min_volume,
                h=self.h / rescale,  # given at the network's scale, like the 2D options
                smoothing=self.smoothing / rescale,
                seed_threshold=self.seed_threshold,
            )
        return keep_confident(labels, fg, self.min_confidence)
