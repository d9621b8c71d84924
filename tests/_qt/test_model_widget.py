import pickle

import numpy as np
import torch

from napari_unet import load_model, save_model
from napari_unet._qt.model_widget import describe_model
from napari_unet._qt.session import session_for


def _dock(viewer):
    return viewer.window.add_plugin_dock_widget("napari-unet", "Model")[1]


def _finish(qtbot, widget):
    """Files are read and written in a worker: wait for it (and its signals)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)


def test_bundled_model_and_its_card(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    assert widget._card.value == ""
    assert not widget._bundled.native.isHidden()
    widget.use_bundled()
    _finish(qtbot, widget)
    session = session_for(viewer)
    assert session.source == "bundled model"
    card = widget._card.value
    assert card.startswith("napari-unet nuclei")
    assert "Made for objects 8 to 40 px across" in card
    assert "Held-out test: AP50" in card
    assert "synthetic" in card


def test_save_then_load_roundtrip(make_napari_viewer, qtbot, tiny_model, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "trained here")
    widget._save_path.value = tmp_path / "mine"  # the suffix is added
    widget.save()
    _finish(qtbot, widget)
    saved = tmp_path / "mine.safetensors"
    assert saved.is_file()
    session_for(viewer).set_model(None, "")
    widget._load_path.value = saved
    widget.load()
    _finish(qtbot, widget)
    loaded = session_for(viewer).model
    assert loaded is not None and session_for(viewer).source == "mine.safetensors"
    for a, b in zip(loaded.state_dict().values(), tiny_model.state_dict().values()):
        assert torch.equal(a, b)
    assert "U-Net, depth 3, base width 4" in widget._card.value


def test_bad_files_are_notifications(make_napari_viewer, qtbot, tiny_model, tmp_path, monkeypatch):
    import napari_unet._qt.model_widget as mw

    errors = []
    monkeypatch.setattr(mw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.save()  # no model yet
    assert "no model to save" in errors[-1]
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.safetensors"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil.write_bytes(pickle.dumps(Payload()))
    widget._load_path.value = evil
    widget.load()
    _finish(qtbot, widget)
    assert "safetensors" in errors[-1].lower()
    assert not marker.exists() and session_for(viewer).model is None
    # a read-only folder: nothing written, the model stays in use
    session_for(viewer).set_model(tiny_model, "trained here")
    widget._save_path.value = tmp_path / "missing" / "m.safetensors"
    widget.save()
    _finish(qtbot, widget)
    assert "could not be saved" in errors[-1]
    assert not (tmp_path / "missing").exists()


def test_card_of_a_fine_tuned_model(tiny_model, tmp_path):
    """A model trained from a named one carries the origin, not the origin's scores."""
    from napari_unet.synthetic import make_cells
    from napari_unet.training import TrainConfig, train_model

    tiny_model.metadata.update(
        {"name": "lab model", "evaluation": {"ap50": 0.91, "mean_iou": 0.8, "images": 3}}
    )
    save_model(tiny_model, tmp_path / "lab.safetensors")
    start = load_model(tmp_path / "lab.safetensors")
    image, labels = make_cells((96, 96), diameter=(10, 16), seed=2)
    cfg = TrainConfig(tile_size=92, steps=2, time_limit=None, validation_fraction=0.0)
    tuned = train_model(image, labels, model=start, config=cfg, device="cpu")
    card = describe_model(tuned)
    assert card.startswith("lab model (fine-tuned)")
    assert "Started from: lab model" in card
    assert "Held-out test" not in card
    assert tuned.metadata["training"]["started_from"]["evaluation"]["ap50"] == 0.91
    assert np.isfinite(tuned.metadata["training"]["seconds"])


def test_export_for_bioimageio(make_napari_viewer, qtbot, tiny_model, tmp_path, monkeypatch):
    """The button asks for a file, exports in a worker with progress, then loads back."""
    import napari_unet._qt.model_widget as mw

    infos, errors = [], []
    monkeypatch.setattr(mw, "show_info", infos.append)
    monkeypatch.setattr(mw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.export()  # no model yet
    assert "no model to export" in errors[-1]
    tiny_model.metadata["name"] = "tiny dock model"
    session_for(viewer).set_model(tiny_model, "trained here")
    target = tmp_path / "shared"  # the suffix is added
    # the dialog (patched on the class: a magicgui container refuses deleting attributes)
    monkeypatch.setattr(
        mw.ModelWidget, "_ask_export_path", lambda self: mw.Path(str(target) + ".zip")
    )
    steps = []
    real_step = mw.ModelWidget._on_export_step
    monkeypatch.setattr(
        mw.ModelWidget, "_on_export_step", lambda self, e: (steps.append(e), real_step(self, e))
    )
    widget._export.native.click()
    _finish(qtbot, widget)
    written = tmp_path / "shared.zip"
    assert written.is_file() and infos[-1] == f"bioimage.io package written to {written}."
    assert widget._status.value == infos[-1]
    assert [e.done for e in steps] == list(range(8))
    back = load_model(written)
    assert back.metadata == tiny_model.metadata
    for a, b in zip(back.state_dict().values(), tiny_model.state_dict().values()):
        assert torch.equal(a, b)
    # a folder that does not exist: one sentence in the dock, nothing written
    monkeypatch.setattr(mw.ModelWidget, "_ask_export_path", lambda self: tmp_path / "no" / "m.zip")
    widget.export()
    _finish(qtbot, widget)
    assert errors[-1].startswith("The model could not be exported: The folder")
    assert widget._status.value == f"Error: {errors[-1]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.zip"]
    # cancelling the dialog does nothing
    monkeypatch.setattr(mw.ModelWidget, "_ask_export_path", lambda self: None)
    widget.export()
    assert not widget.busy


def test_opening_the_docks_loads_no_sharing_library():
    """bioimageio, onnx and ome-zarr load when an export runs, not when the docks open."""
    import subprocess
    import sys

    code = (
        "import napari\n"
        "v = napari.Viewer(show=False)\n"
        "for name in ('Annotate', 'Train', 'Predict', 'Model'):\n"
        "    v.window.add_plugin_dock_widget('napari-unet', name)\n"
        "print(' '.join(sys.modules))\n"
        "v.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = {m.split(".")[0] for m in out}
    assert "napari_unet" in loaded
    assert not loaded & {"bioimageio", "onnx", "onnxruntime", "onnxscript", "ome_zarr"}
