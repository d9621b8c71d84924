"""segment: prediction with rescaling, and the diameter-to-factor rule."""

import math

import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


class _Blobs(torch.nn.Module):
    """A stand-in network: foreground where the (normalised) image is bright."""

    in_channels, n_classes, depth, halo = 1, 2, 1, 0

    def __init__(self):
        super().__init__()
        self.metadata = {"object_diameter": {"min": 10, "max": 20}}
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        fg = (x > 0.5).float() * 10 - 5
        return torch.cat([-fg, fg], dim=1)


def test_segment_rescales_and_returns_the_image_shape(monkeypatch):
    from napari_unet import segment as seg

    image = np.zeros((50, 70), np.float32)
    image[_disc((50, 70), 25, 20, 9)] = 1
    image[_disc((50, 70), 25, 50, 9)] = 1
    shapes = []

    def fake_predict(model, img, **kwargs):
        shapes.append(img.shape)
        x = torch.from_numpy(np.asarray(img, np.float32))[None, None]
        x = x / max(float(x.max()), 1e-6)
        p = torch.softmax(model(x), dim=1)[0].numpy()
        yield
        return p

    monkeypatch.setattr("napari_unet.planes.iter_predict_tiled", fake_predict)
    out = seg.segment(_Blobs(), image, rescale=0.5, min_size=16)
    assert shapes == [(25, 35)]
    assert out.labels.shape == image.shape and out.probabilities.shape == (2, 50, 70)
    assert out.labels.max() == 2 and out.labels.dtype == np.int32
    assert out.rescale == 0.5
    same = seg.segment(_Blobs(), image, rescale=1.0)
    assert shapes[-1] == (50, 70) and same.labels.max() == 2


def test_resize_spatial_keeps_leading_axes_and_label_ids():
    from napari_unet.segment import resize_spatial

    labels = np.zeros((2, 8, 8), np.int32)
    labels[:, 2:6, 2:6] = 7
    big = resize_spatial(labels, (16, 16), labels=True)
    assert big.shape == (2, 16, 16) and set(np.unique(big)) == {0, 7}
    small = resize_spatial(np.ones((3, 10, 10)), (5, 5))
    assert small.shape == (3, 5, 5) and small.dtype == np.float32
    np.testing.assert_allclose(small, 1, rtol=1e-5)


def test_rescale_for_diameter():
    from napari_unet.segment import rescale_for_diameter

    model = _Blobs()
    assert rescale_for_diameter(model, 15) == 1.0  # inside the trained range
    # large objects are shrunk to the middle of the range, sqrt(10 * 20) px
    assert rescale_for_diameter(model, 40) == pytest.approx(math.sqrt(200) / 40)
    assert rescale_for_diameter(model, 320) == pytest.approx(1 / 16)  # the most it shrinks
    # small objects are enlarged to 1.5x the smallest (15 px), not to the edge of the range
    assert rescale_for_diameter(model, 5) == pytest.approx(3.0)
    assert rescale_for_diameter(model, None) == 1.0
    with pytest.raises(NapariUnetError, match="positive"):
        rescale_for_diameter(model, -3)
    with pytest.raises(NapariUnetError, match="from 4 to 320 px"):
        rescale_for_diameter(model, 1000)  # beyond what a 1/16 resize can bring in
    # 1 px "objects" are noise: refused with the model's range, not enlarged 10x
    with pytest.raises(NapariUnetError, match="10-20 px this model knows.*from 4 to 320"):
        rescale_for_diameter(model, 1)
    assert rescale_for_diameter(model, 4) == pytest.approx(3.75)  # the smallest it enlarges
    model.metadata = {}
    with pytest.raises(NapariUnetError, match="rescale factor instead"):
        rescale_for_diameter(model, 40)  # a model that does not say: no silent 1.0


def test_describe_resize_says_the_cost():
    from napari_unet.segment import describe_resize

    text = describe_resize((512, 512), 4.0)
    assert "2048x2048 px" in text and "16x the work" in text
    assert "0.25x the work" in describe_resize((3, 512, 512), 0.5)


def test_segment_refuses_absurd_rescale():
    from napari_unet.segment import segment

    with pytest.raises(NapariUnetError):
        segment(_Blobs(), np.zeros((8, 8)), rescale=0)


def test_segment_uses_the_post_processing_the_model_recommends():
    """metadata["postprocess"] (min_confidence) applies unless the caller says otherwise."""
    from napari_unet.segment import recommended_postprocess, segment
    from threshold_net import threshold_unet

    image = np.zeros((96, 96), np.float32)
    image[20:40, 20:40] = 1.0  # bright: sure
    image[60:80, 60:80] = 0.53  # just above the level: p about 0.65, unsure
    model = threshold_unet(gain=20.0, level=0.5)
    plain = segment(model, image, rescale=1.0, device="cpu")
    assert plain.labels.max() == 2
    model.metadata["postprocess"] = {"min_confidence": 0.7, "unknown": 3, "h": "x"}
    assert recommended_postprocess(model) == {"min_confidence": 0.7}
    sure = segment(model, image, rescale=1.0, device="cpu")
    assert sure.labels.max() == 1 and sure.labels[30, 30] == 1
    overridden = segment(model, image, rescale=1.0, device="cpu", min_confidence=0.0)
    assert overridden.labels.max() == 2
