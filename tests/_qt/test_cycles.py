"""Repeated start/stop leaves no stray threads and no growing memory; layers stay intact."""

import hashlib
import sys
import threading

import numpy as np
import pytest
from qtpy.QtCore import QThreadPool

from napari_unet._qt.session import session_for


def _rss_mb():
    import resource  # Unix only; the test that needs this is marked Linux-only

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _digest(layer):
    return hashlib.sha256(np.ascontiguousarray(layer.data).tobytes()).hexdigest()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="Linux only: reads the resident memory from /proc/self/statm",
)
def test_twenty_start_stop_cycles(make_napari_viewer, qtbot, cells, fast_config):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(truth.copy(), name="annotation")
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    predict = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]
    train._defaults = fast_config
    train._start.value = "scratch"
    train._steps.value = 100000
    train._refresh.value = False
    train._annotation.value = ann
    predict._image.value = viewer.layers["nuclei"]
    predict._tile.value = 16
    before = _digest(ann)
    pool = QThreadPool.globalInstance()

    def cycle(steps=0):
        train.fine_tune()
        qtbot.waitUntil(lambda: train.runner.trainer is not None, timeout=30000)
        # a stop before the first step leaves the model in use as it was
        qtbot.waitUntil(lambda: train.runner.trainer.step >= steps, timeout=30000)
        train.stop()
        qtbot.waitUntil(lambda: not train.runner.running, timeout=30000)
        predict.segment()
        predict.cancel()
        qtbot.waitUntil(lambda: predict.worker is None, timeout=30000)

    for _ in range(3):  # warm-up: first-time allocations and imports
        cycle(steps=1)  # at least one step: a model in use, which no cycle may lose
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=30000)
    threads, rss = threading.active_count(), _rss_mb()
    for _ in range(20):
        cycle()
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=30000)
    assert threading.active_count() <= threads
    assert _rss_mb() - rss < 150, f"memory grew by {_rss_mb() - rss:.0f} MB over 20 cycles"
    assert _digest(ann) == before  # training and prediction never touched the annotation
    assert session_for(viewer).model is not None


def test_preview_and_prediction_never_modify_the_annotation(
    make_napari_viewer, qtbot, cells, fast_config
):
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(truth.copy(), name="annotation")
    region = viewer.add_shapes([np.array([[0, 0], [60, 80]])], shape_type="rectangle")
    digests = (_digest(ann), _digest(viewer.layers["nuclei"]), str(region.data))
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._defaults = fast_config
    train._start.value = "scratch"
    train._steps.value = 3
    train._annotation.value = ann
    train._region.value = region
    train.preview_augmentation()
    qtbot.waitUntil(lambda: train._preview_worker is None, timeout=30000)
    train.fine_tune()
    qtbot.waitUntil(lambda: not train.runner.running, timeout=60000)
    qtbot.waitUntil(lambda: "nuclei segmentation" in viewer.layers, timeout=60000)
    qtbot.waitUntil(lambda: not train.predictor.running, timeout=60000)
    assert (_digest(ann), _digest(viewer.layers["nuclei"]), str(region.data)) == digests
