"""The generator's settings (:class:`SyntheticConfig`) and the shortcut :func:`make_cells`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..seeding import random_generator
from .camera import DTYPES
from .scene_settings import GENERATOR_VERSION, STYLES, SceneSettings, _is_integer
from .scenes import draw_scene

__all__ = ["GENERATOR_VERSION", "STYLES", "SyntheticConfig", "make_cells"]


class SyntheticConfig(SceneSettings):
    """Settings of the synthetic image generator.

    Every image draws its own imaging conditions (blur, brightness, noise,
    illumination, background) from the ranges given here, so a set of images
    made from one configuration covers the variety real data sets show.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the image in pixels.
    n_cells : int or None
        Number of cells to draw. ``None`` picks a density: cells cover about
        10% to 45% of the image (less when they are kept apart). In very
        crowded requests a few cells may not find room and are left out.
    diameter : tuple of float
        ``(min, max)`` equivalent diameter of the cells in pixels (the diameter
        of the disc with the same area). Each image draws a typical size inside
        this range and spreads its cells around it.
    style : {"fluorescence", "brightfield"}
        Imaging style, see the module documentation.
    touching : float
        Probability, from 0 to 1, that a cell is placed against one already
        drawn, forming touching clusters. At 0 every cell keeps a gap of at
        least two pixels to the others.
    dividing : float
        Fraction of cells drawn as small, very bright condensed dividing cells
        (about half of them as pairs of daughters).
    out_of_focus : float
        Fraction of cells drawn out of focus (more blurred and dimmer).
    photons : tuple of float
        Range of the mean photon count per pixel of a typical cell (fluorescence);
        the brightfield background gets 100 times that, kept between 2000 and
        20000. Lower means noisier.
    blur : tuple of float
        Range of the standard deviation, in pixels, of the Gaussian point spread
        function.
    dtype : {"uint16", "uint8"}
        Integer type of the image, as a camera or an 8-bit export writes it.
    dim : float
        Fraction of cells (0 to 1) drawn 2.5 to 7 times dimmer than the typical
        cell (fluorescence): weakly stained or G1 nuclei next to bright ones.
    lobed : float
        Fraction of cells (0 to 1) with a lobed, non-convex (bean, kidney,
        bilobed) outline instead of a near-elliptic one.
    overlap : float
        At most this fraction (0 to 0.5) of a cell's area may lie under a
        touching cell. In fluorescence both shine through: the overlap is
        brighter, and its pixels are labelled as the cell in front.
    debris : float
        Expected number of unlabelled objects that are not nuclei (small bright
        specks and thin fibres of lint, fluorescence) per 100 x 100 pixels,
        from 0 to 10.
    mitotic : float
        Fraction of nuclei (0 to 1) redrawn as condensed mitotic/apoptotic nuclei:
        2.5 to 6 times brighter (often saturated), grainy with dark gaps, labelled
        as one object (fluorescence; see :mod:`.realism`). Off by default.
    specks : float
        Expected number of small, dim, out-of-focus unlabelled blobs beside nuclei
        per 100 x 100 pixels, from 0 to 10 (fluorescence). Off by default.
    high_offset : float
        Fraction of 16-bit images (0 to 1) recorded with a large camera offset (30%
        to 60% of 65,535, nuclei a few hundred counts above it) or as 12-bit, often
        saturating just above the brightest nuclei. Off by default.
    """

    def generate(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one image and its labels.

        Parameters
        ----------
        seed : int, sequence of int, or None
            Seed of the random generator (non-negative). ``None`` draws fresh
            entropy; any other value always gives the same arrays.

        Returns
        -------
        image : numpy.ndarray
            ``(H, W)`` camera image of type :attr:`dtype`.
        labels : numpy.ndarray
            ``(H, W)`` int32 instance labels, 0 for background and 1..n for the
            cells, each pixel belonging to the cell in front.
        """
        return draw_scene(self, random_generator(seed))

    def generate_many(
        self, n_images: int, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw several images; image ``i`` equals ``generate(seed=[seed, i])``.

        Parameters
        ----------
        n_images : int
            How many images to draw.
        seed : int or None
            Base seed; ``None`` draws fresh entropy for the whole set.

        Returns
        -------
        images, labels : numpy.ndarray
            Stacks of shape ``(n_images, H, W)``.
        """
        if isinstance(n_images, bool) or not _is_integer(n_images) or n_images < 1:
            raise NapariUnetError(f"The number of images must be at least 1, got {n_images!r}.")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        images = np.empty((int(n_images), *self.shape), dtype=DTYPES[self.dtype])
        labels = np.empty((int(n_images), *self.shape), dtype=np.int32)
        for i in range(int(n_images)):
            images[i], labels[i] = self.generate(seed=[seed, i])
        return images, labels


def make_cells(
    shape: tuple[int, int] = (512, 512),
    *,
    n_cells: int | None = None,
    diameter: tuple[float, float] = (12.0, 30.0),
    style: str = "fluorescence",
    touching: float = 0.5,
    seed: int | Sequence[int] | None = None,
    dtype: Any = np.uint16,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a synthetic microscopy image of cells and its exact instance labels.

    A shortcut for ``SyntheticConfig(...).generate(seed)``.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels.
    n_cells : int or None
        Number of cells; ``None`` picks a realistic density.
    diameter : tuple of float
        ``(min, max)`` equivalent cell diameter in pixels.
    style : {"fluorescence", "brightfield"}
        Fluorescent nuclei, or phase-contrast/brightfield-like cells.
    touching : float
        Probability (0 to 1) that a cell is placed against another one.
    seed : int, sequence of int, or None
        Same seed, same arrays; ``None`` draws fresh entropy.
    dtype : numpy.uint16 or numpy.uint8
        Integer type of the image.
    **options
        Further :class:`SyntheticConfig` settings: ``dividing``,
        ``out_of_focus``, ``photons``, ``blur``, ``dim``, ``lobed``,
        ``overlap``, ``debris``, ``mitotic``, ``specks``, ``high_offset``.

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` image of type ``dtype``.
    labels : numpy.ndarray
        ``(H, W)`` int32 labels, consecutive ids 1..n, 0 for background.

    Examples
    --------
    >>> image, labels = make_cells((256, 256), n_cells=40, seed=0)
    >>> image.dtype, labels.max()
    (dtype('uint16'), np.int32(40))
    """
    unknown = sorted(set(options) - {f.name for f in fields(SyntheticConfig)})
    if unknown:  # a programming error, not the user's
        raise TypeError(f"make_cells() got unexpected keyword arguments: {unknown}")
    config = SyntheticConfig(
        shape=shape,
        n_cells=n_cells,
        diameter=diameter,
        style=style,
        touching=touching,
        dtype=dtype,
        **options,
    )
    return config.generate(seed)
