"""The package's test tensors and cover, computed by napari-unet itself.

The test input is a valid-size crop of an image (by default the synthetic nuclei
of napari's sample data); the test output is what napari-unet's own tile
routine gives for it, so every weight format of the package is checked against
napari-unet. The cover shows the image beside the prediction.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NapariUnetError
from ..model import input_size_for_output

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["draw_cover", "halo_of", "make_test_input", "predict_package_tile"]

# The test output is kept near 128 x 128 pixels: big enough to show cells, small enough
# that bioimageio's model test stays quick.
TEST_OUTPUT = 128
MAX_TEST_OUTPUT = 256


def make_test_input(model: UNet, image: np.ndarray | None) -> np.ndarray:
    """A ``(C, S, S)`` float32 input of a valid size ``S`` from ``image`` (or a synthetic one)."""
    from ..padding import mirror_pad

    depth = model.depth
    if image is None:
        from ..synthetic import make_cells

        size = input_size_for_output(TEST_OUTPUT, depth)
        # the sample-data seed: the same cells napari's File > Open Sample shows
        plane, _ = make_cells((size, size), style="fluorescence", seed=2015)
        image = np.stack([plane] * model.in_channels)
    image = np.asarray(image)
    if model.in_channels == 1 and image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != model.in_channels:
        want = "(H, W)" if model.in_channels == 1 else f"({model.in_channels}, H, W)"
        raise NapariUnetError(
            f"The test image must be a single 2D plane {want} for this model; "
            f"got an array of shape {tuple(image.shape)}."
        )
    from ..normalization import as_float_image

    if not np.all(np.isfinite(as_float_image(image))):
        raise NapariUnetError("The test image contains NaN or infinite values.")
    longest = input_size_for_output(MAX_TEST_OUTPUT, depth)
    side = min(image.shape[1], image.shape[2], longest)
    size = input_size_for_output(1, depth)
    while input_size_for_output(len_out := _out(size, depth) + 1, depth) <= side:
        size = input_size_for_output(len_out, depth)
    if min(image.shape[1:]) < size:
        # smaller than the smallest valid input: mirror it out, as predict_tiled would
        widths = [(0, 0)] + [(0, max(0, size - n)) for n in image.shape[1:]]
        image = mirror_pad(np.asarray(image, dtype=np.float32), widths)
    y0 = (image.shape[1] - size) // 2
    x0 = (image.shape[2] - size) // 2
    return np.ascontiguousarray(image[:, y0 : y0 + size, x0 : x0 + size], dtype=np.float32)


def _out(size: int, depth: int) -> int:
    from ..model import output_size

    return output_size(size, depth)


def predict_package_tile(model: UNet, raw: np.ndarray) -> np.ndarray:
    """napari-unet's probabilities for one valid-size input ``(C, S, S)``, as the package gives.

    The input is normalised with the model's normalisation (statistics over the
    whole input) and run as one tile through
    :func:`napari_unet.tiling.predict_padded`, the routine that
    :func:`napari_unet.predict_tiled` runs on every tile. The result covers the
    centre of the input, ``(K, S - 2 * context, S - 2 * context)``.
    """
    from ..tiling import TileGrid, predict_padded, resolve_normalization

    norm = resolve_normalization(model, None)
    stats = norm.statistics(raw, channel_axis=0)
    x = norm.apply(raw, stats, channel_axis=0)
    out_hw = model.output_shape(raw.shape[1:])
    grid = TileGrid(
        image_shape=out_hw, step=out_hw, input_shape=tuple(raw.shape[1:]), counts=(1, 1), halo=0
    )
    out = np.empty((model.n_classes, *out_hw), dtype=np.float32)
    device = next(model.parameters()).device
    for _ in predict_padded(model, x, grid, 1, device if device.type != "meta" else "cpu", out):
        pass
    return out


def draw_cover(raw: np.ndarray, prob: np.ndarray, path: Path) -> None:
    """Image and prediction side by side (2:1), the prediction as a green overlay."""
    import skimage.io

    c = halo_of(raw.shape[-1], prob.shape[-1])
    plane = raw[0, c : raw.shape[1] - c, c : raw.shape[2] - c].astype(np.float64)
    lo, hi = np.percentile(plane, [1, 99.8])
    gray = np.clip((plane - lo) / max(hi - lo, 1e-12), 0, 1)
    fg = 1.0 - prob[0]  # everything but the background
    left = np.stack([gray] * 3, axis=-1)
    right = left * (1 - 0.5 * fg[..., None]) + 0.5 * fg[..., None] * np.array([0.1, 1.0, 0.3])
    img = (np.concatenate([left, right], axis=1) * 255).round().astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skimage.io.imsave(str(path), img, check_contrast=False)


def halo_of(size_in: int, size_out: int) -> int:
    """Context on each side given an input and an output size."""
    return (size_in - size_out) // 2
