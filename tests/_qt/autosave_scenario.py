"""Run by tests/_qt/test_autosave_kill.py in fresh processes (one is killed with SIGKILL).

Usage:
  python autosave_scenario.py paint IMAGE   open IMAGE, annotate it in the Annotate dock,
      paint strokes through the Labels layer API in batches; after each batch but the last,
      wait for the autosave and print "SAVED <json strokes>"; after the last batch print
      "PAINTED <json strokes>" and keep running (to be killed).
  python autosave_scenario.py open FOLDER OUT   open the project in a new napari and write
      the restored annotation to OUT (.npy); print "OPENED <entry names>".
"""

import json
import sys
import time

import napari
import numpy as np
from qtpy.QtCore import QTimer

from napari_unet._qt.project_session import project_for

BATCHES = 3
STROKES = 4


def paint(image_path: str) -> None:
    viewer = napari.Viewer(show=True)
    image = viewer.open(image_path)[0]
    annotate = viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")[1]
    annotate._image.value = image
    annotate.new_annotation()
    layer = viewer.layers[f"{image.name} annotation"]
    session = project_for(viewer)
    # strokes on a grid, 40 px apart (the brush is 5 px): none paints over another
    spots = iter([(20 + 40 * (k // 6), 20 + 40 * (k % 6)) for k in range(BATCHES * STROKES)])
    state = {"batch": 0, "label": 0, "painted_at": 0.0}

    def next_batch() -> None:
        strokes = []
        for _ in range(STROKES):
            state["label"] += 1
            y, x = next(spots)
            layer.paint((y, x), state["label"])  # the brush, as a mouse stroke paints
            strokes.append([y, x, state["label"]])
        state["batch"] += 1
        state["painted_at"] = time.time()
        if state["batch"] == BATCHES:
            print("PAINTED " + json.dumps(strokes), flush=True)
            return
        state["strokes"] = strokes
        QTimer.singleShot(100, wait_for_save)

    def wait_for_save() -> None:
        saved = session.last_saved
        if saved is not None and saved > state["painted_at"] and not session.pending:
            print("SAVED " + json.dumps(state["strokes"]), flush=True)
            next_batch()
        else:
            QTimer.singleShot(100, wait_for_save)

    QTimer.singleShot(500, next_batch)
    napari.run()


def open_project(folder: str, out: str) -> None:
    viewer = napari.Viewer(show=True)
    session = project_for(viewer)

    def opened(entries: list) -> None:
        np.save(out, np.asarray(entries[0].labels.data))
        print("OPENED " + json.dumps([e.name for e in entries]), flush=True)
        QTimer.singleShot(0, viewer.close)

    session.opened.connect(opened)
    session.open(folder)
    napari.run()


if __name__ == "__main__":
    if sys.argv[1] == "paint":
        paint(sys.argv[2])
    else:
        open_project(sys.argv[2], sys.argv[3])
