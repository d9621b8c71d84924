import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from napari_unet import weightmap
from napari_unet.errors import NapariUnetError
from napari_unet.weightmap import carve_gaps, touching_cells, unet_weight_map

TOL = 1e-3  # the promised absolute accuracy


# --- references -------------------------------------------------------------------------


def reference_weight_map(labels, w0=10.0, sigma=5.0, class_weights=None, mask=None):
    """The definition, by brute force: one full distance transform per cell."""
    labels = np.asarray(labels)
    planes = labels.reshape((-1, *labels.shape[-2:]))
    annotated = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    if class_weights is None:
        n = annotated.sum()
        n_fg = (annotated & (labels != 0)).sum()
        n_bg = n - n_fg
        class_weights = (n / (2 * n_bg), n / (2 * n_fg)) if n_bg and n_fg else (1.0, 1.0)
    out = []
    for plane in planes:
        w = np.where(plane != 0, class_weights[1], class_weights[0]).astype(np.float64)
        ids = np.unique(plane)
        ids = ids[ids != 0]
        if len(ids) >= 2:
            d = np.stack([ndi.distance_transform_edt(plane != i) for i in ids])
            d.sort(axis=0)
            border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
            w += np.where(plane == 0, border, 0.0)
        out.append(w)
    return np.stack(out).reshape(labels.shape) * annotated


def reference_touching(labels):
    """Pixel loop over 4-neighbours."""
    planes = np.asarray(labels).reshape((-1, *labels.shape[-2:]))
    out = np.zeros(planes.shape, bool)
    for p, plane in enumerate(planes):
        h, w = plane.shape
        for i in range(h):
            for j in range(w):
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    a, b = i + di, j + dj
                    if 0 <= a < h and 0 <= b < w:
                        v, u = plane[i, j], plane[a, b]
                        if v != 0 and u != 0 and v != u:
                            out[p, i, j] = True
    return out.reshape(labels.shape)


# --- label images -----------------------------------------------------------------------


def crowded_cells(shape=(96, 96), n=18, seed=0):
    """Overlapping disks painted in turn: a crowd of touching cells, some cut by the border."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(5, 12)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def two_squares_touching():
    labels = np.zeros((12, 14), np.int32)
    labels[3:9, 2:7] = 1
    labels[3:9, 7:12] = 2
    return labels


def single_cell():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:25, 12:30] = 7
    return labels


def border_cells():
    labels = np.zeros((50, 60), np.int16)
    labels[:10, :] = 3  # a cell along the whole top edge
    labels[20:50, 0:8] = 9  # one on the left edge down to the corner
    labels[30:, 40:] = 5
    labels[12, 20:30] = 1  # a one-pixel-thick cell between them
    return labels


def gapped_cells():
    # Thin background gaps of one and two pixels, where the border term peaks.
    labels = np.zeros((30, 31), np.int32)
    labels[5:25, 2:10] = 10
    labels[5:25, 11:20] = 20
    labels[5:25, 22:29] = 30
    return labels


def huge_ids(dtype):
    labels = crowded_cells((64, 64), n=12, seed=1)
    out = np.where(labels > 0, labels.astype(np.uint64) + np.uint64(2**40), 0)
    return out.astype(dtype)


IMAGES = {
    "crowded": crowded_cells(),
    "crowded-2": crowded_cells((80, 112), n=30, seed=7),
    "touching-squares": two_squares_touching(),
    "gaps": gapped_cells(),
    "single": single_cell(),
    "empty": np.zeros((20, 30), np.int32),
    "all-one-cell": np.full((10, 10), 4, np.int32),
    "border": border_cells(),
    "huge-uint64": huge_ids(np.uint64),
    "huge-int64": huge_ids(np.int64),
    "non-consecutive": (crowded_cells(seed=3) * 97 + 5) * (crowded_cells(seed=3) > 0),
}


# --- the weight map -----------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("w0,sigma", [(10.0, 5.0), (1e4, 2.0), (3.0, 12.0)])
def test_matches_brute_force(name, w0, sigma):
    labels = IMAGES[name]
    got = unet_weight_map(labels, w0=w0, sigma=sigma)
    assert got.dtype == np.float32 and got.shape == labels.shape
    np.testing.assert_allclose(got, reference_weight_map(labels, w0, sigma), rtol=0, atol=TOL)


def test_border_term_is_large_in_thin_gaps():
    # Guards against a reference and an implementation that agree on a missing term.
    w = unet_weight_map(gapped_cells(), w0=10.0, sigma=5.0, class_weights=(1.0, 1.0))
    # Gap pixel between cells 10 and 20: d1 = d2 = 1.
    assert w[15, 10] == pytest.approx(1 + 10 * np.exp(-4 / 50), abs=1e-5)
    assert w[0, 0] < w[15, 10]


def test_given_class_weights():
    labels = IMAGES["crowded"]
    got = unet_weight_map(labels, w0=0.0, class_weights=(0.25, 3.0))
    assert np.array_equal(got, np.where(labels > 0, 3.0, 0.25).astype(np.float32))
    np.testing.assert_allclose(
        unet_weight_map(labels, class_weights=(0.5, 2.0)),
        reference_weight_map(labels, class_weights=(0.5, 2.0)),
        atol=TOL,
    )


def test_balanced_class_weights_average_to_one():
    labels = IMAGES["crowded-2"]
    w = unet_weight_map(labels, w0=0.0)
    assert w.mean(dtype=np.float64) == pytest.approx(1.0, abs=1e-6)
    # each class carries half of the total weight
    assert w[labels > 0].sum(dtype=np.float64) == pytest.approx(w.size / 2, rel=1e-6)


@pytest.mark.parametrize("labels", [np.zeros((8, 8), int), np.full((8, 8), 2)])
def test_absent_class_gives_the_present_one_weight_one(labels):
    assert np.array_equal(unet_weight_map(labels, w0=5.0), np.ones((8, 8), np.float32))


def test_stack_is_handled_plane_by_plane():
    stack = np.stack([crowded_cells(seed=s) for s in range(3)])
    stack[1] = 0  # an empty plane: no border term, class weights still from the stack
    stack[2, 40:60, 40:60] = 99  # a cell whose id also appears nowhere else
    got = unet_weight_map(stack)
    np.testing.assert_allclose(got, reference_weight_map(stack), atol=TOL)
    # distances never cross planes: each plane alone gives the same border term
    alone = unet_weight_map(stack[0], class_weights=(0.0, 0.0))
    np.testing.assert_allclose(unet_weight_map(stack, class_weights=(0, 0))[0], alone, atol=0)


@pytest.mark.parametrize("threads", [1, 3])
def test_row_bands_match_brute_force(threads, monkeypatch):
    # Large enough to be split into row bands, computed in parallel, whatever the CPUs.
    monkeypatch.setattr(weightmap, "_N_THREADS", threads)
    labels = crowded_cells((300, 200), n=60, seed=11)
    assert len(weightmap._row_bands((1, 300, 200), 14.0)) == (1 if threads == 1 else 5)
    got = unet_weight_map(labels, w0=10.0, sigma=3.0)
    np.testing.assert_allclose(got, reference_weight_map(labels, 10.0, 3.0), atol=TOL)


def test_mask_zeroes_unannotated_pixels_and_balances_the_rest():
    labels = IMAGES["crowded"]
    mask = np.zeros(labels.shape, bool)
    mask[10:70, 5:90] = True
    got = unet_weight_map(labels, mask=mask)
    np.testing.assert_allclose(got, reference_weight_map(labels, mask=mask), atol=TOL)
    assert (got[~mask] == 0).all()
    flat = unet_weight_map(labels, w0=0.0, mask=mask)
    assert flat[mask].mean(dtype=np.float64) == pytest.approx(1.0, abs=1e-6)
    assert (unet_weight_map(labels, mask=np.zeros_like(mask)) == 0).all()


def test_ids_do_not_matter():
    labels = IMAGES["crowded"]
    rng = np.random.default_rng(0)
    big = rng.permutation(labels.max()).astype(np.uint64) * np.uint64(1_000_003) + np.uint64(2**61)
    ids = np.concatenate([[np.uint64(0)], big])
    assert np.array_equal(unet_weight_map(ids[labels]), unet_weight_map(labels))
    assert np.array_equal(unet_weight_map(labels.astype(np.float64)), unet_weight_map(labels))


def test_ids_above_2_to_the_63_in_uint64():
    labels = two_squares_touching().astype(np.uint64)
    labels[labels == 2] = np.uint64(2**64 - 1)
    labels[labels == 1] = np.uint64(2**63)
    np.testing.assert_allclose(
        unet_weight_map(labels), unet_weight_map(two_squares_touching()), atol=0
    )


def test_boolean_labels_are_connected_components():
    fg = IMAGES["gaps"] > 0
    np.testing.assert_allclose(
        unet_weight_map(fg), reference_weight_map(ndi.label(fg)[0]), atol=TOL
    )
    # cells meeting at a corner are two components, as in postprocess
    corner = np.zeros((10, 10), bool)
    corner[2:5, 2:5] = corner[5:8, 5:8] = True
    assert unet_weight_map(corner, class_weights=(1, 1))[4, 5] > 1.0


def test_cut_off_holds_for_extreme_w0():
    labels = gapped_cells()
    for w0, sigma in [(1e6, 1.0), (1e6, 30.0), (1e-4, 5.0)]:
        got = unet_weight_map(labels, w0=w0, sigma=sigma)
        np.testing.assert_allclose(got, reference_weight_map(labels, w0, sigma), atol=TOL)


def test_input_is_not_modified():
    labels = IMAGES["crowded"].copy()
    unet_weight_map(labels)
    carve_gaps(labels)
    assert np.array_equal(labels, IMAGES["crowded"])


# Scattered pixels of a few ids: cells in several pieces, of any shape, touching or not;
# sometimes a short stack.
label_images = hnp.arrays(
    dtype=np.int64,
    shape=st.one_of(
        st.tuples(st.integers(1, 18), st.integers(1, 18)),
        st.tuples(st.integers(1, 3), st.integers(1, 10), st.integers(1, 10)),
    ),
    elements=st.sampled_from([0, 0, 0, 1, 2, 3, 5, 2**40 + 1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=label_images,
    w0=st.floats(0.0, 1e3),
    sigma=st.floats(0.3, 15.0),
)
def test_property_matches_brute_force(labels, w0, sigma):
    np.testing.assert_allclose(
        unet_weight_map(labels, w0=w0, sigma=sigma),
        reference_weight_map(labels, w0, sigma),
        rtol=0,
        atol=TOL,
    )


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels,kwargs,match",
    [
        (np.zeros(5, int), {}, "dimension"),
        (np.zeros((2, 2, 4, 4), int), {}, "dimension"),
        (np.array([[0.0, 1.5]]), {}, "whole numbers"),
        (np.array([[0.0, np.nan]]), {}, "whole numbers"),
        (np.array([[0, -1]]), {}, "negative"),
        (np.array([["a", "b"]]), {}, "integer"),
        (np.zeros((4, 4), int), {"sigma": 0.0}, "sigma"),
        (np.zeros((4, 4), int), {"sigma": -2.0}, "sigma"),
        (np.zeros((4, 4), int), {"sigma": float("nan")}, "sigma"),
        (np.zeros((4, 4), int), {"sigma": "5"}, "sigma"),
        (np.zeros((4, 4), int), {"w0": -1.0}, "w0"),
        (np.zeros((4, 4), int), {"mask": np.ones((4, 5), bool)}, "mask"),
        (np.zeros((4, 4), int), {"class_weights": (1.0,)}, "class_weights"),
        (np.zeros((4, 4), int), {"class_weights": (1.0, -2.0)}, "class_weights"),
    ],
)
def test_bad_input_is_one_plain_sentence(labels, kwargs, match):
    with pytest.raises(NapariUnetError, match=match) as info:
        unet_weight_map(labels, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("func", [touching_cells, carve_gaps])
def test_contact_helpers_validate_labels(func):
    with pytest.raises(NapariUnetError, match="negative"):
        func(np.array([[0, -3]]))


# --- touching cells and gaps --------------------------------------------------------------


def test_touching_cells_marks_both_sides_of_an_edge_contact():
    touching = touching_cells(two_squares_touching())
    expected = np.zeros((12, 14), bool)
    expected[3:9, 6:8] = True
    assert np.array_equal(touching, expected)


def test_corner_contact_and_gaps_are_not_touching():
    labels = np.zeros((6, 6), int)
    labels[0:3, 0:3] = 1
    labels[3:6, 3:6] = 2
    assert not touching_cells(labels).any()
    assert not touching_cells(gapped_cells()).any()
    assert not touching_cells(IMAGES["crowded"] > 0).any()  # components never touch


@pytest.mark.parametrize("name", ["crowded", "crowded-2", "border", "huge-uint64"])
def test_touching_cells_matches_pixel_loop(name):
    labels = IMAGES[name]
    assert np.array_equal(touching_cells(labels), reference_touching(labels))
    stack = np.stack([labels, np.zeros_like(labels), labels])
    assert np.array_equal(touching_cells(stack), reference_touching(stack))


def check_carved(labels, carved):
    assert carved.dtype == labels.dtype and carved.shape == labels.shape
    assert not touching_cells(carved).any()
    kept = carved != 0
    assert np.array_equal(carved[kept], labels[kept])  # ids kept, nothing relabelled
    removed = (labels != 0) & ~kept
    assert not (removed & ~touching_cells(labels)).any()  # only contact pixels go


def test_carve_gaps_cuts_one_line_from_the_larger_cell():
    labels = np.zeros((12, 14), np.int32)
    labels[3:9, 2:7] = 1  # 30 pixels
    labels[3:9, 7:13] = 2  # 36 pixels: gives up its contact column
    carved = carve_gaps(labels)
    check_carved(labels, carved)
    expected = labels.copy()
    expected[3:9, 7] = 0
    assert np.array_equal(carved, expected)


def test_carve_gaps_spares_a_small_cell_inside_a_large_one():
    labels = np.full((9, 9), 5, np.int32)
    labels[4, 4] = 8  # a one-pixel cell: the large cell opens a ring around it
    carved = carve_gaps(labels)
    check_carved(labels, carved)
    assert carved[4, 4] == 8
    assert (carved == 0).sum() == 4  # its four edge neighbours, nothing more


@pytest.mark.parametrize("name", list(IMAGES))
def test_carve_gaps_on_test_images(name):
    labels = IMAGES[name]
    check_carved(labels, carve_gaps(labels))
    stack = np.stack([labels, labels])
    check_carved(stack, carve_gaps(stack))


@settings(max_examples=60, deadline=None)
@given(labels=label_images)
def test_property_carve_gaps(labels):
    carved = carve_gaps(labels)
    check_carved(labels, carved)
    assert np.array_equal(touching_cells(labels), reference_touching(labels))


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 4, 4), (2, 0, 3)])
def test_empty_images(shape):
    labels = np.zeros(shape, np.int32)
    assert unet_weight_map(labels).shape == shape
    assert touching_cells(labels).shape == shape
    assert carve_gaps(labels).shape == shape


def test_carve_gaps_tie_goes_to_the_higher_id_even_above_2_to_the_63():
    labels = np.zeros((4, 6), np.uint64)
    labels[:, 1:3] = 2**63 + 5  # same area: the higher id gives up its contact column
    labels[:, 3:5] = 7
    carved = carve_gaps(labels)
    check_carved(labels, carved)
    assert (carved[:, 2] == 0).all() and (carved[:, 3] == 7).all()
