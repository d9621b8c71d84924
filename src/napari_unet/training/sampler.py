"""Where a training tile is cut and how it is augmented: the one sampler of training.

:class:`TileSampler` is what :class:`~napari_unet.training.Trainer` draws its
tiles from; :func:`preview_samples` shows the same tiles without training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..augment import AugmentConfig, augment_sample
from ..model import UNet
from ..seeding import random_generator
from .config import TrainConfig
from .data import TrainingData, model_normalization, prepare_planes, tile_sizes

__all__ = ["TileSampler", "preview_samples"]


class TileSampler:
    """Random, augmented training tiles from prepared planes.

    A tile is centred nowhere in particular: a training pixel is drawn uniformly
    (planes weighted by their training pixels), then the output window that holds
    it is drawn among those inside the annotated extent (:meth:`_window`); image,
    labels and weight map are cut with the network's context around it and
    augmented together with one draw of :func:`~napari_unet.augment.augment_sample`.

    Parameters
    ----------
    data : TrainingData
        From :func:`~napari_unet.training.prepare_training_data`.
    input_size, output_size : int
        The network's input side and the output side it predicts.
    augment : AugmentConfig
    rng : numpy.random.Generator
        Every draw (tile position and augmentation) comes from it, in a fixed order.
    """

    def __init__(
        self,
        data: TrainingData,
        input_size: int,
        output_size: int,
        augment: AugmentConfig,
        rng: np.random.Generator,
    ) -> None:
        self.data = data
        self.input_size = input_size
        self.output_size = output_size
        self.augment = augment
        self.rng = rng

    def cut(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented input-sized tile: image ``(C, N, N)``, labels and weights ``(N, N)``.

        The labels are the training target's instance ids (gaps carved between
        touching cells when the data asked for it); the loss sees the centre
        ``output_size`` window.
        """
        planes = self.data.planes
        sizes = np.array([len(p.train_pixels) for p in planes], dtype=np.float64)
        plane = planes[int(self.rng.choice(len(planes), p=sizes / sizes.sum()))]
        flat = plane.train_pixels[int(self.rng.integers(len(plane.train_pixels)))]
        py, px = divmod(int(flat), plane.shape[1])
        n, o = self.input_size, self.output_size
        h = (n - o) // 2
        y0, y1, x0, x1 = plane.train_box
        oy = self._window(py, y0, y1, o)
        ox = self._window(px, x0, x1, o)
        y, x = oy - h + plane.pad, ox - h + plane.pad
        img = plane.image[:, y : y + n, x : x + n]
        lab = plane.labels[y : y + n, x : x + n]
        wts = plane.weights[y : y + n, x : x + n]
        return augment_sample(img, lab, wts, config=self.augment, rng=self.rng)

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One training tile: input ``(C, N, N)``, foreground target and weights ``(O, O)``."""
        img, lab, wts = self.cut()
        n, o = self.input_size, self.output_size
        h = (n - o) // 2
        target = (lab[h : h + o, h : h + o] > 0).astype(np.int64)
        return img, target, wts[h : h + o, h : h + o]

    def _window(self, p: int, lo: int, hi: int, o: int) -> int:
        """Origin of an ``o``-pixel output window that holds pixel ``p``.

        Uniform among the windows that stay inside the annotated extent
        ``[lo, hi)`` (or cover all of it when it is smaller than ``o``): pixels
        outside carry no loss, so a window hanging over the edge wastes the step
        (about 40% of the pixels when half an image is annotated).
        """
        first = max(p - o + 1, min(lo, hi - o))
        last = min(p, max(hi - o, lo))
        return first + int(self.rng.integers(last - first + 1))


def preview_samples(
    image: Any,
    labels: Any,
    region: Any | None = None,
    config: TrainConfig | None = None,
    n: int = 8,
    seed: int | np.random.Generator | None = None,
    *,
    model: UNet | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` training tiles exactly as training would draw them, for looking at.

    The data are prepared as for training (normalised, the validation cells held
    out, gaps carved between touching cells, the weight map) and the tiles come
    from :class:`TileSampler`: the same crop rules and the same augmentation.
    With ``seed=None`` they are the first ``n`` tiles a :class:`Trainer` with this
    ``config`` and a batch of 1 trains on.

    Parameters
    ----------
    image, labels, region
        One image, its instance labels and annotated region, as for
        :func:`~napari_unet.training.prepare_training_data`.
    config : TrainConfig or None
        Tile size, augmentation, weight map, validation share, and seed.
    n : int
        Number of tiles.
    seed : int, numpy Generator or None
        ``None``: ``config.seed``.
    model : UNet or None
        The network to be trained: its channels, depth and stored normalisation.
        ``None``: a single-channel network of ``config.depth`` with
        ``config.normalization``, as :func:`~napari_unet.training.new_model` makes.

    Returns
    -------
    images : numpy.ndarray
        float32 ``(n, N, N)`` (``(n, C, N, N)`` for several channels), normalised
        and augmented network inputs.
    labels : numpy.ndarray
        ``(n, N, N)`` instance ids of the training target, deformed with the image.
    weights : numpy.ndarray
        float32 ``(n, N, N)`` weight maps (0 where nothing counts). The loss sees
        only the centre ``O x O`` window of each tile (``O`` the network's output).
    """
    cfg = config or TrainConfig()
    in_channels = model.in_channels if model is not None else 1
    depth = model.depth if model is not None else cfg.depth
    norm = model_normalization(model, cfg) if model is not None else cfg.normalization
    data = prepare_planes(
        image,
        labels,
        region,
        in_channels=in_channels,
        depth=depth,
        normalization=norm,
        config=cfg,
    )
    rng = random_generator(cfg.seed if seed is None else seed)
    sampler = TileSampler(data, *tile_sizes(cfg.tile_size, depth), cfg.augment, rng)
    tiles = [sampler.cut() for _ in range(int(n))]
    images = np.stack([t[0] for t in tiles]).astype(np.float32)
    if in_channels == 1:
        images = images[:, 0]
    return (
        images,
        np.stack([t[1] for t in tiles]),
        np.stack([t[2] for t in tiles]).astype(np.float32),
    )
