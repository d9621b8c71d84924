"""The Predict dock and a lazy layer give the labels of the API for the same model and image."""

import numpy as np

from napari_unet import labels_from_probabilities, predict_tiled, save_model
from test_one_policy import RULE, _scene
from threshold_net import threshold_unet


def test_the_dock_and_a_lazy_layer_give_the_api_labels(make_napari_viewer, qtbot, tmp_path):
    model = threshold_unet(gain=10.0, level=0.5)
    model.metadata["normalization"] = {"method": "none"}
    model.metadata["postprocess"] = dict(RULE)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    image = _scene()
    reference = labels_from_probabilities(predict_tiled(model, image), model=model)
    assert reference.max() == 2

    in_memory, lazy = _both_dock_paths(make_napari_viewer(), qtbot, path, image, 48, tmp_path)
    np.testing.assert_array_equal(in_memory, reference)
    np.testing.assert_array_equal(lazy, reference)


def _both_dock_paths(viewer, qtbot, model_path, image, chunks, tmp_path):
    """Labels of the Predict dock for ``image`` in memory, then as a lazy (dask) layer."""
    import dask.array as da

    from napari_unet.bigimage import open_prediction

    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget._model_choice.value = "file"
    widget._model_path.value = model_path
    widget._image.value = viewer.add_image(image, name="scene")
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    in_memory = viewer.layers["scene segmentation"].data
    widget._image.value = viewer.add_image(da.from_array(image, chunks=chunks), name="lazy")
    widget._zarr_out.value = tmp_path / "lazy.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    return in_memory, np.asarray(open_prediction(tmp_path / "lazy.zarr").labels[0])


def test_the_dock_scales_the_rule_of_a_lazy_layer_as_segment_does(
    make_napari_viewer, qtbot, tmp_path
):
    """A big image (not in memory) gets the instance rule at its estimated size, as in memory."""
    from napari_unet import segment
    from test_one_policy import _dumbbells, raster_order

    model = threshold_unet(gain=10.0, level=0.5)
    model.metadata["normalization"] = {"method": "none"}  # no recommendation: the size rules
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    image = _dumbbells()
    seg = segment(model, image, precision="fp32")
    fixed = labels_from_probabilities(predict_tiled(model, image))
    assert seg.diameter is not None and fixed.max() > seg.labels.max()

    in_memory, lazy = _both_dock_paths(make_napari_viewer(), qtbot, path, image, 96, tmp_path)
    np.testing.assert_array_equal(in_memory, seg.labels)
    np.testing.assert_array_equal(raster_order(lazy), raster_order(seg.labels))
