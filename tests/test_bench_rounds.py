"""The rounds benchmark's world-building and scoring run (tiny sizes, a few steps)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_rounds as bench  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return bench.make_world(0, shape=(112, 112))


def test_the_world_is_shifted_and_held_out(world):
    assert world.config.style == "brightfield"
    assert world.train_labels.max() > 5 and world.test_labels.max() > 5
    assert not np.array_equal(world.train_image, world.test_image)


def test_annotation_is_complete_inside_its_region(world):
    labels = world.train_labels
    order = bench.annotation_order(labels, seed=0)
    assert sorted(order) == sorted(np.unique(labels[labels > 0]))
    painted, region = bench.annotation(labels, order[:4])
    assert set(np.unique(painted[painted > 0])) == set(order[:4])
    assert region[painted > 0].all()  # the annotated cells lie in the region
    # no unannotated cell is in the region, so it is never taught as background
    others = (labels > 0) & ~np.isin(labels, order[:4])
    assert not region[others].any()
    assert (region & (labels == 0)).any()  # the background between them is
    # cells cut by the image border come last
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    inner = [i for i in order if i not in border]
    assert list(order[: len(inner)]) == inner


def test_scores():
    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8] = 1
    truth[10:18, 10:18] = 2
    assert bench.ap_at(truth, truth, 0.75) == 1.0
    shifted = np.roll(truth, 2, axis=1)  # IoU 0.5 for cell 1 (6x6 moved by 2), 0.6 for 2
    assert bench.ap_at(truth, shifted, 0.55) == pytest.approx(1 / 3)
    assert bench.ap_at(truth, shifted, 0.75) == 0.0
    rounds = [bench.Round(i, 20 * i, 0, 0.0, ap, 0.0, 0.0) for i, ap in enumerate((0.1, 0.5, 0.6))]
    assert bench.rising(rounds)
    assert not bench.rising([*rounds, bench.Round(3, 60, 0, 0.0, 0.55, 0.0, 0.0)])
    assert "| bundled, zero-shot | 0 |" in bench.table(rounds, "t")


def test_rounds_run(world):
    results = bench.run_rounds(world, rounds=2, cells=3, seconds=30.0, steps=2)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.cells for r in results] == [0, 3, 6]
    assert [r.steps for r in results] == [0, 2, 2]
    for r in results:
        assert 0.0 <= r.ap75 <= r.ap50 <= 1.0 and 0.0 <= r.mean_iou <= 1.0


def test_ranking_check_counts_wrong_cells(monkeypatch):
    from skimage.draw import disk

    truth = np.zeros((40, 80), np.int32)
    for i, x in enumerate((10, 30, 50, 70), start=1):
        truth[disk((20, x), 6)] = i
    pred = truth.copy()
    pred[pred == 4] = 0
    pred[18:23, 68:73] = 4  # a fragment of cell 4: wrong (IoU < 0.5)
    fg = np.where(pred > 0, 0.95, 0.05)
    probabilities = np.stack([1 - fg, fg])
    top, overall = bench.ranking_check(probabilities, pred, truth)
    assert overall == 0.25
    assert top == 0.25  # TOP (10) covers all 4 cells here
    monkeypatch.setattr(bench, "TOP", 1)
    assert bench.ranking_check(probabilities, pred, truth) == (1.0, 0.25)  # fragment first
