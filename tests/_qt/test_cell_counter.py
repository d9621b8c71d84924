import threading

import numpy as np

import napari_unet._qt.cell_counter as cc
from napari_unet._qt.cell_counter import CellCounter


def test_a_stroke_during_a_recount_is_counted_once(make_napari_viewer, qtbot, monkeypatch):
    """The worker reads the live array: a stroke made meanwhile makes it count again."""
    viewer = make_napari_viewer()
    data = np.zeros((64, 64), np.int32)
    data[5:10, 5:10] = 1
    labels = viewer.add_labels(data, name="annotation")
    counter = CellCounter(labels)
    qtbot.waitUntil(lambda: not counter.busy, timeout=10000)
    assert counter.cells == 1

    reading, go_on, reads = threading.Event(), threading.Event(), []
    real = cc.pixel_counts

    def slow_counts(array):
        reads.append(1)
        counts = real(array)  # read before the stroke lands: this count misses it
        reading.set()
        go_on.wait(10)
        return counts

    monkeypatch.setattr(cc, "pixel_counts", slow_counts)
    counter.recount()
    assert reading.wait(10)
    labels.paint((40, 40), 2)  # a stroke while the worker holds its (now stale) count
    assert counter.cells == 2  # counted from the stroke at once
    go_on.set()
    qtbot.waitUntil(lambda: not counter.busy and len(reads) == 2, timeout=10000)
    qtbot.waitUntil(lambda: not counter.busy, timeout=10000)
    assert counter.cells == 2  # the stale count was not taken, nor the stroke counted twice
    assert counter.max_id == 2
    counter.close()
