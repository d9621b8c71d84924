import json

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from augment_steps import (
    random_brightness,
    random_contrast,
    random_flip,
    random_gamma,
    random_noise,
    random_rot90,
    random_rotate,
    random_shift,
)
from napari_unet.augment import (
    AugmentConfig,
    augment_sample,
    elastic_deform,
    upsample_displacement,
)
from napari_unet.augment import warping as aug
from napari_unet.errors import NapariUnetError

HUGE = [0, 7, 2**40, 2**62 + 3]
NO_GRAY = dict(contrast=0.0, brightness=0.0, gamma=0.0, noise=0.0)


def smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 3).astype(np.float32)


def square_sample(n=64, lo=20, hi=44, label=2**40):
    image = np.zeros((n, n), np.float32)
    image[lo:hi, lo:hi] = 1.0
    labels = (image > 0).astype(np.int64) * label
    return image, labels


def geometric_steps():
    """Each geometric step as f(image, labels, weights, seed) -> (image, labels, weights)."""

    def pipeline(cfg):
        return lambda i, lab, w, s: augment_sample(i, lab, w, config=cfg, rng=s)

    return {
        "elastic": lambda i, lab, w, s: elastic_deform(i, lab, weights=w, seed=s, order=1),
        "flip": lambda i, lab, w, s: random_flip(i, lab, weights=w, seed=s),
        "rot90": lambda i, lab, w, s: random_rot90(i, lab, weights=w, seed=s),
        "rotate": lambda i, lab, w, s: random_rotate(i, lab, weights=w, seed=s, order=1),
        "shift": lambda i, lab, w, s: random_shift(i, lab, weights=w, seed=s, order=1),
        "pipeline": pipeline(AugmentConfig(shift=10.0, order=1, **NO_GRAY)),
    }


# ---------------------------------------------------------------------------- label safety


@pytest.mark.parametrize(
    "dtype, ids",
    [
        (np.int64, HUGE),
        (np.uint64, [0, 5, 2**40, 2**63 + 5]),
        (np.int32, [-3, 0, 9]),
        (np.uint8, [0, 1, 255]),
        (np.bool_, [False, True]),
    ],
)
def test_labels_never_gain_ids(dtype, ids):
    rng = np.random.default_rng(1)
    labels = np.array(ids, dtype=dtype)[rng.integers(0, len(ids), (50, 60))]
    image = smooth_image((50, 60))
    for seed in range(3):
        _, out = elastic_deform(image, labels, sigma=15.0, seed=seed)
        assert out.dtype == labels.dtype
        assert set(np.unique(out)) <= set(np.unique(labels))
        _, out, _ = augment_sample(image, labels, config=AugmentConfig(shift=5.0), rng=seed)
        assert out.dtype == labels.dtype
        assert set(np.unique(out)) <= set(np.unique(labels))


def test_huge_ids_survive_exactly():
    image, labels = square_sample(label=2**62 + 3)
    _, out = elastic_deform(image, labels, seed=0)
    assert set(np.unique(out)) == {0, 2**62 + 3}
    labels_u = labels.astype(np.uint64) + np.uint64(2**63)
    _, out_u = elastic_deform(image, labels_u, seed=0)
    assert set(np.unique(out_u)) == {2**63, 2**63 + 2**62 + 3}


# ------------------------------------------------------------------ determinism and identity


def test_same_seed_same_result_and_generators_advance():
    image, labels = square_sample()
    a = elastic_deform(image, labels, weights=image, seed=42)
    b = elastic_deform(image, labels, weights=image, seed=42)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = elastic_deform(image, labels, seed=43)
    assert not np.array_equal(a[0], c[0])
    # a Generator seed is the same stream as its integer seed, and it advances
    g = np.random.default_rng(42)
    np.testing.assert_array_equal(elastic_deform(image, labels, seed=g)[0], a[0])
    assert not np.array_equal(elastic_deform(image, labels, seed=g)[0], a[0])
    s1 = augment_sample(image, labels, image, rng=5)
    s2 = augment_sample(image, labels, image, rng=5)
    for x, y in zip(s1, s2):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("order", [1, 3])
def test_sigma_zero_is_identity(order):
    image = smooth_image((3, 45, 70))
    labels = np.random.default_rng(0).integers(0, 2**40, (45, 70))
    weights = smooth_image((45, 70), seed=1)
    out, lab, wts = elastic_deform(image, labels, weights=weights, sigma=0.0, order=order)
    np.testing.assert_allclose(out, image, atol=1e-5)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_allclose(wts, weights, atol=1e-5)


def test_identity_config_returns_input():
    image, labels = square_sample()
    out, lab, wts = augment_sample(image, labels, image, config=AugmentConfig.identity(), rng=0)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(wts, image)


# ------------------------------------------------------------------------------ consistency


def test_square_moves_with_its_labels_and_weights():
    image, labels = square_sample(n=96, lo=30, hi=66)
    out, lab, wts = elastic_deform(image, labels, weights=image, sigma=10.0, seed=3, order=1)
    # the field really moved the square
    assert (lab != labels).mean() > 0.01
    # weights and image are both linear on one field: identical
    np.testing.assert_allclose(wts, out, atol=1e-6)
    # labels coincide with the bright region except along its edge
    bright = out > 0.5
    inside = lab == 2**40
    iou = (bright & inside).sum() / (bright | inside).sum()
    assert iou > 0.97
    edge = ndi.binary_dilation(bright ^ ndi.binary_erosion(bright), np.ones((3, 3)))
    assert not np.any((bright != inside) & ~edge)


@pytest.mark.parametrize("step", list(geometric_steps()))
def test_every_geometric_step_moves_all_three_alike(step):
    fn = geometric_steps()[step]
    # off-centre rectangle so flips and turns show
    image = np.zeros((64, 64), np.float32)
    image[8:30, 12:50] = 1.0
    labels = (image > 0).astype(np.uint64) * np.uint64(2**63 + 1)
    moved = 0
    for seed in range(4):
        out, lab, wts = fn(image, labels, image.copy(), seed)
        assert out.shape == lab.shape == wts.shape == image.shape
        assert set(np.unique(lab)) <= {0, 2**63 + 1}
        np.testing.assert_allclose(wts, out, atol=1e-6)
        bright, inside = out > 0.5, lab > 0
        assert (bright & inside).sum() / (bright | inside).sum() > 0.95
        moved += not np.array_equal(lab, labels)
    assert moved >= 2


def test_gray_value_steps_leave_labels_and_weights_alone():
    image, labels = square_sample()
    image = image + smooth_image(image.shape)
    weights = smooth_image(image.shape, seed=2)
    cfg = AugmentConfig(
        elastic=False, flips=False, rot90=False, rotation=0.0, contrast=0.5, brightness=0.5,
        gamma=0.5, noise=0.1,
    )  # fmt: skip
    out, lab, wts = augment_sample(image, labels, weights, config=cfg, rng=1)
    assert not np.allclose(out, image, atol=1e-3)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(wts, weights)


def test_switching_a_step_off_keeps_the_other_draws():
    image, labels = square_sample()
    a = augment_sample(image, labels, config=AugmentConfig(), rng=9)
    b = augment_sample(image, labels, config=AugmentConfig(noise=0.0, gamma=0.0), rng=9)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], b[0])


# --------------------------------------------------------------------------------- borders


def test_borders_are_mirrored_not_zero_filled():
    const = np.full((40, 50), 5.0, np.float32)
    for seed in range(3):
        out, _ = elastic_deform(const, None, sigma=30.0, seed=seed)
        np.testing.assert_allclose(out, 5.0, atol=1e-4)
        out, _ = random_rotate(const, max_angle=45.0, seed=seed)
        np.testing.assert_allclose(out, 5.0, atol=1e-4)


def test_mirroring_is_numpy_reflect():
    image = smooth_image((30, 40))
    labels = np.arange(30 * 40).reshape(30, 40)
    mat, t = aug.affine(30, 40, shift=(0.0, 3.0))
    out, lab, _ = aug.warp(image, labels, None, mat=mat, t=t, coarse=None, order=3)
    expected = np.pad(image, ((0, 0), (3, 0)), mode="reflect")[:, :40]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(lab, np.pad(labels, ((0, 0), (3, 0)), mode="reflect")[:, :40])


def test_quarter_turn_matches_rot90():
    image = smooth_image((32, 32))
    labels = np.arange(32 * 32).reshape(32, 32)
    mat, t = aug.affine(32, 32, angle=90.0)
    out, lab, _ = aug.warp(image, labels, None, mat=mat, t=t, coarse=None, order=3)
    np.testing.assert_allclose(out, np.rot90(image), atol=1e-5)
    np.testing.assert_array_equal(lab, np.rot90(labels))


# ---------------------------------------------------------------------------- multichannel


def test_channels_share_one_field():
    base = smooth_image((48, 56))
    stack = np.stack([base, 2 * base + 1, -base])
    out, _ = elastic_deform(stack, None, seed=7)
    one, _ = elastic_deform(base, None, seed=7)
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[0], one, atol=1e-5)
    np.testing.assert_allclose(out[1], 2 * one + 1, atol=1e-4)
    np.testing.assert_allclose(out[2], -one, atol=1e-5)


# ------------------------------------------------------------------------- elastic field


def test_field_passes_through_the_drawn_vectors():
    coarse = np.random.default_rng(0).normal(0, 10, (2, 3, 3))
    field = upsample_displacement(coarse, (101, 61))
    np.testing.assert_allclose(field[:, ::50, ::30], coarse, atol=1e-9)


def test_field_is_scipys_bicubic_spline():
    coarse = np.random.default_rng(1).normal(0, 10, (2, 4, 3))
    h, w = 37, 52
    field = upsample_displacement(coarse, (h, w))
    yy, xx = np.meshgrid(np.linspace(0, 3, h), np.linspace(0, 2, w), indexing="ij")
    for k in range(2):
        ref = ndi.map_coordinates(coarse[k], [yy, xx], order=3, mode="mirror")
        np.testing.assert_allclose(field[k], ref, atol=1e-9)
    # smooth between nodes, not piecewise linear
    assert np.abs(np.diff(field[0], 2, axis=0)).max() > 1e-4


@pytest.mark.parametrize("order, tol", [(1, 1e-3), (3, 0.1)])
def test_deformation_follows_the_documented_field(order, tol):
    h, w, sigma, seed = 70, 90, 4.0, 11
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out, _ = elastic_deform(np.stack([yy, xx]), None, sigma=sigma, seed=seed, order=order)
    coarse = np.random.default_rng(seed).normal(0.0, 1.0, (2, 3, 3)) * sigma
    src = np.mgrid[0:h, 0:w] + upsample_displacement(coarse, (h, w))
    # ramps are reproduced wherever the source lies inside the image
    inside = (src[0] > 2) & (src[0] < h - 3) & (src[1] > 2) & (src[1] < w - 3)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(out[:, inside], src[:, inside], atol=tol)


# ---------------------------------------------------------------------- exact and gray steps


def test_flip_and_rot90_are_exact_permutations():
    image = smooth_image((24, 24))
    labels = np.arange(24 * 24).reshape(24, 24)
    seen = set()
    for seed in range(12):
        out, lab = random_rot90(image, labels, seed=seed)
        k = next(k for k in range(4) if np.array_equal(lab, np.rot90(labels, k)))
        np.testing.assert_array_equal(out, np.rot90(image, k))
        seen.add(k)
        out, lab = random_flip(image, labels, seed=seed)
        assert np.array_equal(np.sort(lab, None), np.sort(labels, None))
    assert seen == {0, 1, 2, 3}


def test_non_square_samples_keep_their_shape():
    image = smooth_image((2, 20, 31))
    labels = np.zeros((20, 31), np.int16)
    for seed in range(8):
        out, lab = random_rot90(image, labels, seed=seed)
        assert out.shape == image.shape and lab.shape == labels.shape
        out, lab, _ = augment_sample(image, labels, rng=seed)
        assert out.shape == image.shape and lab.shape == labels.shape


def test_gray_value_steps():
    image = smooth_image((2, 40, 40)) * 1000 + 200
    for seed in range(3):
        g = random_gamma(image, amount=0.5, seed=seed)
        np.testing.assert_allclose(g.min(axis=(1, 2)), image.min(axis=(1, 2)), rtol=1e-5)
        np.testing.assert_allclose(g.max(axis=(1, 2)), image.max(axis=(1, 2)), rtol=1e-5)
        c = random_contrast(image, amount=0.5, seed=seed)
        np.testing.assert_allclose(c.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=1e-4)
        b = random_brightness(image, amount=0.5, seed=seed)
        d = (b - image).reshape(2, -1)
        np.testing.assert_allclose(d, d[:, :1] * np.ones_like(d), atol=1e-3)
        # relative to the channel's spread: the same change on any intensity scale
        n1 = random_noise(image, amount=0.5, seed=seed)
        n2 = random_noise(image / 1000, amount=0.5, seed=seed)
        np.testing.assert_allclose(n1 / 1000, n2, atol=1e-4)
    assert not np.allclose(random_noise(image, amount=0.5, seed=0), image)
    np.testing.assert_allclose(random_gamma(image, amount=0.0, seed=0), image, rtol=1e-6)


# ------------------------------------------------------------------------ config and errors


def test_config_json_round_trip():
    cfg = AugmentConfig(sigma=7.5, grid_points=4, rot90=False, noise=0.0, order=1)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(data) == cfg
    assert AugmentConfig.from_dict(None) == AugmentConfig()
    assert AugmentConfig.from_dict({"sigma": 3}) == AugmentConfig(sigma=3.0)
    # numpy scalars from a GUI spin box still give plain JSON
    json.dumps(AugmentConfig(grid_points=np.int64(4), sigma=np.float32(2.5)).to_dict())
    d = AugmentConfig().to_dict()
    assert (d["elastic"], d["grid_points"], d["sigma"]) == (True, 3, 10.0)


@pytest.mark.parametrize(
    "data",
    [{"sigmaa": 1.0}, {"sigma": -1.0}, {"grid_points": 1}, {"order": 2}, {"elastic": "yes"},
     {"grid_points": 2.5}, {"rotation": "lots"}],
)  # fmt: skip
def test_config_rejects_bad_settings(data):
    with pytest.raises(NapariUnetError):
        AugmentConfig.from_dict(data)


def test_user_errors_are_plain():
    image = np.zeros((10, 12), np.float32)
    with pytest.raises(NapariUnetError, match="spatial shape"):
        elastic_deform(image, np.zeros((10, 11), int))
    with pytest.raises(NapariUnetError, match="integer or bool"):
        elastic_deform(image, np.zeros((10, 12), float))
    with pytest.raises(NapariUnetError, match="order"):
        elastic_deform(image, order=2)
    with pytest.raises(NapariUnetError, match="seed"):
        elastic_deform(image, seed=1.5)
    with pytest.raises(NapariUnetError, match="image"):
        elastic_deform(np.zeros((2, 3, 4, 5)))


# ------------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    channels=st.sampled_from([None, 1, 3]),
    sigma=st.floats(0.0, 25.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_random_shapes(h, w, channels, sigma, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (channels, h, w)
    image = rng.normal(size=shape).astype(np.float32)
    labels = np.array(HUGE, np.int64)[rng.integers(0, len(HUGE), (h, w))]
    weights = rng.random((h, w)).astype(np.float32) + 1.0
    out, lab, wts = elastic_deform(image, labels, weights=weights, sigma=sigma, seed=seed)
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert lab.shape == (h, w) and lab.dtype == np.int64
    assert set(np.unique(lab)) <= set(np.unique(labels))
    # linear interpolation cannot leave the range of the weights
    assert wts.min() >= weights.min() - 1e-5 and wts.max() <= weights.max() + 1e-5
    out, lab, wts = augment_sample(image, labels, weights, rng=seed)
    assert out.shape == shape and lab.shape == (h, w) and wts.shape == (h, w)
    assert set(np.unique(lab)) <= set(np.unique(labels))
    assert np.isfinite(out).all()
