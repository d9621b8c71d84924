import numpy as np
import pytest

from napari_unet import NapariUnetError, labels_from_probabilities


def _probs(fg):
    fg = fg.astype(np.float32)
    return np.stack([1 - fg, fg])


def test_components_become_consecutive_instances():
    fg = np.zeros((30, 30))
    fg[2:8, 2:8] = 0.9
    fg[10:20, 10:20] = 0.8
    fg[25, 25] = 0.99  # one pixel: dropped as too small
    fg[8:10, 8:10] = 0.2  # below threshold: keeps the squares apart
    labels = labels_from_probabilities(_probs(fg), min_size=4)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[2:8, 2:8] == labels[2, 2]).all()
    assert labels[25, 25] == 0


def test_diagonal_contact_keeps_objects_apart():
    fg = np.zeros((10, 10))
    fg[0:4, 0:4] = 1
    fg[4:8, 4:8] = 1
    assert labels_from_probabilities(_probs(fg), min_size=1).max() == 2


def test_stack_ids_are_unique():
    fg = np.zeros((2, 10, 10))
    fg[:, 2:6, 2:6] = 1
    labels = labels_from_probabilities(_probs(fg), min_size=1)
    assert labels.shape == (2, 10, 10)
    assert labels[0, 3, 3] == 1 and labels[1, 3, 3] == 2


def test_threshold_and_bad_input():
    fg = np.full((5, 5), 0.6)
    assert labels_from_probabilities(_probs(fg), threshold=0.7, min_size=1).max() == 0
    with pytest.raises(NapariUnetError):
        labels_from_probabilities(_probs(fg), threshold=1.5)
    with pytest.raises(NapariUnetError):
        labels_from_probabilities(np.zeros((5, 5)))


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_watershed_splits_touching_nuclei_joined_by_a_bridge():
    fg = _disc((40, 60), 20, 18, 10) | _disc((40, 60), 20, 36, 10)  # overlap: a wide neck
    assert labels_from_probabilities(_probs(fg), method="components").max() == 1
    labels = labels_from_probabilities(_probs(fg))
    assert labels.max() == 2
    assert labels[20, 12] != labels[20, 46]
    assert (labels > 0).sum() == fg.sum()  # splitting loses no pixel


def test_watershed_keeps_a_round_or_elongated_cell_whole():
    yy, xx = np.mgrid[:60, :60]
    ellipse = ((yy - 30) / 8.0) ** 2 + ((xx - 30) / 22.0) ** 2 <= 1
    assert labels_from_probabilities(_probs(ellipse)).max() == 1
    assert labels_from_probabilities(_probs(_disc((60, 60), 30, 30, 15))).max() == 1


def test_larger_h_splits_less():
    fg = _disc((40, 60), 20, 18, 10) | _disc((40, 60), 20, 34, 10)  # deeply overlapping
    assert labels_from_probabilities(_probs(fg), h=0.5).max() == 2
    assert labels_from_probabilities(_probs(fg), h=8.0).max() == 1


def test_thin_objects_without_a_peak_are_kept():
    fg = np.zeros((20, 40), bool)
    fg[5, 2:38] = True  # one pixel wide: its distance transform is flat
    labels = labels_from_probabilities(_probs(fg), min_size=1, smoothing=0.0)
    assert labels.max() == 1 and (labels > 0).sum() == fg.sum()


def test_bad_postprocessing_options():
    fg = np.full((5, 5), 0.6)
    for bad in (dict(method="magic"), dict(h=0), dict(smoothing=-1)):
        with pytest.raises(NapariUnetError):
            labels_from_probabilities(_probs(fg), **bad)


def _two_cores_joined_by_a_wide_neck():
    """Two discs (radius 12) whose cores are confident, joined by a neck as wide."""
    yy, xx = np.mgrid[:64, :96]
    fg = np.zeros((64, 96), np.float32)
    a = np.hypot(yy - 32, xx - 30) < 12
    b = np.hypot(yy - 32, xx - 66) < 12
    neck = (np.abs(yy - 32) < 12) & (xx > 30) & (xx < 66)  # a stadium: one ridge
    fg[a | b | neck] = 0.7  # the network is unsure in the neck...
    fg[np.hypot(yy - 32, xx - 30) < 9] = 0.97  # ...and sure in the cores
    fg[np.hypot(yy - 32, xx - 66) < 9] = 0.97
    return np.stack([1 - fg, fg]), a, b


def test_seeds_from_confident_cores_split_what_the_distance_cannot():
    prob, a, b = _two_cores_joined_by_a_wide_neck()
    assert labels_from_probabilities(prob).max() == 1  # one blob by its distance transform
    labels = labels_from_probabilities(prob, seed_threshold=0.9)
    assert labels.max() == 2
    # each object holds one disc, the whole foreground is kept
    assert len(np.unique(labels[a])) == 1 and len(np.unique(labels[b])) == 1
    assert np.unique(labels[a]) != np.unique(labels[b])
    assert np.array_equal(labels > 0, prob[1] > 0.5)


def test_seed_threshold_equal_to_threshold_is_the_default_and_below_is_refused():
    prob, _, _ = _two_cores_joined_by_a_wide_neck()
    np.testing.assert_array_equal(
        labels_from_probabilities(prob), labels_from_probabilities(prob, seed_threshold=0.5)
    )
    with pytest.raises(NapariUnetError, match="seed threshold"):
        labels_from_probabilities(prob, seed_threshold=0.3)


def test_min_confidence_drops_unsure_objects_and_refuses_nonsense():
    fg = np.zeros((40, 80), np.float32)
    fg[5:20, 5:20] = 0.95
    fg[5:20, 40:55] = 0.6
    prob = np.stack([1 - fg, fg])
    assert labels_from_probabilities(prob).max() == 2
    kept = labels_from_probabilities(prob, min_confidence=0.7)
    assert kept.max() == 1 and kept[10, 10] == 1 and kept[10, 45] == 0
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(NapariUnetError, match="min_confidence"):
            labels_from_probabilities(prob, min_confidence=bad)


def _blobby_probabilities(seed: int = 0, side: int = 96) -> np.ndarray:
    """Touching blobs of graded probability: thresholds, heights and seeds all matter."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    spots = np.zeros((side, side), np.float32)
    spots[tuple(rng.integers(4, side - 4, size=(2, 40)))] = 1.0
    fg = ndi.gaussian_filter(spots, 4.0)
    fg = np.clip(fg / np.quantile(fg, 0.97), 0, 1) * 0.98
    return _probs(fg)


def test_a_labeller_reused_over_many_rules_labels_as_a_fresh_one():
    # the search reuses one PlaneLabeller: its kept distance maps and seeds must
    # never leak into a rule they do not belong to (more thresholds than it keeps,
    # rules in a shuffled order, then all again from what it kept)
    from itertools import product

    from napari_unet.postprocess import label_instances
    from napari_unet.postprocess.rules import PlaneLabeller, foreground_probability

    probs = _blobby_probabilities()
    rules = [
        dict(method=m, threshold=t, h=h, smoothing=sm, seed_threshold=s,
             min_size=8 * (k % 2), min_confidence=0.6 * (k % 2))
        for k, (m, t, h, sm, s) in enumerate(product(
            ("watershed", "components"), (0.3, 0.4, 0.5, 0.6, 0.7), (0.5, 2.0), (0.0, 1.5),
            (None, 0.75, 0.85),
        ))
        if s is None or s >= t
    ]  # fmt: skip
    order = np.random.default_rng(1).permutation(len(rules))
    labeller = PlaneLabeller(foreground_probability(probs))
    assert len({r["threshold"] for r in rules}) > PlaneLabeller.KEEP_DISTANCES
    split = 0
    for n, i in enumerate([*order, *order]):
        rule = rules[i]
        got = labeller.label(**rule)
        assert np.array_equal(got, label_instances(probs, **rule)), rule
        if n < len(order) and rule["method"] == "watershed":
            split += got.max() > label_instances(probs, **{**rule, "method": "components"}).max()
    assert split > 0  # the watershed rules do cut something here: the test sees them
    with pytest.raises(NapariUnetError, match="seed threshold"):
        labeller.label(**{**rules[0], "method": "watershed", "seed_threshold": 0.1})
