"""One synthetic image: cells placed, rendered in the configured style, photographed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .camera import photograph
from .optics import render_brightfield, render_fluorescence
from .realism import add_real_modes, restage_camera
from .shapes import finish_labels, place_cells

if TYPE_CHECKING:
    from .scene_settings import SceneSettings

__all__ = ["draw_scene"]


def draw_scene(config: SceneSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An image and its labels for ``config``, every random number from ``rng``."""
    labels, cells = place_cells(config, rng)
    labels, cells = finish_labels(labels, cells)
    lo, hi = config.photons
    if config.style == "fluorescence":
        expected = render_fluorescence(rng, config, labels, cells)
        expected = add_real_modes(rng, config, labels, cells, expected)  # off: no draw
        photons = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        level8 = (60.0, 170.0)  # 8-bit exports: nuclei mid-range, the brightest saturate
    else:
        expected = render_brightfield(rng, config, labels, cells)
        # a lamp gives many photons, but a camera pixel holds only so many
        photons = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        photons = min(max(100.0 * photons, 2000.0), 20000.0)
        level8 = (90.0, 150.0)  # grey background, room for the bright halos
    image = photograph(rng, expected, photons, config.dtype, level8)
    return restage_camera(rng, config, image, labels), labels  # off: no draw
