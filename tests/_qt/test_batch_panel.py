import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import save_model


@pytest.fixture
def model_file(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path)
    return path


@pytest.fixture
def notes(monkeypatch):
    """The batch's notifications, by kind."""
    import napari_unet._qt.batch_panel as panel

    seen = {"error": [], "warning": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(panel, f"show_{kind}", seen[kind].append)
    return seen


def _dock(viewer, model_file):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget._model_choice.value = "file"
    widget._model_path.value = model_file
    return widget


def _click_and_wait(qtbot, batch, button):
    button.native.click()  # as a user clicks: through Qt
    assert batch.worker is not None
    qtbot.waitUntil(lambda: batch.worker is None, timeout=60000)


def test_segment_all_open_images(make_napari_viewer, qtbot, model_file, rng, notes):
    import dask.array as da

    viewer = make_napari_viewer()
    viewer.add_image(rng.random((64, 80)).astype(np.float32), name="field 1")
    viewer.add_image(rng.random((48, 40)).astype(np.float32), name="field 2")
    viewer.add_image(da.zeros((2000, 2000), chunks=500), name="huge")  # not in memory
    user = viewer.add_labels(np.ones((64, 80), np.int32), name="my labels")
    widget = _dock(viewer, model_file)
    batch = widget._batch
    _click_and_wait(qtbot, batch, batch._all_open)
    seg1, seg2 = viewer.layers["field 1 segmentation"], viewer.layers["field 2 segmentation"]
    assert seg1.data.shape == (64, 80) and seg2.data.shape == (48, 40)
    assert "field 1 probability" in [layer.name for layer in viewer.layers]
    assert "huge segmentation" not in [layer.name for layer in viewer.layers]
    assert (user.data == 1).all()  # the user's layer is untouched
    counts = {"field 1": int(seg1.data.max()), "field 2": int(seg2.data.max())}
    summary = batch._summary.value
    assert summary.startswith(f"3 images: {sum(counts.values()):,} objects; 1 failed: huge.")
    assert f"field 1: {counts['field 1']:,} objects" in summary
    assert "huge failed: huge is not in memory" in summary
    assert notes["warning"] and "huge" in notes["warning"][-1]
    assert batch._progress.value == batch._progress.max
    # again: the layers are updated in place, none is added; derived layers are not images
    n_layers = len(viewer.layers)
    seg1.data = np.zeros_like(seg1.data)
    _click_and_wait(qtbot, batch, batch._all_open)
    assert len(viewer.layers) == n_layers
    assert int(viewer.layers["field 1 segmentation"].data.max()) == counts["field 1"]
    assert batch._summary.value.startswith("3 images:")


def test_segment_a_folder_into_a_chosen_folder(
    make_napari_viewer, qtbot, model_file, tmp_path, rng, notes
):
    images, out = tmp_path / "images", tmp_path / "results"
    images.mkdir()
    out.mkdir()
    tifffile.imwrite(images / "a.tif", (rng.random((50, 60)) * 1000).astype(np.uint16))
    tifffile.imwrite(images / "c.tif", (rng.random((40, 40)) * 1000).astype(np.uint16))
    (images / "bad.tif").write_text("not an image")
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file)
    batch = widget._batch
    batch._run_folder.native.click()  # no folder chosen yet
    assert batch.worker is None and "folder" in notes["error"][-1]
    batch._folder.value = images
    batch._where.value = "in a folder I choose"
    assert not batch._out_dir.native.isHidden()
    batch._out_dir.value = out
    _click_and_wait(qtbot, batch, batch._run_folder)
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "c_labels.tif"]
    a = int(tifffile.imread(out / "a_labels.tif").max())
    summary = batch._summary.value
    assert summary.splitlines()[0].startswith("3 images:") and "1 failed: bad.tif" in summary
    assert f"a.tif: {a:,} objects" in summary
    assert "bad.tif failed:" in summary and "could not be read as an image" in summary
    assert "bad.tif" in notes["warning"][-1]
    assert len(viewer.layers) == 0  # files only, no layers
    # next to the images, as zarr stores
    batch._where.value = "next to the images"
    batch._format.value = "zarr"
    _click_and_wait(qtbot, batch, batch._run_folder)
    from napari_unet.bigimage import open_prediction

    assert open_prediction(images / "c_labels.zarr").labels[0].shape == (40, 40)
    # once more: the results exist, so every image fails and they are kept
    _click_and_wait(qtbot, batch, batch._run_folder)
    assert "already exists" in batch._summary.value
    batch._overwrite.value = True
    _click_and_wait(qtbot, batch, batch._run_folder)
    assert batch._summary.value.splitlines()[0].endswith("1 failed: bad.tif.")


def test_folder_problems_and_cancel(make_napari_viewer, qtbot, model_file, tmp_path, rng, notes):
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file)
    batch = widget._batch
    empty = tmp_path / "empty"
    empty.mkdir()
    batch._folder.value = empty
    _click_and_wait(qtbot, batch, batch._run_folder)
    assert "holds no images" in notes["error"][-1]
    # cancel: within the first image, nothing half-written is left
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.tif", "b.tif"):  # smoothed: white noise never reaches the model
        pixels = ndi.gaussian_filter(rng.random((400, 400)), 1.5).astype(np.float32)
        tifffile.imwrite(images / name, pixels)
    batch._folder.value = images
    widget._tile.value = 16
    batch._run_folder.native.click()
    qtbot.waitUntil(lambda: batch._progress.value > 0, timeout=30000)
    batch._cancel.native.click()
    qtbot.waitUntil(lambda: batch.worker is None, timeout=30000)
    assert batch._summary.value.startswith("Cancelled after 0 of 2 images")
    assert sorted(p.name for p in images.iterdir()) == ["a.tif", "b.tif"]
    assert batch._all_open.enabled and batch._run_folder.enabled and not batch._cancel.enabled


def test_results_go_into_the_open_project(make_napari_viewer, qtbot, model_file, tmp_path, rng):
    from napari_unet._qt.project_session import project_for

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", (rng.random((50, 60)) * 1000).astype(np.uint16))
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file)
    batch = widget._batch
    assert "into the project" not in batch._where.choices  # no project open yet
    project = project_for(viewer).choose_folder(tmp_path / "proj")
    assert "into the project" in batch._where.choices
    batch._folder.value = images
    batch._where.value = "into the project"
    _click_and_wait(qtbot, batch, batch._run_folder)
    assert (project.folder / "predictions" / "a_labels.tif").is_file()
    assert not (images / "a_labels.tif").exists()
