"""The real-image failure modes of the generator (issue 25): off by default, each as described."""

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet import NapariUnetError
from napari_unet.synthetic import SyntheticConfig

NEW = ("mitotic", "specks", "high_offset")


@pytest.mark.parametrize(
    ("kwargs", "digest"),
    [
        ({}, "647fcd929913fcdd"),
        ({"dtype": "uint8"}, "fbaf0a143ebcf2ad"),
        ({"style": "brightfield"}, "39f6d7dc93e6ca9f"),
        ({"debris": 2.0, "dim": 0.3}, "9c0f7ef6112ab56e"),
    ],
)
def test_off_by_default_and_the_arrays_of_version_2_unchanged(kwargs, digest):
    """Digests of the arrays drawn before the modes existed (commit 25f4122)."""
    image, labels = SyntheticConfig(shape=(96, 128), **kwargs).generate(seed=[25, 1])
    assert hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()[:16] == digest


def test_records_without_the_modes_are_unchanged_and_with_them_round_trip():
    plain = SyntheticConfig().to_dict()
    assert not set(NEW) & set(plain)  # the bundled model's recorded settings still match
    config = SyntheticConfig(mitotic=0.1, specks=2.0, high_offset=0.5)
    data = json.loads(json.dumps(config.to_dict()))
    assert {k: data[k] for k in NEW} == {"mitotic": 0.1, "specks": 2.0, "high_offset": 0.5}
    assert SyntheticConfig.from_dict(data) == config
    assert SyntheticConfig.from_dict(plain) == SyntheticConfig()


@pytest.mark.parametrize(
    "kwargs", [{"mitotic": 1.5}, {"specks": -1.0}, {"specks": 11.0}, {"high_offset": True}]
)
def test_bad_values_are_refused(kwargs):
    with pytest.raises(NapariUnetError):
        SyntheticConfig(**kwargs)


def _pair(seed, **kwargs):
    """The same scene without and with the modes among ``kwargs``."""
    base = {"shape": (192, 192), "diameter": (18.0, 28.0), "touching": 0.2, "debris": 0.0}
    base.update({k: v for k, v in kwargs.items() if k not in NEW})
    off = SyntheticConfig(**base).generate(seed=seed)
    on = SyntheticConfig(**base, **{k: v for k, v in kwargs.items() if k in NEW}).generate(seed)
    return off, on


def test_mitotic_nuclei_are_bright_grainy_and_one_object_each():
    bright_cv, other_cv, ratios = [], [], []
    for s in range(3):
        (img0, lab0), (img1, lab1) = _pair([25, 2, s], mitotic=0.5)
        assert np.array_equal(lab0, lab1)  # the same objects, each still one label
        ids = np.arange(1, lab1.max() + 1)
        bg = np.median(img1[lab1 == 0])
        before = np.asarray(ndi.mean(img0.astype(float), lab0, ids)) - np.median(img0[lab0 == 0])
        after = np.asarray(ndi.mean(img1.astype(float), lab1, ids)) - bg
        ratio = after / np.maximum(before, 1e-9)
        ratios.append(ratio)
        changed = ratio > 1.8  # redrawn 2.5-6x brighter (the blur spreads a little out)
        inner = ndi.binary_erosion(lab1 > 0, iterations=2) * lab1  # away from the edge
        sd = np.asarray(ndi.standard_deviation(img1.astype(float), inner, ids))
        mean = np.asarray(ndi.mean(img1.astype(float), inner, ids)) - bg
        cv = sd / np.maximum(mean, 1e-9)
        bright_cv += list(cv[changed])
        other_cv += list(cv[~changed])
    ratios = np.concatenate(ratios)
    share = np.mean(ratios > 1.8)
    assert 0.3 <= share <= 0.7, share  # about half of them, as asked
    assert np.median(bright_cv) > 1.5 * np.median(other_cv)  # granules and gaps


def test_specks_are_small_dim_unlabelled_and_beside_nuclei():
    for s in range(3):
        (img0, lab0), (img1, lab1) = _pair([25, 3, s], specks=4.0)
        assert np.array_equal(lab0, lab1)  # nothing labelled for them
        # the specks are the only difference before the camera: the same photon draws
        # apart from the added light, so the difference is their light plus shot noise
        extra = img1.astype(float) - img0.astype(float)
        blobs = (
            ndi.gaussian_filter(extra, 2.0)
            > 0.25
            * np.percentile(img0[lab0 > 0].astype(float) - np.median(img0[lab0 == 0]), 50)
            * 0.3
        )
        pieces, n = ndi.label(blobs)
        assert n >= 3  # about 15 drawn per image, some overlap or fall off the edge
        smooth = ndi.gaussian_filter(extra, 1.0)
        peaks = np.asarray(ndi.maximum(smooth, pieces, np.arange(1, n + 1)))
        half = smooth > peaks[np.maximum(pieces - 1, 0)] / 2  # the full width at half maximum
        areas = np.bincount(pieces[half & (pieces > 0)], minlength=n + 1)[1:]
        nucleus = np.median(np.bincount(lab0.ravel())[1:])
        assert np.median(areas) < 0.5 * nucleus  # small next to a nucleus
        # beside the nuclei: every speck lies within two nucleus diameters of one
        dist = ndi.distance_transform_edt(lab0 == 0)
        centres = ndi.center_of_mass(blobs, pieces, np.arange(1, n + 1))
        assert all(dist[int(y), int(x)] < 2 * 28 for y, x in centres)


def test_dim_specks_are_dimmer_than_nuclei():
    (img0, lab0), (img1, lab1) = _pair([25, 4, 0], specks=4.0, photons=(4000, 5000))
    extra = ndi.gaussian_filter(img1.astype(float) - img0.astype(float), 1.5)
    signal = np.median(img0[lab0 > 0].astype(float)) - np.median(img0[lab0 == 0])
    assert extra.max() > 0.05 * signal  # they are drawn
    assert extra.max() < 0.7 * signal  # at most half the typical brightness, then blurred


def test_high_offset_and_12_bit_ranges():
    kinds = set()
    for s in range(8):
        (img0, lab0), (img1, lab1) = _pair([25, 5, s], high_offset=1.0)
        assert np.array_equal(lab0, lab1) and img1.dtype == np.uint16
        bg = np.median(img1[lab1 == 0])
        signal = np.median(img1[lab1 > 0].astype(float)) - bg
        if img1.max() <= 4095:
            kinds.add("12-bit")
            assert 50 <= bg <= 1600 and 100 <= signal <= 1600, (bg, signal)
        else:
            kinds.add("offset")
            assert 0.3 * 65535 - 100 <= bg <= 0.6 * 65535 + 100, bg
            assert 200 <= signal <= 3200, signal  # a few hundred to a few thousand counts
        # the image is the same picture: it correlates with the plain one
        assert np.corrcoef(img0.ravel(), img1.ravel())[0, 1] > 0.9
    assert kinds == {"12-bit", "offset"}


def test_high_offset_leaves_8_bit_images_alone():
    (img0, _), (img1, _) = _pair([25, 6, 0], high_offset=1.0, dtype="uint8")
    assert img1.dtype == np.uint8 and np.array_equal(img0, img1)
