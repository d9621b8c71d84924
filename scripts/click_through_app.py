"""napari as `make run` opens it, telling a click-through where its buttons are.

Used by ``scripts/click_through.sh``: every 300 ms the centres (screen pixels) of
the docks' buttons and fields, the dock tabs and the canvas go to a JSON file, with
a few facts to check (layers, the brush label, the model in use), so that xdotool
clicks where a user would. Nothing is clicked from inside napari.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WIDGETS = {
    "Annotate": ["_new", "_image", "_annotation", "_count"],
    "Train": ["_train", "_steps", "_time", "_status", "_start", "_image"],
    "Predict": ["_segment", "_model_choice", "_model_info", "_status"],
    "Model": ["_export", "_export_name", "_authors", "_load_path", "_load", "_in_use", "_status"],
}


def _centre(widget) -> dict:
    from qtpy.QtCore import QPoint

    g = widget.mapToGlobal(QPoint(widget.width() // 2, widget.height() // 2))
    shown = widget.isVisible() and not widget.visibleRegion().isEmpty()  # not scrolled away
    return {
        "c": [g.x(), g.y()],
        "visible": widget.isVisible(),
        "h": widget.height(),
        "shown": shown,
    }


def _live_facts(viewer, train) -> dict:
    """What live mode shows, and where to paint.

    Its steps and cells, the segmentation's largest id (every preview raises it) and
    foreground, the rounds, and the screen centres of six large, bright true cells.
    """
    seg = next((x for x in viewer.layers if x.name.endswith(" segmentation")), None)
    project = train._project.project
    live = train.live.live
    facts = {
        "live_running": train.live.running,
        "live_steps": live.trainer.step if live is not None else 0,
        "live_cells": live.live.cells if live is not None else 0,
        "seg_max": int(seg.data.max()) if seg is not None else 0,
        "seg_fg": int((seg.data > 0).sum()) if seg is not None else 0,
        "rounds": len(project.history.rounds) if project is not None else 0,
        "status": str(train._status.value),
        "partial": train.scope.partial.text(),
    }
    facts.update(_scope_facts(viewer, train))
    truth = next((x for x in viewer.layers if x.name.endswith("labels")), None)
    if truth is not None and truth.ndim == 2:
        facts["cells"], facts["spots"] = _screen_places(viewer, truth, viewer.layers[0])
    if "nuclei B labels" in viewer.layers:  # the second image of the training set (I28_SET)
        places = _screen_places(viewer, viewer.layers["nuclei B labels"], viewer.layers["nuclei B"])
        facts["cells_b"], facts["spots_b"] = places
    data = train.runner.trainer.data if train.runner.trainer is not None else None
    if data is not None:  # what the last round trained on, per image
        facts["round"] = [[s["name"], s["cells"], s["left_out"]] for s in data.summary]
    facts["set"] = [[e.name, e.counter.cells] for e in train.training_set.entries]
    return facts


def _screen_places(viewer, truth, image) -> tuple[list, list]:
    """Screen centres of six large, bright true cells, and three places far from any."""
    import numpy as np
    from qtpy.QtCore import QPoint
    from scipy import ndimage as ndi

    ids, counts = np.unique(truth.data[truth.data > 0], return_counts=True)
    bright = np.asarray(ndi.mean(image.data, truth.data, ids))
    counts = np.where(bright >= np.percentile(bright, 75), counts, 0)  # cells one sees
    canvas = viewer.window._qt_viewer.canvas.native
    origin = canvas.mapToGlobal(QPoint(0, 0))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    h, w = viewer.canvas.size
    cy, cx = camera.center[-2:]
    cells = []
    for i in ids[np.argsort(-counts)][:6]:
        ys, xs = np.nonzero(truth.data == i)
        wy, wx = truth.data_to_world((ys.mean(), xs.mean()))
        sx = origin.x() + (wx - cx) * camera.zoom + w / 2
        sy = origin.y() + (wy - cy) * camera.zoom + h / 2
        cells.append([int(sx), int(sy), max(2, int(np.sqrt(len(ys) / np.pi) * camera.zoom))])
    # three places far from any nucleus, for dabs that miss (in view, apart)
    far = ndi.distance_transform_edt(truth.data == 0) > 15
    ys, xs = np.nonzero(far)
    (sy0, sx0), (ty, tx) = truth.scale[-2:], truth.translate[-2:]
    sx = origin.x() + (xs * sx0 + tx - cx) * camera.zoom + w / 2
    sy = origin.y() + (ys * sy0 + ty - cy) * camera.zoom + h / 2
    shown = (sx > origin.x() + 40) & (sx < origin.x() + w - 40)
    shown &= (sy > origin.y() + 40) & (sy < origin.y() + h - 40)
    order = np.flatnonzero(shown)
    picks = order[np.linspace(0, len(order) - 1, 5).astype(int)[1:4]] if len(order) else []
    return cells, [[int(sx[k]), int(sy[k])] for k in picks]


def _scope_facts(viewer, train) -> dict:
    """The line above Fine-tune, the cells it leaves out, and the overlay around them."""
    import numpy as np
    from scipy import ndimage as ndi

    scope = train.scope
    facts = {"scope_line": scope.line.text(), "left_out": list(scope._left_ids)}
    labels, image = scope._labels, scope._image
    name = f"{image.name} area trained on" if image is not None else None
    area = viewer.layers[name] if name in viewer.layers else None  # the chosen image's
    if area is not None and labels is not None and scope._left_ids:
        near = ndi.distance_transform_edt(~np.isin(labels.data, scope._left_ids)) <= 6
        facts["overlay_near_left_out"] = int(np.asarray(area.data)[near].sum())
        facts["overlay_px"] = int(np.asarray(area.data).sum())
    return facts


def main() -> None:
    """Open napari with the four docks and keep writing where things are."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QLineEdit, QTabBar

    from napari_unet._qt.demo import fit_to_screen
    from napari_unet._qt.session import state_for

    out = Path(sys.argv[1])
    viewer = napari.Viewer(title="napari-unet")
    if os.environ.get("I30_SAMPLE"):
        viewer.open_sample("napari-unet", "nuclei")
        for layer in viewer.layers:
            if layer.name.endswith("labels"):
                layer.visible = False
        viewer.layers.selection.active = viewer.layers[0]
    if os.environ.get("I28_SET"):  # a second image beside the sample: a training set of two
        from napari_unet.synthetic import make_cells

        image, truth = make_cells((256, 256), style="fluorescence", seed=28)
        viewer.add_image(image, name="nuclei B", translate=(128, 544))
        viewer.add_labels(truth, name="nuclei B labels", translate=(128, 544), visible=False)
        viewer.layers.selection.active = viewer.layers[0]
    docks = {n: viewer.window.add_plugin_dock_widget("napari-unet", n) for n in WIDGETS}
    window = viewer.window._qt_window
    fit_to_screen(window)
    docks["Annotate"][0].raise_()
    if os.environ.get("I28_SET"):  # both images in view once the window has its size
        QTimer.singleShot(1500, viewer.reset_view)

    def dump() -> None:
        where = {}
        for name, (_, widget) in docks.items():
            for attr in WIDGETS[name]:
                w = getattr(widget, attr).native
                edit = w.findChild(QLineEdit)
                where[f"{name}.{attr}"] = _centre(edit if edit is not None else w)
                where[f"{name}.{attr}"]["text"] = str(getattr(getattr(widget, attr), "value", ""))
        train = docks["Train"][1]
        from qtpy.QtCore import QPoint

        box = train.live.toggle.native  # its indicator: the row's centre is past the text
        g = box.mapToGlobal(QPoint(10, box.height() // 2))
        where["Train.live"] = {"c": [g.x(), g.y()], "visible": box.isVisible()}
        where["Train.live"]["text"] = str(train.live.toggle.value)
        panel = train.project_panel
        where["Train.recent"] = _centre(panel._recent.native)
        where["Train.recent"]["choices"] = [str(c) for c in panel._recent.choices]
        where["Train.add"] = _centre(train.training_set.add_button)
        where["Train.complete"] = _centre(train.scope.complete)
        for bar in window.findChildren(QTabBar):
            for i in range(bar.count()):
                from qtpy.QtCore import QPoint

                r = bar.tabRect(i)
                g = bar.mapToGlobal(QPoint(r.center().x(), r.center().y()))
                where[f"tab:{bar.tabText(i)}"] = {"c": [g.x(), g.y()], "visible": bar.isVisible()}
        canvas = viewer.window._qt_viewer.canvas.native
        where["canvas"] = _centre(canvas)
        state = state_for(viewer)
        labels = state.annotation.labels
        where["facts"] = {
            "layers": [layer.name for layer in viewer.layers],
            "current": labels.name if labels is not None else None,
            "brush": int(labels.selected_label) if labels is not None else None,
            "max_id": int(labels.data.max()) if labels is not None else None,
            "in_use": state.model.source,
            "window": [window.width(), window.height()],
            **_live_facts(viewer, train),
        }
        tmp = out.with_suffix(".part")
        tmp.write_text(json.dumps(where, indent=1))
        tmp.replace(out)

    timer = QTimer(window)
    timer.timeout.connect(dump)
    timer.start(300)
    napari.run()


if __name__ == "__main__":
    main()
