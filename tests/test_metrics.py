import numpy as np
import pytest

from napari_unet import NapariUnetError, instance_scores, match_instances
from napari_unet.metrics import pooled_ap


def _discs(radii, shape=(64, 160)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, r in enumerate(radii, start=1):
        labels[np.hypot(yy - 32, xx - 40 * i + 10) < r] = i
    return labels


def test_ap_at_any_threshold_and_the_size_bias():
    true = _discs([10, 10, 10])
    pred = _discs([11, 13, 0])  # one slightly large, one much too large, one missed
    m = match_instances(true, pred)
    assert (m.n_true, m.n_pred) == (3, 2)
    assert m.tp(0.5) == 2 and m.tp(0.75) == 1 and m.tp(0.9) == 0
    assert m.ap(0.5) == pytest.approx(2 / 3) and m.ap(0.75) == pytest.approx(1 / 4)
    # predicted / true areas: (11/10)^2 and (13/10)^2, up to pixelation
    np.testing.assert_allclose(sorted(m.area_ratio), [1.21, 1.69], rtol=0.05)
    # instance_scores reads the same matching
    s = instance_scores(true, pred)
    assert (s.tp, s.n_true, s.n_pred, s.ap50) == (2, 3, 2, m.ap(0.5))
    assert s.mean_iou == pytest.approx(m.iou.sum() / 3)


def test_pooled_ap_sums_counts_before_the_ratio():
    a = match_instances(_discs([10, 10, 10]), _discs([10, 10, 10]))
    b = match_instances(_discs([10]), np.zeros((64, 160), np.int32))
    assert pooled_ap([a, b]) == pytest.approx(3 / 4)  # not the mean of 1 and 0
    assert pooled_ap([]) == 1.0
    empty = match_instances(np.zeros((8, 8), int), np.zeros((8, 8), int))
    assert empty.ap() == 1.0 and empty.area_ratio.size == 0


def test_shapes_must_agree():
    with pytest.raises(NapariUnetError, match="shape"):
        match_instances(np.zeros((8, 8), int), np.zeros((8, 9), int))
