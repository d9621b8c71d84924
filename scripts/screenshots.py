"""Render the README's screenshots of the real napari window into docs/images/.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshots.py

(a 1366x768 laptop screen: the window and its docks must fit it).

Paints 20 cells of the synthetic sample into a new annotation (as a user would),
shows the weight map, fine-tunes for a minute, segments, segments a folder of images
(the batch), and saves one picture per step. Look at the pictures after running it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0


def main() -> None:
    """Open the demo viewer, run each step and save a PNG of the window after it."""
    import imageio.v3 as iio
    from qtpy.QtWidgets import QApplication

    from napari_unet._qt.demo import open_viewer

    viewer, docks = open_viewer(show=True)
    app = QApplication.instance()

    def settle(seconds: float = 0.5) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(condition, timeout: float = 600.0) -> None:
        end = time.perf_counter() + timeout
        while not condition() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.02)

    def shot(name: str) -> None:
        settle(0.5)
        iio.imwrite(OUT / name, viewer.screenshot(canvas_only=False, flash=False))
        print("wrote", OUT / name)

    annotate = docks["Annotate"][1]
    train = docks["Train"][1]
    image = viewer.layers["synthetic nuclei"]
    truth = viewer.layers["synthetic nuclei labels"].data
    image.contrast_limits = tuple(np.percentile(image.data, [0.5, 99.8]))

    # 1. annotate every cell of the top-left corner and mark that corner as the annotated
    # region (inside it the annotation is complete; outside it nothing counts)
    side = 224
    annotate.new_annotation()
    ann = viewer.layers["synthetic nuclei annotation"]
    corner = np.unique(truth[:side, :side])
    for new_id, cell in enumerate(corner[corner > 0], start=1):
        ann.data_setitem(tuple(np.argwhere(truth[:side, :side] == cell).T), new_id)
    annotate.new_region()
    region = viewer.layers["synthetic nuclei annotated region"]
    region.add_rectangles(np.array([[0, 0], [side - 1, side - 1]]))
    region.mode = "pan_zoom"
    annotate._show_weights.value = True
    wait(lambda: "synthetic nuclei annotation weight map" in viewer.layers)
    wait(lambda: not annotate.overlay.busy)
    viewer.layers.selection.active = ann
    ann.mode = "paint"
    viewer.camera.center = (128, 128)
    viewer.camera.zoom = 2.2
    docks["Annotate"][0].raise_()
    shot("annotate.png")

    # 2. fine-tune on it (the Train dock follows the Annotate dock's annotation and region)
    assert train._annotation.value is ann and train._region.value is region
    train._time.value = SECONDS
    train._steps.value = 0
    docks["Train"][0].raise_()
    train.fine_tune()
    wait(lambda: not train.runner.running)
    wait(lambda: "synthetic nuclei segmentation" in viewer.layers)
    wait(lambda: not train.predictor.running)
    annotate._show_weights.value = False
    settle(1.0)
    viewer.camera.center = (256, 256)
    viewer.camera.zoom = 1.15
    viewer.layers["synthetic nuclei annotated region"].visible = False
    train._scroll.ensureWidgetVisible(train.plot, 0, 0)  # down to the loss plot
    shot("train.png")

    # 3. the segmentation on its own, in the Predict dock
    viewer.layers["synthetic nuclei probability"].visible = False
    docks["Predict"][0].raise_()
    viewer.camera.center = (380, 380)
    viewer.camera.zoom = 2.2
    shot("predict.png")

    # 4. a folder of images (one of them not an image) segmented into files by the
    # Predict dock's batch section
    import tempfile

    import tifffile

    from napari_unet.synthetic import make_cells

    folder = Path(tempfile.mkdtemp(prefix="napari-unet-batch-"))
    for i in range(4):
        cells, _ = make_cells((256, 256), diameter=(10, 18), seed=10 + i)
        tifffile.imwrite(folder / f"field{i + 1}.tif", cells)
    (folder / "notes-scan.tif").write_text("scanner log, not an image")
    predict = docks["Predict"][1]
    predict._batch._folder.value = folder
    predict._batch.segment_folder()
    wait(lambda: not predict._batch.running)
    settle(1.0)  # the summary's lines are laid out before scrolling to them
    scroll = predict._scroll.verticalScrollBar()
    scroll.setValue(scroll.maximum())  # down to the batch summary
    shot("batch.png")

    # 5. a second round: the first image goes into the training set, a second field of view
    # is annotated (its top-left corner, as a region) and added; Fine-tune trains on both,
    # starting from round 1's model; the rounds table and its plot show both rounds
    for name in ("synthetic nuclei probability", "synthetic nuclei segmentation"):
        viewer.layers[name].visible = False
    train._image.value = image
    train._annotation.value = ann
    train._region.value = region
    train.add_to_set()
    second, second_truth = make_cells((384, 384), diameter=(10, 18), seed=21)
    field = viewer.add_image(second, name="second field", translate=(0, 560))
    field_ann = viewer.add_labels(
        np.zeros_like(second_truth), name="second field annotation", translate=(0, 560)
    )
    side2 = 192
    cells2 = np.unique(second_truth[:side2, :side2])
    for new_id, cell in enumerate(cells2[cells2 > 0], start=1):
        field_ann.data_setitem(tuple(np.argwhere(second_truth[:side2, :side2] == cell).T), new_id)
    field_region = viewer.add_shapes(
        [np.array([[0, 0], [0, side2 - 1], [side2 - 1, side2 - 1], [side2 - 1, 0]])],
        shape_type="polygon",
        name="second field annotated region",
        translate=(0, 560),
        face_color="transparent",
        edge_color="yellow",
    )
    train.reset_choices()
    train._image.value = field
    train._annotation.value = field_ann
    train._region.value = field_region
    train.add_to_set()
    train._time.value = SECONDS
    docks["Train"][0].raise_()
    train.fine_tune()
    wait(lambda: not train.runner.running)
    wait(lambda: not train.predictor.running)
    wait(lambda: not train._workers.pending)
    viewer.reset_view()
    settle(1.0)
    train._scroll.ensureWidgetVisible(train.history, 0, 0)
    shot("rounds.png")
    train._scroll.ensureWidgetVisible(train.training_set, 0, 0)
    shot("training-set.png")
    viewer.close()


if __name__ == "__main__":
    main()
