import numpy as np
import pytest
from skimage.draw import disk

from napari_unet import NapariUnetError
from napari_unet.correction import merge_prediction, rank_uncertain


def _discs(shape, centres, radius=5):
    labels = np.zeros(shape, np.int32)
    for i, centre in enumerate(centres, start=1):
        labels[disk(centre, radius, shape=shape)] = i
    return labels


@pytest.mark.parametrize("seed", range(20))
def test_painted_cells_are_never_changed(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 50)
    segmentation = _discs(shape, rng.integers(0, 45, (12, 2)), radius=int(rng.integers(2, 7)))
    annotation = np.zeros(shape, np.uint16)
    for _ in range(int(rng.integers(0, 6))):  # random strokes with random ids
        y, x = rng.integers(0, 40), rng.integers(0, 50)
        annotation[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = rng.integers(1, 200)
    merged, added = merge_prediction(annotation, segmentation)
    painted = annotation > 0
    np.testing.assert_array_equal(merged[painted], annotation[painted])
    assert merged is not annotation
    # every pixel that changed belongs to one copied object, and whole objects are copied
    changed = merged != annotation
    assert not (changed & painted).any()
    for seg_id, new_id in added.items():
        np.testing.assert_array_equal(merged == new_id, segmentation == seg_id)
    assert set(np.unique(segmentation[changed])) == set(added)


def test_predicted_cells_touching_paint_are_left_out():
    segmentation = _discs((30, 60), [(15, 8), (15, 30), (15, 50)])
    annotation = np.zeros((30, 60), np.int32)
    annotation[15, 30] = 7  # one painted pixel inside the middle cell
    annotation[0:3, 0:3] = 2
    merged, added = merge_prediction(annotation, segmentation)
    assert set(added) == {1, 3}
    assert added == {1: 8, 3: 9}  # fresh ids above the annotation's largest
    middle = segmentation == 2
    np.testing.assert_array_equal(merged[middle], annotation[middle])
    assert (merged[segmentation == 1] == 8).all() and (merged[segmentation == 3] == 9).all()


def test_region_limits_the_copied_cells():
    segmentation = _discs((30, 60), [(15, 8), (15, 30), (15, 50)])
    region = np.zeros((30, 60), bool)
    region[:, 20:48] = True  # the third cell (x 45 to 55) pokes out
    merged, added = merge_prediction(np.zeros((30, 60), np.uint8), segmentation, region)
    assert set(added) == {2}
    assert (merged[segmentation != 2] == 0).all()


def test_ids_widen_the_dtype_when_they_do_not_fit():
    segmentation = _discs((20, 20), [(5, 5), (14, 14)], radius=3)
    annotation = np.zeros((20, 20), np.uint8)
    annotation[0, 19] = 254
    merged, added = merge_prediction(annotation, segmentation)
    assert sorted(added.values()) == [255, 256]
    assert merged.max() == 256 and merged.dtype.itemsize > 1
    assert merged[0, 19] == 254


def test_merge_refuses_other_shapes():
    with pytest.raises(NapariUnetError, match="must match"):
        merge_prediction(np.zeros((5, 5)), np.zeros((5, 6)))


def test_stacks_merge_per_object():
    segmentation = np.zeros((3, 20, 20), np.int32)
    segmentation[0][disk((10, 10), 4)] = 1
    segmentation[1][disk((10, 10), 4)] = 2
    segmentation[2][disk((10, 10), 4)] = 3
    annotation = np.zeros_like(segmentation)
    annotation[1, 10, 10] = 1
    merged, added = merge_prediction(annotation, segmentation)
    assert added == {1: 2, 3: 3}
    assert merged[1].sum() == 1  # the painted plane is untouched


def _probability(labels, inside=0.97, outside=0.02):
    return np.where(labels > 0, inside, outside).astype(np.float32)


def test_an_ambiguous_cell_ranks_first():
    labels = _discs((60, 80), [(15, 15), (15, 60), (45, 15), (45, 60)], radius=7)
    prob = _probability(labels)
    prob[labels == 3] = 0.55  # the model hesitated over this one
    cells = rank_uncertain(prob, labels)
    assert [c.label for c in cells][0] == 3
    assert cells[0].reason == "probability near 0.5"
    assert cells[0].certainty < 0.3 < min(c.certainty for c in cells[1:])
    assert all(0.0 <= c.certainty <= 1.0 for c in cells)
    assert {c.reason for c in cells[1:]} == {"clear"}
    assert cells[0].plane is None
    assert cells[0].centroid == pytest.approx((45.0, 15.0), abs=0.5)
    assert cells[0].area == int((labels == 3).sum())


def test_a_blurred_outline_lowers_the_certainty():
    labels = _discs((40, 80), [(20, 20), (20, 60)], radius=7)
    prob = _probability(labels)
    ring = (labels == 0) & (_discs((40, 80), [(20, 20), (20, 60)], radius=10) == 2)
    prob[ring] = 0.5
    cells = rank_uncertain(prob, labels, band=3)
    assert cells[0].label == 2


def test_fragments_and_cells_without_a_gap_rank_high():
    labels = _discs((60, 100), [(15, 15), (15, 50), (15, 85), (45, 15), (45, 50)], radius=7)
    labels[44:47, 84:87] = 6  # a 3x3 fragment
    # cells 4 and 5 touching with no gap: cell 5 grows until it meets cell 4
    labels[40:51, 22:43] = np.where(labels[40:51, 22:43] == 0, 5, labels[40:51, 22:43])
    prob = _probability(labels)
    cells = rank_uncertain(prob, labels)
    order = [c.label for c in cells]
    assert order[0] == 6 and cells[0].reason == "small fragment"
    assert set(order[1:3]) == {4, 5}
    assert {c.reason for c in cells[1:3]} == {"no gap to a neighbour"}
    assert rank_uncertain(prob, labels, top=2) == cells[:2]


def test_ids_restrict_the_ranking_but_neighbours_still_count():
    labels = _discs((30, 40), [(15, 10), (15, 30)], radius=8)
    labels[10:20, 17:24] = np.where(labels[10:20, 17:24] == 0, 2, labels[10:20, 17:24])
    prob = _probability(labels)
    cells = rank_uncertain(prob, labels, ids=[2])
    assert [c.label for c in cells] == [2]
    assert cells[0].reason == "no gap to a neighbour"


def test_stacks_rank_per_plane():
    labels = np.zeros((3, 40, 40), np.int32)
    for z in range(3):
        labels[z][disk((12, 12), 6)] = 1
        labels[z][disk((28, 28), 6)] = 2
    prob = _probability(labels)
    prob[2][labels[2] == 1] = 0.5
    cells = rank_uncertain(prob, labels)
    assert len(cells) == 6
    assert (cells[0].label, cells[0].plane) == (1, 2)
    assert cells[0].centroid == pytest.approx((12.0, 12.0), abs=0.5)


def test_rank_handles_empty_and_bad_input():
    assert rank_uncertain(np.zeros((10, 10)), np.zeros((10, 10), np.int32)) == []
    with pytest.raises(NapariUnetError, match="must match"):
        rank_uncertain(np.zeros((10, 10)), np.zeros((10, 11), np.int32))
    with pytest.raises(NapariUnetError, match="2D images or stacks"):
        rank_uncertain(np.zeros((2, 2, 10, 10)), np.zeros((2, 2, 10, 10), np.int32))
