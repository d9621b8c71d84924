"""Images with nothing to segment: no objects and a note, never an error."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.content import nothing_to_segment
from napari_unet.normalization import Normalization
from napari_unet.segment import segment
from napari_unet.synthetic import make_cells
from threshold_net import threshold_unet


def _empty_images():
    rng = np.random.default_rng(3)
    return {
        "zeros": np.zeros((96, 96), np.uint16),
        "constant": np.full((96, 96), 1234, np.uint16),
        "constant float": np.full((96, 96), 0.25, np.float32),
        "gaussian noise": rng.normal(100, 10, (160, 160)).astype(np.float32),
        "camera noise": (rng.poisson(40, (160, 160)) + 500).astype(np.uint16),
        "8-bit noise": rng.integers(0, 256, (160, 160)).astype(np.uint8),
        "noise stack": rng.normal(0, 1, (3, 64, 64)).astype(np.float32),
    }


@pytest.mark.parametrize("name", list(_empty_images()))
def test_nothing_to_segment_gives_no_objects_and_a_note(tiny_model, name):
    image = _empty_images()[name]
    note = nothing_to_segment(image)
    assert note is not None and note.endswith("no objects.")
    assert ("constant" in note) == name.startswith(("zeros", "constant"))
    result = segment(tiny_model, image)
    assert result.labels.shape == image.shape and not result.labels.any()
    assert result.labels.dtype == np.int32
    prob = result.probabilities
    assert prob.shape == (2, *image.shape) and np.isfinite(prob).all()
    assert (prob[0] == 1).all()  # background everywhere
    assert result.notes == (note,) and result.estimate.empty


def test_noise_never_reaches_a_model_that_would_find_objects_in_it():
    """Why the check exists: the percentile stretch turns noise into "nuclei".

    The witness is a stand-in network that fires on bright pixels (a per-pixel threshold
    of the normalised image), not the bundled model: whether a trained model finds
    objects in noise changes with its training, and a better one must not fail this.
    """
    from napari_unet import labels_from_probabilities, load_bundled_model, predict_tiled

    noise = _empty_images()["gaussian noise"]
    fires = threshold_unet()
    raw = labels_from_probabilities(predict_tiled(fires, noise, device="cpu"))
    assert raw.max() > 5  # handed the noise, it finds "objects"
    assert segment(fires, noise, rescale=1.0).labels.max() == 0
    assert segment(load_bundled_model(), noise, rescale=1.0).labels.max() == 0


def test_a_single_dim_nucleus_in_noise_is_not_noise():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:512, :512]
    nucleus = ((yy - 300) ** 2 + (xx - 100) ** 2 < 100) * 10.0  # 20 px, 1 sigma of the noise
    assert nothing_to_segment(rng.normal(100, 10, (512, 512)) + nucleus) is None
    assert nothing_to_segment(rng.normal(100, 10, (512, 512))) is not None


def test_images_with_objects_are_not_noise():
    for seed, options in enumerate([{}, {"photons": (8, 12)}, {"style": "brightfield"}]):
        image, _ = make_cells((128, 128), seed=seed, **options)
        assert nothing_to_segment(image) is None, options
    # one plane with objects in a stack of noise is enough
    rng = np.random.default_rng(5)
    stack = rng.normal(0, 1, (5, 64, 64)).astype(np.float32)
    stack[0, 20:40, 20:40] += 3
    assert nothing_to_segment(stack) is None
    # a drawing without noise, and smooth texture, are structure too
    assert nothing_to_segment(np.pad(np.ones((20, 20)), 30)) is None
    assert nothing_to_segment(ndi.gaussian_filter(rng.random((64, 64)), 2)) is None


def test_an_image_the_model_finds_nothing_in_says_so(tiny_model):
    """Structure the model does not call an object: zero objects and a note."""
    image = np.zeros((64, 64), np.float32)
    image[:, 32:] = 1.0  # a step: not noise, not a nucleus
    result = segment(tiny_model, image, rescale=1.0, threshold=0.999)
    assert not result.labels.any() and "No objects found." in result.notes


def test_constant_images_normalise_without_nan():
    norm = Normalization()
    for value in (0, 7, 65535):
        image = np.full((32, 32), value, np.uint16)
        out = norm.apply(image, norm.statistics(image))
        assert np.isfinite(out).all() and (out == 0).all()
