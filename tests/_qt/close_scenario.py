"""Run by tests/_qt/test_close.py in a fresh process: open napari, start work, close.

Usage: python close_scenario.py SCENARIO, SCENARIO one of plain, docked, training,
weightmap, prediction, batch. Prints "closing at T" (time.time()) just before the close.
"""

import sys
import time

import napari
import numpy as np
from qtpy.QtCore import QTimer

from napari_unet.training import TrainConfig

DOCKS = ("Annotate", "Train", "Predict", "Model")


def main(scenario: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-unet", "nuclei")
    image, truth = viewer.layers[0], viewer.layers[1]
    docks = {}
    if scenario != "plain":
        docks = {n: viewer.window.add_plugin_dock_widget("napari-unet", n)[1] for n in DOCKS}

    def close() -> None:
        print(f"closing at {time.time():.3f}", flush=True)
        viewer.close()

    if scenario in ("plain", "docked"):
        QTimer.singleShot(0, close)  # at once: the warm-up is still under way
    elif scenario == "training":
        train = docks["Train"]
        train._defaults = TrainConfig(base_channels=4, depth=3, tile_size=92, validate_every=5)
        train._start.value = "scratch"
        train._steps.value = 100000
        train._time.value = 0
        train._annotation.value = truth
        train.runner.event.connect(lambda e: e.step >= 2 and QTimer.singleShot(0, close))
        train.fine_tune()
    elif scenario == "weightmap":
        annotate = docks["Annotate"]
        annotate._annotation.value = truth
        annotate._show_weights.value = True
        QTimer.singleShot(0, close)  # while the map computes
    elif scenario == "prediction":
        big = viewer.add_image(np.tile(np.asarray(image.data), (4, 4)), name="big")
        predict = docks["Predict"]
        predict._image.value = big
        predict._tile.value = 64
        predict._runner.progressed.connect(lambda done, total: QTimer.singleShot(0, close))
        predict.segment()
    elif scenario == "batch":  # "Segment all open images", closed during the first image
        viewer.add_image(np.tile(np.asarray(image.data), (4, 4)), name="big")
        predict = docks["Predict"]
        predict._tile.value = 64
        predict._batch.segment_open_images()
        predict._batch.worker.yielded.connect(lambda event: QTimer.singleShot(0, close))
    napari.run()


if __name__ == "__main__":
    main(sys.argv[1])
