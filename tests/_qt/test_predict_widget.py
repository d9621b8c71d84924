import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet import UNet, save_model
from napari_unet._qt.session import session_for


@pytest.fixture
def model_file(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path)
    return path


def _dock(viewer, model_file=None):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    if model_file is not None:
        widget._model_choice.value = "file"
        widget._model_path.value = model_file
    return widget


def _run(qtbot, widget):
    widget.segment()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)


def test_segment_adds_then_updates_layers_in_place(make_napari_viewer, qtbot, model_file, rng):
    viewer = make_napari_viewer()
    # smoothed: white noise is "nothing to segment" and never reaches the model
    pixels = ndi.gaussian_filter(rng.random((80, 60)), 1.5).astype(np.float32)
    image = viewer.add_image(pixels, name="cells")
    # a user's own layer that happens to carry the name we would use
    user = viewer.add_labels(np.ones((80, 60), np.int32), name="cells segmentation")
    widget = _dock(viewer, model_file)
    assert not widget._model_path.native.isHidden()
    widget._image.value = image
    _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert "cells probability" in names
    seg = [
        lyr
        for lyr in viewer.layers
        if lyr.metadata.get("napari_unet", {}).get("role") == "segmentation"
    ]
    assert len(seg) == 1 and seg[0] is not user
    assert seg[0].data.shape == (80, 60)
    assert (user.data == 1).all()
    n_layers = len(viewer.layers)
    _run(qtbot, widget)  # second run: same layers, updated in place
    assert len(viewer.layers) == n_layers
    assert widget._progress.value == widget._progress.max


def test_uses_the_session_model_and_copies_to_annotation(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(1).random((50, 50)), name="img")
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "trained here")
    assert "trained here" in widget._model_info.value
    widget._image.value = image
    _run(qtbot, widget)
    seg = viewer.layers["img segmentation"]
    seg.data = np.zeros_like(seg.data)
    seg.data[5:15, 5:15] = 1
    widget.copy_to_annotation()
    ann = viewer.layers["img annotation"]
    assert ann is not seg and (ann.data == seg.data).all()
    assert ann.mode == "paint" and ann.selected_label == 2
    ann.data[0, 0] = 7  # editing the copy leaves the prediction alone
    assert seg.data[0, 0] == 0


def test_cancel_stops_between_tiles(make_napari_viewer, qtbot, model_file, rng):
    viewer = make_napari_viewer()
    pixels = ndi.gaussian_filter(rng.random((400, 400)), 1.5).astype(np.float32)
    image = viewer.add_image(pixels, name="big")
    widget = _dock(viewer, model_file)
    widget._image.value = image
    widget._tile.value = 16
    widget.segment()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert widget._progress.value < widget._progress.max
    assert "big segmentation" not in [layer.name for layer in viewer.layers]
    assert widget._status.value == "Prediction cancelled."


def test_errors_become_notifications(make_napari_viewer, qtbot, tmp_path, rng, monkeypatch):
    import napari_unet._qt.predict_widget as pw

    messages = []
    monkeypatch.setattr(pw, "show_error", messages.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((30, 30)), name="img")
    widget = _dock(viewer)
    widget._image.value = image
    widget._model_choice.value = "file"
    widget.segment()
    assert "model file" in messages[-1]
    # the file is read in the worker; its problems come back as notifications
    import napari_unet._qt.prediction as prediction

    worker_messages = []
    monkeypatch.setattr(prediction, "show_error", worker_messages.append)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 not a model")
    widget._model_path.value = bad
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert "cannot be loaded" in worker_messages[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]
    # a failure inside the prediction (NaN pixels) is reported too, and adds no layer
    session_for(viewer).set_model(UNet(base_channels=2, depth=2, dropout=0.0), "m")
    widget._model_choice.value = "current"
    image.data = np.full((30, 30), np.nan)
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert worker_messages and "NaN" in worker_messages[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]


def test_without_a_bundled_model_the_current_model_must_be_made_first(
    make_napari_viewer, qtbot, rng, monkeypatch
):
    """An installation without the bundled model (its weights left out) says what to do."""
    import napari_unet._qt.model_choice as model_choice
    import napari_unet._qt.predict_widget as pw

    monkeypatch.setattr(model_choice, "bundled_available", lambda: False)
    messages = []
    monkeypatch.setattr(pw, "show_error", messages.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((30, 30)), name="img")
    widget = _dock(viewer)
    assert list(widget._model_choice.choices) == ["current", "file"]
    widget._image.value = image
    widget.segment()
    assert messages == ["There is no current model yet; train one or load a file."]
    assert widget.worker is None and [layer.name for layer in viewer.layers] == ["img"]
    # once there is one, it is used
    session_for(viewer).set_model(UNet(base_channels=2, depth=2, dropout=0.0), "made here")
    _run(qtbot, widget)
    assert len(messages) == 1 and "img segmentation" in viewer.layers


def test_lazy_image_is_segmented_into_zarr(
    make_napari_viewer, qtbot, model_file, tmp_path, rng, monkeypatch
):
    import dask.array as da

    viewer = make_napari_viewer()
    data = da.from_array(rng.random((96, 80)).astype(np.float32), chunks=32)
    image = viewer.add_image(data, name="lazy")
    widget = _dock(viewer, model_file)
    widget._image.value = image
    assert not widget._zarr_out.native.isHidden()
    import napari_unet._qt.predict_widget as pw

    messages = []
    monkeypatch.setattr(pw, "show_error", messages.append)
    widget.segment()  # no output chosen yet
    assert messages and ".zarr" in messages[-1]
    out = tmp_path / "seg.zarr"
    widget._zarr_out.value = out
    _run(qtbot, widget)
    seg = viewer.layers["lazy segmentation"]
    assert isinstance(seg.data, da.Array) or seg.multiscale
    from napari_unet.bigimage import open_prediction

    assert open_prediction(out).labels[0].shape == (96, 80)


def test_object_diameter_resizes_for_the_model(
    make_napari_viewer, qtbot, tiny_model, rng, monkeypatch
):
    import napari_unet.segment as seg_module

    seen = []
    original = seg_module.iter_segment

    def spy(model, image, **kwargs):
        result = yield from original(model, image, **kwargs)
        seen.append(result.rescale)
        return result

    monkeypatch.setattr(seg_module, "iter_segment", spy)
    tiny_model.metadata["object_diameter"] = {"min": 8.0, "max": 40.0}
    viewer = make_napari_viewer()
    # smoothed: white noise is "nothing to segment" and would never be resized
    pixels = ndi.gaussian_filter(rng.random((90, 70)), 1.5).astype(np.float32)
    image = viewer.add_image(pixels, name="big cells")
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "with a known object size")
    widget._image.value = image
    widget._diameter.value = 80.0  # twice the largest the model knows
    _run(qtbot, widget)
    assert seen == [pytest.approx(320**0.5 / 80)]  # to the middle of the range
    seg = viewer.layers["big cells segmentation"]
    assert seg.data.shape == (90, 70)  # back at the image's size
    assert viewer.layers["big cells probability"].data.shape == (90, 70)
    widget._diameter.value = 20.0  # inside the range: no resizing
    _run(qtbot, widget)
    assert seen[1:] == [1.0]


def test_lazy_output_onto_the_input_is_refused(make_napari_viewer, qtbot, model_file, tmp_path):
    import dask.array as da
    import zarr

    raw_path = tmp_path / "raw.zarr"
    raw = zarr.open_array(str(raw_path), mode="w", shape=(64, 48), chunks=(32, 32), dtype="f4")
    raw[:] = np.random.default_rng(3).random((64, 48))
    before = raw[:]
    viewer = make_napari_viewer()
    image = viewer.add_image(da.from_zarr(str(raw_path)), name="raw")
    widget = _dock(viewer, model_file)
    widget._image.value = image
    widget._zarr_out.value = raw_path  # the user picks the image itself
    _run(qtbot, widget)
    assert "left alone" in widget._status.value
    np.testing.assert_array_equal(zarr.open_array(str(raw_path))[:], before)
    assert "raw segmentation" not in viewer.layers


def test_lazy_cancel_stops_the_dask_work(make_napari_viewer, qtbot, model_file, tmp_path, rng):
    """Cancel ends the run only once dask's thread has stopped writing."""
    import threading

    import dask.array as da

    viewer = make_napari_viewer()
    data = da.from_array(rng.random((3, 160, 160)).astype(np.float32), chunks=(1, 32, 32))
    image = viewer.add_image(data, name="stack", scale=(4.0, 0.5, 0.5), translate=(10, 1, 1))
    widget = _dock(viewer, model_file)
    widget._image.value = image
    widget._zarr_out.value = tmp_path / "seg.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget._progress.value > 2, timeout=30000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert "cancelled" in widget._status.value
    assert not any(t.name == "napari-unet-dask" for t in threading.enumerate())
    assert "stack segmentation" not in viewer.layers
    # a new run to the same store is whole, and a stack keeps its Z scale and offset
    _run(qtbot, widget)
    seg = viewer.layers["stack segmentation"]
    assert tuple(seg.scale) == (4.0, 0.5, 0.5) and tuple(seg.translate) == (10, 1, 1)
    from napari_unet.bigimage import open_prediction

    result = open_prediction(tmp_path / "seg.zarr")
    assert result.labels[0].shape == (3, 160, 160)
    assert result.scale == (4.0, 0.5, 0.5)  # the OME-Zarr metadata records the layer's scale


def test_diameter_zero_estimates_and_the_dock_says_so(make_napari_viewer, qtbot):
    """0 is "estimate": nuclei 3x the bundled model's sizes are measured and resized."""
    from skimage.transform import rescale

    from napari_unet.synthetic import make_cells

    image, _ = make_cells((128, 128), seed=50)
    big = rescale(image.astype(np.float32), 3.0, order=1, preserve_range=True)
    viewer = make_napari_viewer()
    layer = viewer.add_image(big.astype(np.float32), name="large")
    widget = _dock(viewer)
    widget._model_choice.value = "bundled"
    assert widget._diameter.value == 0
    assert widget._diameter.native.text() == "estimate (automatic)"
    widget._image.value = layer
    _run(qtbot, widget)
    status = widget._status.value
    assert "objects found in large." in status
    assert "Estimated object diameter" in status and "resized x0." in status
    assert viewer.layers["large segmentation"].data.shape == big.shape
    assert viewer.layers["large segmentation"].data.max() > 5


def test_absurd_diameter_and_empty_image_are_notifications(
    make_napari_viewer, qtbot, tiny_model, monkeypatch
):
    import napari_unet._qt.prediction as prediction

    errors, infos = [], []
    monkeypatch.setattr(prediction, "show_error", errors.append)
    monkeypatch.setattr(prediction, "show_info", infos.append)
    tiny_model.metadata["object_diameter"] = {"min": 8.0, "max": 40.0}
    viewer = make_napari_viewer()
    session_for(viewer).set_model(tiny_model, "with a known object size")
    rng = np.random.default_rng(8)
    layer = viewer.add_image(rng.normal(100, 10, (60, 50)).astype(np.float32), name="noise")
    widget = _dock(viewer)
    widget._image.value = layer
    widget._diameter.value = 200.0  # larger than the image
    _run(qtbot, widget)
    assert errors and "larger than the image (60x50 px)" in errors[-1]
    assert "noise segmentation" not in [lyr.name for lyr in viewer.layers]
    widget._diameter.value = 0.0  # estimate: the image holds nothing but noise
    _run(qtbot, widget)
    assert "0 objects found in noise." in infos[-1] and "nothing above its noise" in infos[-1]
    seg = viewer.layers["noise segmentation"]
    assert seg.data.shape == (60, 50) and not seg.data.any()
    assert widget._status.value == infos[-1]


def test_test_time_augmentation_checkbox(make_napari_viewer, qtbot, tiny_model, tmp_path, rng):
    """Ticked, Segment, the batch and a lazy image all predict with the 8 symmetries."""
    import dask.array as da

    from napari_unet.postprocess import foreground_probability
    from napari_unet.segment import segment

    viewer = make_napari_viewer()
    # smoothed: white noise is "nothing to segment" and never reaches the model
    data = ndi.gaussian_filter(rng.random((40, 52)), 1.5).astype(np.float32)
    image = viewer.add_image(data, name="img")
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "m")
    assert widget._tta.value is False and "8x the time" in widget._tta.tooltip
    widget._tta.native.click()  # as a user ticks it
    assert widget._tta.value is True
    widget._image.value = image
    widget.segment()
    assert "test-time augmentation" in widget._status.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    expected = segment(tiny_model, data, tta=True)
    plain = segment(tiny_model, data)
    got = viewer.layers["img probability"].data
    np.testing.assert_allclose(got, foreground_probability(expected.probabilities), atol=1e-6)
    assert np.abs(got - foreground_probability(plain.probabilities)).max() > 1e-3
    np.testing.assert_array_equal(viewer.layers["img segmentation"].data, expected.labels)
    # the batch takes the dock's choice too
    viewer.layers["img segmentation"].data = np.zeros((40, 52), np.int32)
    batch = widget._batch
    batch.segment_open_images()
    qtbot.waitUntil(lambda: batch.worker is None, timeout=30000)
    np.testing.assert_array_equal(viewer.layers["img segmentation"].data, expected.labels)
    # and a lazy image, chunk by chunk into zarr
    lazy = viewer.add_image(da.from_array(data, chunks=16), name="lazy")
    widget._image.value = lazy
    widget._zarr_out.value = tmp_path / "lazy.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    from napari_unet.bigimage import open_prediction

    result = open_prediction(tmp_path / "lazy.zarr")
    assert result.metadata["tta"] is True
    np.testing.assert_array_equal(np.asarray(result.labels[0]), expected.labels)
    assert widget._tta.value is True  # the choice stays for the next run


def test_precision_choice_in_plain_words(make_napari_viewer, qtbot, tiny_model, rng, monkeypatch):
    """Fast follows the machine's measurement ("auto"), Exact is float32; the status says."""
    from napari_unet.postprocess import foreground_probability
    from napari_unet.segment import segment

    viewer = make_napari_viewer()
    data = ndi.gaussian_filter(rng.random((40, 52)), 1.5).astype(np.float32)
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "m")
    widget._image.value = viewer.add_image(data, name="img")
    labels = [widget._precision.native.itemText(i) for i in range(widget._precision.native.count())]
    assert labels == ["Auto (bfloat16 where measured faster)", "Exact (float32)"]
    assert widget._precision.value == "auto"
    # this machine "measured" bf16 faster (pinned, as a fast machine's cache would say)
    monkeypatch.setenv("NAPARI_UNET_PRECISION", "bf16")
    _run(qtbot, widget)
    assert "Precision: bfloat16 (auto: set by $NAPARI_UNET_PRECISION)" in widget._status.value
    assert widget._precision.native.itemText(0) == "Auto (bfloat16 here)"  # what ran
    fast = segment(tiny_model, data, precision="bf16")
    got = viewer.layers["img probability"].data
    np.testing.assert_array_equal(got, foreground_probability(fast.probabilities))
    widget._precision.value = "fp32"  # Exact: float32 whatever the measurement
    _run(qtbot, widget)
    assert "Precision: float32 (as asked)" in widget._status.value
    assert widget._precision.native.itemText(0) == "Auto (bfloat16 here)"  # Exact says nothing
    exact = segment(tiny_model, data, precision="fp32")
    got = viewer.layers["img probability"].data
    np.testing.assert_array_equal(got, foreground_probability(exact.probabilities))
    assert np.abs(exact.probabilities - fast.probabilities).max() > 0  # bf16 did run
