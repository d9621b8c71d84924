import numpy as np
import pytest

from napari_unet import save_model


@pytest.fixture
def model_file(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path)
    return path


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    return widget


def _run(qtbot, widget):
    widget.segment()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)


def test_segment_adds_then_updates_layers_in_place(make_napari_viewer, qtbot, model_file, rng):
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((80, 60)).astype(np.float32), name="cells")
    # a user's own layer that happens to carry the name we would use
    user = viewer.add_labels(np.ones((80, 60), np.int32), name="cells segmentation")
    widget = _dock(viewer)
    widget._model_path.value = model_file
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


def test_cancel_stops_between_tiles(make_napari_viewer, qtbot, model_file, rng):
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((400, 400)).astype(np.float32), name="big")
    widget = _dock(viewer)
    widget._model_path.value = model_file
    widget._image.value = image
    widget._tile.value = 16
    widget.segment()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    assert widget._progress.value < widget._progress.max
    assert "big segmentation" not in [layer.name for layer in viewer.layers]
    assert widget._status.value == "Cancelled."


def test_errors_become_notifications(make_napari_viewer, qtbot, tmp_path, rng, monkeypatch):
    import napari_unet._qt.predict_widget as pw

    messages = []
    monkeypatch.setattr(pw, "show_error", messages.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((30, 30)), name="img")
    widget = _dock(viewer)
    widget._image.value = image
    widget.segment()
    assert messages and "model file" in messages[-1]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 not a model")
    widget._model_path.value = bad
    widget.segment()
    assert "cannot be loaded" in messages[-1]
    assert widget.worker is None
    assert [layer.name for layer in viewer.layers] == ["img"]
