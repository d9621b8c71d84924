"""The Predict dock and a lazy layer give the labels of the API for the same model and image."""

import numpy as np

from napari_unet import labels_from_probabilities, predict_tiled, save_model
from test_one_policy import RULE, _scene
from threshold_net import threshold_unet


def test_the_dock_and_a_lazy_layer_give_the_api_labels(make_napari_viewer, qtbot, tmp_path):
    import dask.array as da

    from napari_unet.bigimage import open_prediction

    model = threshold_unet(gain=10.0, level=0.5)
    model.metadata["normalization"] = {"method": "none"}
    model.metadata["postprocess"] = dict(RULE)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    image = _scene()
    reference = labels_from_probabilities(predict_tiled(model, image), model=model)
    assert reference.max() == 2

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget._model_choice.value = "file"
    widget._model_path.value = path
    widget._image.value = viewer.add_image(image, name="scene")
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    np.testing.assert_array_equal(viewer.layers["scene segmentation"].data, reference)

    widget._image.value = viewer.add_image(da.from_array(image, chunks=48), name="lazy")
    widget._zarr_out.value = tmp_path / "lazy.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    labels = np.asarray(open_prediction(tmp_path / "lazy.zarr").labels[0])
    np.testing.assert_array_equal(labels, reference)


def test_the_dock_scales_the_rule_of_a_lazy_layer_as_segment_does(
    make_napari_viewer, qtbot, tmp_path
):
    """A big image (not in memory) gets the instance rule at its estimated size, as in memory."""
    import dask.array as da

    from napari_unet import segment
    from napari_unet.bigimage import open_prediction
    from test_one_policy import _dumbbells, raster_order

    model = threshold_unet(gain=10.0, level=0.5)
    model.metadata["normalization"] = {"method": "none"}  # no recommendation: the size rules
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    image = _dumbbells()
    seg = segment(model, image, precision="fp32")
    fixed = labels_from_probabilities(predict_tiled(model, image))
    assert seg.diameter is not None and fixed.max() > seg.labels.max()

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget._model_choice.value = "file"
    widget._model_path.value = path
    widget._image.value = viewer.add_image(image, name="scene")
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    np.testing.assert_array_equal(viewer.layers["scene segmentation"].data, seg.labels)

    widget._image.value = viewer.add_image(da.from_array(image, chunks=96), name="lazy")
    widget._zarr_out.value = tmp_path / "lazy.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    labels = np.asarray(open_prediction(tmp_path / "lazy.zarr").labels[0])
    np.testing.assert_array_equal(raster_order(labels), raster_order(seg.labels))
