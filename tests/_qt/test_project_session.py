"""Project folders in the GUI: autosave as the user paints, open a project, moved images."""

import time

import numpy as np
import pytest
import tifffile
import torch
from napari.layers import Labels, Shapes

from napari_unet._qt import project_session as ps_module
from napari_unet._qt.layers import role_of
from napari_unet._qt.project_panel import NO_PROJECT, ProjectPanel
from napari_unet._qt.project_session import project_for
from napari_unet._qt.session import state_for
from napari_unet.project import Project, annotation_versions, load_annotation


@pytest.fixture
def on_disk(tmp_path):
    """Write an image file and return its path."""

    def write(name="cells", shape=(60, 80), seed=0):
        path = tmp_path / f"{name}.tif"
        rng = np.random.default_rng(seed)
        tifffile.imwrite(path, rng.integers(0, 255, shape, dtype=np.uint8))
        return path

    return write


def _annotate(viewer, path):
    """Open ``path`` and make a new annotation for it in the Annotate dock, as a user does."""
    image = viewer.open(str(path))[0]
    annotate = viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")[1]
    annotate._image.value = image
    annotate.new_annotation()
    return image, viewer.layers[f"{image.name} annotation"], annotate


def _painted_array(viewer, pixels, name, value=1):
    """An image from no file with an annotation painted once and saved; (session, image)."""
    image = viewer.add_image(pixels, name=name)
    labels = viewer.add_labels(np.zeros(pixels.shape, np.uint8), name=f"{name} annotation")
    session = project_for(viewer)
    state_for(viewer).annotation.set(image=image, labels=labels)  # as the Annotate dock does
    labels.paint((10, 10), value)
    assert session.flush()
    return session, image


def _saved(session, qtbot, after, timeout=20000):
    qtbot.waitUntil(
        lambda: (
            session.last_saved is not None and session.last_saved > after and not session.pending
        ),
        timeout=timeout,
    )


def test_painting_is_autosaved_next_to_the_image(make_napari_viewer, qtbot, on_disk):
    viewer = make_napari_viewer()
    path = on_disk()
    image, labels, annotate = _annotate(viewer, path)
    session = project_for(viewer)
    panel = ProjectPanel(viewer)
    assert panel._folder.value == NO_PROJECT
    folder = path.parent / "cells.napari-unet"
    qtbot.wait(2500)  # an empty new annotation makes no folder
    assert not folder.exists()
    t0 = time.time()
    labels.paint((20, 30), 1)
    labels.paint((40, 60), 2)
    _saved(session, qtbot, t0)
    assert session.last_saved - t0 < 5.0  # at most 5 s after painting stops
    saved = load_annotation(folder / "entries" / "cells" / "labels.tif")
    np.testing.assert_array_equal(saved, labels.data)
    record = Project.open(folder).entry("cells")
    assert record.image == str(path) and len(record.sha256) == 64 and record.shape == (60, 80)
    panel._show()
    assert panel._folder.value == str(folder) and panel._saved.value.startswith("Saved ")
    # a region drawn afterwards is saved too, as shapes
    annotate.new_region()
    region = viewer.layers["cells annotated region"]
    t1 = time.time()
    region.add_rectangles(np.array([[5, 5], [30, 40]]))
    _saved(session, qtbot, t1)
    assert Project.open(folder).entry("cells").region == "entries/cells/region.json"
    # undo writes pixels without a paint event: still saved
    t2 = time.time()
    labels.undo()
    _saved(session, qtbot, t2)
    np.testing.assert_array_equal(
        load_annotation(folder / "entries" / "cells" / "labels.tif"), labels.data
    )
    assert not (labels.data == 2).any()


def test_an_empty_annotation_never_replaces_a_saved_one(make_napari_viewer, qtbot, on_disk):
    viewer = make_napari_viewer()
    path = on_disk()
    _, labels, _ = _annotate(viewer, path)
    session = project_for(viewer)
    panel = ProjectPanel(viewer)
    file = path.parent / "cells.napari-unet" / "entries" / "cells" / "labels.tif"
    t0 = time.time()
    labels.paint((20, 30), 1)
    _saved(session, qtbot, t0)
    painted = load_annotation(file)
    assert painted.any()
    told = []
    session.problem.connect(told.append)
    labels.data = np.zeros_like(labels.data)  # everything gone, e.g. by a mistaken fill
    qtbot.waitUntil(lambda: session.refused_entries == ["cells"], timeout=20000)
    assert len(told) == 1 and "now empty" in told[0]
    np.testing.assert_array_equal(load_annotation(file), painted)  # nothing lost
    assert not panel._keep_empty.native.isHidden()
    panel._keep_empty.changed.emit(True)  # the user asks to keep it empty
    qtbot.waitUntil(lambda: not load_annotation(file).any(), timeout=20000)
    versions = annotation_versions(file)
    assert versions and np.array_equal(load_annotation(versions[0]), painted)
    qtbot.waitUntil(lambda: panel._keep_empty.native.isHidden(), timeout=3000)


def test_saving_empty_on_request_survives_a_write_in_flight(make_napari_viewer, qtbot, on_disk):
    """The user's "save it empty" arrives while an autosave is still writing: it is kept."""
    viewer = make_napari_viewer()
    path = on_disk()
    _, labels, _ = _annotate(viewer, path)
    session = project_for(viewer)
    file = path.parent / "cells.napari-unet" / "entries" / "cells" / "labels.tif"
    t0 = time.time()
    labels.paint((20, 30), 1)
    _saved(session, qtbot, t0)
    labels.data = np.zeros_like(labels.data)
    qtbot.waitUntil(lambda: session.refused_entries == ["cells"], timeout=20000)
    qtbot.waitUntil(lambda: session._entries[0].worker is None, timeout=20000)
    entry = session._entries[0]
    session._save(entry)  # an autosave in flight...
    assert entry.worker is not None
    session.save_now("cells", allow_empty=True)  # ...when the user asks
    qtbot.waitUntil(lambda: not load_annotation(file).any(), timeout=20000)


def test_a_project_round_trip(make_napari_viewer, qtbot, on_disk, tmp_path):
    viewer = make_napari_viewer()
    a, b = on_disk("a", (50, 70), 1), on_disk("b", (64, 40), 2)
    image_a, labels_a, annotate = _annotate(viewer, a)
    session = project_for(viewer)
    folder = session.choose_folder(tmp_path / "my project").folder
    labels_a.paint((10, 10), 1)
    annotate.new_region()
    region = viewer.layers["a annotated region"]
    region.add_rectangles(np.array([[2, 3], [30, 40]]))
    region.add_polygons(np.array([[35, 5], [45, 20], [48, 2]]))
    image_b = viewer.open(str(b))[0]
    labels_b = viewer.add_labels(np.zeros((64, 40), np.uint16), name="b cells")
    labels_b.data_setitem((np.array([3, 4, 5]), np.array([7, 7, 7])), 9)
    session.track(None, image_b, labels_b)  # as the Train dock adds an entry
    assert session.flush()
    assert Project.open(folder).names == ["a", "b"]
    # two rounds; the first one's model is the one in use
    from napari_unet import UNet

    models = [UNet(base_channels=2, depth=2), UNet(base_channels=3, depth=2)]
    history = Project.open(folder).history
    for model in models:
        history.add_round(
            model, start_model="scratch", cells=2, steps=1, seconds=0.1, ap50=None,
            mean_iou=None, val_cells=0, entries=["a", "b"],
        )  # fmt: skip
    history.set_current(1)
    state_for(viewer).close()  # one window per project: the first one is closed

    other = make_napari_viewer()
    train = other.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    reopened = project_for(other)
    with qtbot.waitSignal(reopened.opened, timeout=20000) as opened:
        reopened.open(folder)
    entries = opened.args[0]
    assert [e.name for e in entries] == ["a", "b"]
    ea, eb = entries
    np.testing.assert_array_equal(ea.image.data, image_a.data)
    np.testing.assert_array_equal(ea.labels.data, labels_a.data)
    np.testing.assert_array_equal(eb.labels.data, labels_b.data)
    assert eb.labels.data.dtype == np.uint16
    assert isinstance(ea.region, Shapes) and eb.region is None
    assert ea.region.shape_type == ["rectangle", "polygon"]
    for got, want in zip(ea.region.data, region.data):
        np.testing.assert_allclose(got, want)
    assert role_of(ea.labels) == "annotation" and role_of(ea.region) == "region"
    assert state_for(other).annotation.labels is ea.labels  # current when it was saved
    in_use = state_for(other).model
    assert in_use.model.config["base_channels"] == 2 and "round 1" in in_use.source
    for (k, w), (_, v) in zip(in_use.model.state_dict().items(), models[0].state_dict().items()):
        assert torch.equal(w, v), k
    assert [e.name for e in train.training_set.entries] == ["a", "b"]  # the Train dock's list
    # the restored layers are tracked: a stroke in the reopened project is saved there
    t0 = time.time()
    ea.labels.paint((40, 60), 5)
    _saved(reopened, qtbot, t0)
    assert (load_annotation(folder / "entries/a/labels.tif") == 5).any()
    assert Project.open(folder).names == ["a", "b"]  # no duplicate entry


def test_a_moved_image_is_one_sentence_and_the_rest_opens(
    make_napari_viewer, qtbot, on_disk, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    a, b = on_disk("a", seed=1), on_disk("b", seed=2)
    session = project_for(viewer)
    session.choose_folder(tmp_path / "p")
    for path in (a, b):
        image = viewer.open(str(path))[0]
        labels = viewer.add_labels(np.zeros((60, 80), np.uint8), name=f"{path.stem} ann")
        labels.paint((30, 30), 3)
        session.track(None, image, labels)
    assert session.flush()
    moved = tmp_path / "elsewhere.tif"
    a.rename(moved)
    state_for(viewer).close()

    other = make_napari_viewer()
    warnings = []
    monkeypatch.setattr(ps_module, "show_warning", warnings.append)
    reopened = project_for(other)
    panel = ProjectPanel(other)
    with qtbot.waitSignal(reopened.opened, timeout=20000) as opened:
        reopened.open(tmp_path / "p")
    ea, eb = opened.args[0]
    assert len(warnings) == 1 and str(a) in warnings[0] and "'a'" in warnings[0]
    assert ea.image is None and isinstance(ea.labels, Labels) and ea.labels.data.any()
    assert eb.image is not None and eb.labels.data.any()  # the rest opens
    assert panel._message.value == warnings[0] and not panel._locate.native.isHidden()
    # the user points at the new place
    monkeypatch.setattr(ProjectPanel, "_ask_file", lambda self, caption, near: str(moved))
    panel._locate.changed.emit(True)
    qtbot.waitUntil(lambda: not reopened.moved, timeout=10000)
    assert "a" in other.layers and Project.open(tmp_path / "p").entry("a").image == str(moved)
    layers = list(other.layers)
    assert layers.index(other.layers["a"]) < layers.index(ea.labels)  # under its annotation
    qtbot.waitUntil(lambda: panel._locate.native.isHidden(), timeout=3000)


def test_panel_choose_and_open_through_its_buttons(
    make_napari_viewer, qtbot, on_disk, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    _, labels, _ = _annotate(viewer, on_disk())
    panel = ProjectPanel(viewer)
    session = project_for(viewer)
    monkeypatch.setattr(ProjectPanel, "_ask_folder", lambda self, caption: str(tmp_path / "chosen"))
    panel._choose.changed.emit(True)
    assert panel._folder.value == str(tmp_path / "chosen")
    labels.paint((10, 10), 4)
    assert session.flush()
    state_for(viewer).close()  # gives the folder up
    other = make_napari_viewer()
    panel2 = ProjectPanel(other)
    panel2._open.changed.emit(True)
    qtbot.waitUntil(lambda: "cells annotation" in other.layers, timeout=20000)
    assert (other.layers["cells annotation"].data == 4).any()
    assert panel2._folder.value == str(tmp_path / "chosen")
    # a folder that is not a project: one sentence, nothing else happens
    errors = []
    monkeypatch.setattr(ps_module, "show_error", errors.append)
    monkeypatch.setattr(ProjectPanel, "_ask_folder", lambda self, caption: str(tmp_path))
    panel2._open.changed.emit(True)
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert "holds no napari-unet project" in errors[0]
    assert panel2._message.value == errors[0]


def test_closing_writes_what_the_timer_had_not(make_napari_viewer, qtbot, on_disk):
    viewer = make_napari_viewer()
    path = on_disk()
    _, labels, _ = _annotate(viewer, path)
    labels.paint((25, 25), 7)
    state_for(viewer).close()  # what napari's close runs, before the 2 s timer
    saved = load_annotation(path.parent / "cells.napari-unet/entries/cells/labels.tif")
    assert (saved == 7).any()


def test_layers_handed_over_by_proxy_are_followed(make_napari_viewer, qtbot, on_disk):
    """Docks may see napari's PublicOnlyProxy of a layer; its strokes are still saved."""
    from napari.utils._proxies import PublicOnlyProxy

    viewer = make_napari_viewer()
    path = on_disk()
    image = viewer.open(str(path))[0]
    labels = viewer.add_labels(np.zeros((60, 80), np.uint8), name="mine")
    session = project_for(viewer)
    session.track(None, PublicOnlyProxy(image), PublicOnlyProxy(labels))
    assert session.entry_name(labels) is None  # the same entry, whichever handle is used
    t0 = time.time()
    labels.paint((30, 30), 6)
    _saved(session, qtbot, t0)
    assert session.entry_name(labels) == "cells"
    assert (load_annotation(path.parent / "cells.napari-unet/entries/cells/labels.tif") == 6).any()


def test_an_image_not_from_a_file_is_named_when_it_cannot_come_back(
    make_napari_viewer, qtbot, monkeypatch
):
    monkeypatch.setattr("napari_unet._qt.autosave.AUTO_KEEP_BYTES", 1000)  # this image is "large"
    told = []
    monkeypatch.setattr(ps_module, "show_warning", told.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((40, 50)), name="sample")
    labels = viewer.add_labels(np.zeros((40, 50), np.uint8), name="sample annotation")
    session = project_for(viewer)
    state_for(viewer).annotation.set(image=image, labels=labels)  # as the Annotate dock does
    labels.paint((20, 20), 2)
    assert session.flush()
    labels.paint((22, 22), 2)
    assert session.flush()
    assert told == [  # once, with its size
        "The image 'sample' came from no file and takes 0 MB; press Keep copies of the "
        "images (Train dock) to keep it with the project, so that the project can open it again."
    ]
    folder = session.project.folder
    assert folder.parent.name == "projects"  # in the user's data folder (the test's own)
    state_for(viewer).close()
    other = make_napari_viewer()
    warnings = []
    monkeypatch.setattr(ps_module, "show_warning", warnings.append)
    with qtbot.waitSignal(project_for(other).opened, timeout=20000) as opened:
        project_for(other).open(folder)
    (entry,) = opened.args[0]
    assert entry.image is None and (entry.labels.data == 2).any()
    assert len(warnings) == 1 and "was not read from a file" in warnings[0]
    # with the same image open, the annotation finds it
    state_for(other).close()
    third = make_napari_viewer()
    same = third.add_image(np.asarray(image.data), name="sample")
    with qtbot.waitSignal(project_for(third).opened, timeout=20000) as opened:
        project_for(third).open(folder)
    assert opened.args[0][0].image is same


def _project_with(folder, image_path, layer_name, shape, value):
    """A project saved by an earlier session: one entry painted with ``value``."""
    project = Project.create(folder)
    name = project.unique_name(layer_name)
    project.add_entry(name, image_path, layer_name=layer_name, shape=shape, dtype="uint8")
    labels = np.zeros(shape, np.uint8)
    labels[5:9, 5:9] = value
    project.save_labels(name, labels)
    return folder


def test_opening_a_project_keeps_the_current_annotation_saved(
    make_napari_viewer, qtbot, on_disk, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    path_a = on_disk("a", seed=1)
    image_a, labels_a, _ = _annotate(viewer, path_a)
    session = project_for(viewer)
    first = path_a.parent / "a.napari-unet"
    labels_a.paint((20, 20), 1)  # not yet autosaved when the other project opens
    # a project whose image moved: nothing of it becomes the current annotation
    moved = _project_with(tmp_path / "moved", tmp_path / "gone.tif", "gone", (60, 80), 9)
    with qtbot.waitSignal(session.opened, timeout=20000):
        session.open(moved)
    assert (load_annotation(first / "entries/a/labels.tif") == 1).any()  # written first
    assert state_for(viewer).annotation.labels is labels_a  # still the current annotation
    t0 = time.time()
    labels_a.paint((40, 40), 2)
    assert session.pending
    _saved(session, qtbot, t0)
    assert Project.open(moved).names == ["gone", "a"]  # saved in the open project
    assert (load_annotation(moved / "entries/a/labels.tif") == 2).any()
    # a project whose image is found: its annotation becomes the current one
    path_b = on_disk("b", seed=2)
    found = _project_with(tmp_path / "found", path_b, "b", (60, 80), 7)
    labels_a.paint((50, 50), 3)
    with qtbot.waitSignal(session.opened, timeout=20000):
        session.open(found)
    assert (load_annotation(moved / "entries/a/labels.tif") == 3).any()  # written first
    assert state_for(viewer).annotation.labels is not labels_a
    # the user chooses the old annotation again: said in one sentence, and saved
    told = []
    monkeypatch.setattr(ps_module, "show_info", told.append)
    state_for(viewer).annotation.set(image=image_a, labels=labels_a)
    assert len(told) == 1 and str(moved) in told[0] and str(found) in told[0]
    labels_a.paint((10, 60), 4)
    state_for(viewer).close()
    assert Project.open(found).names == ["b", "a"]
    assert (load_annotation(found / "entries/a/labels.tif") == 4).any()
    assert (load_annotation(moved / "entries/a/labels.tif") == 3).any()  # the old one kept


def test_two_windows_never_share_a_project_folder(
    make_napari_viewer, qtbot, on_disk, tmp_path, monkeypatch
):
    import json
    import os
    import socket

    path = on_disk()
    one, two = make_napari_viewer(), make_napari_viewer()
    _, labels1, _ = _annotate(one, path)
    _, labels2, _ = _annotate(two, path)
    warnings, errors = [], []
    monkeypatch.setattr(ps_module, "show_warning", warnings.append)
    monkeypatch.setattr(ps_module, "show_error", errors.append)
    labels1.paint((10, 10), 1)
    labels2.paint((30, 30), 2)
    s1, s2 = project_for(one), project_for(two)
    assert s1.flush() and s2.flush()
    folder = path.parent / "cells.napari-unet"
    sibling = path.parent / "cells.napari-unet-2"
    assert s1.project.folder == folder and s2.project.folder == sibling
    assert warnings == [
        f"The project {folder} is open in another napari window; this window saves into {sibling}."
    ]
    assert load_annotation(folder / "entries/cells/labels.tif").max() == 1  # nothing overwritten
    assert load_annotation(sibling / "entries/cells/labels.tif").max() == 2
    # the second window cannot open or choose the first one's project
    s2.open(folder)
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert errors == [
        f"The project {folder} is open in another napari window; "
        "close it there or choose another folder."
    ]
    assert s2.project.folder == sibling and "cells annotation [1]" not in two.layers
    assert s2.choose_folder(folder) is None and len(errors) == 2
    # a folder held by another live napari process is refused too
    held = tmp_path / "held"
    held.mkdir()
    lock = {"pid": os.getppid(), "host": socket.gethostname(), "token": "another"}
    (held / ".lock").write_text(json.dumps(lock))
    assert s2.choose_folder(held) is None and len(errors) == 3 and str(held) in errors[2]
    # closed, the first window gives the folder up
    state_for(one).close()
    assert not (folder / ".lock").exists() and (sibling / ".lock").exists()
    state_for(two).close()
    assert not (sibling / ".lock").exists()


def test_an_image_not_from_a_file_starts_a_new_project(make_napari_viewer, qtbot):
    from napari_unet.project import data_folder

    # an unrelated session left a project for a layer of the same name
    Project.create(data_folder() / "projects" / "Image")
    viewer = make_napari_viewer()
    session, _ = _painted_array(viewer, np.zeros((30, 40)), "Image")
    folder = session.project.folder
    assert folder.parent == data_folder() / "projects" and folder.name.startswith("Image-")
    assert Project.open(data_folder() / "projects" / "Image").names == []  # untouched
    # another window's image of the same name gets its own new folder
    other = make_napari_viewer()
    image2 = other.add_image(np.zeros((30, 40)), name="Image")
    labels2 = other.add_labels(np.zeros((30, 40), np.uint8), name="Image annotation")
    state_for(other).annotation.set(image=image2, labels=labels2)
    labels2.paint((10, 10), 2)
    assert project_for(other).flush()
    assert project_for(other).project.folder not in (folder, data_folder() / "projects/Image")


def test_kept_image_copies_bring_back_an_image_not_from_a_file(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    pixels = np.random.default_rng(1).integers(0, 4000, (40, 50)).astype(np.uint16)
    image = viewer.add_image(pixels, name="sample")
    labels = viewer.add_labels(np.zeros((40, 50), np.uint8), name="sample annotation")
    session = project_for(viewer)
    panel = ProjectPanel(viewer)
    warnings = []
    monkeypatch.setattr(ps_module, "show_warning", warnings.append)
    panel._store.changed.emit(True)  # nothing saved yet: one sentence, nothing written
    assert warnings == ["No annotation is saved in a project yet: paint first, then keep copies."]
    state_for(viewer).annotation.set(image=image, labels=labels)
    labels.paint((20, 20), 2)
    assert session.flush()
    folder = session.project.folder
    with qtbot.waitSignal(session.stored, timeout=20000) as stored:
        panel._store.changed.emit(True)
    assert stored.args[0].startswith("Copies of 1 image kept in the project (")
    assert panel._message.value == stored.args[0]
    qtbot.wait(1100)  # the panel's clock ticks: the sentence stays
    assert panel._message.value == stored.args[0]
    state_for(viewer).close()
    other = make_napari_viewer()
    with qtbot.waitSignal(project_for(other).opened, timeout=20000) as opened:
        project_for(other).open(folder)
    (entry,) = opened.args[0]
    assert entry.image is not None and entry.image.name == "sample"
    np.testing.assert_array_equal(entry.image.data, pixels)  # the copy is exact
    assert entry.labels.scale.tolist() == entry.image.scale.tolist()


@pytest.mark.parametrize("with_dock", [True, False])
def test_the_first_stroke_after_opening_a_project_is_a_new_cell(
    make_napari_viewer, qtbot, on_disk, tmp_path, with_dock
):
    """The brush of a reopened annotation is its largest id + 1, never a cell already there."""
    path = on_disk("c", seed=4)
    folder = _project_with(tmp_path / "p", path, "c", (60, 80), 7)
    viewer = make_napari_viewer()
    if with_dock:
        annotate = viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")[1]
    session = project_for(viewer)
    with qtbot.waitSignal(session.opened, timeout=20000) as opened:
        session.open(folder)
    labels = opened.args[0][0].labels
    assert labels.selected_label == 8
    if with_dock:
        assert annotate._annotation.value is labels
        qtbot.waitUntil(lambda: annotate.counter is not None and not annotate.counter.busy)
        assert labels.selected_label == 8
    labels.mode = "paint"
    labels.paint((40, 40), labels.selected_label)
    assert set(np.unique(labels.data)) == {0, 7, 8}


def test_a_small_image_not_from_a_file_is_kept_unasked(make_napari_viewer, qtbot):
    """A sample or a pasted array comes back with its project, without pressing anything."""
    viewer = make_napari_viewer()
    pixels = np.random.default_rng(2).integers(0, 4000, (40, 50)).astype(np.uint16)
    session, _ = _painted_array(viewer, pixels, "pasted", 3)
    folder = session.project.folder
    assert Project.open(folder).entry("pasted").stored_image
    state_for(viewer).close()
    other = make_napari_viewer()
    with qtbot.waitSignal(project_for(other).opened, timeout=20000) as opened:
        project_for(other).open(folder)
    (entry,) = opened.args[0]
    np.testing.assert_array_equal(entry.image.data, pixels)
    assert state_for(other).annotation.labels is entry.labels


def test_reopening_restores_layer_order_current_annotation_and_model(
    make_napari_viewer, qtbot, on_disk, tmp_path
):
    from napari_unet import UNet

    viewer = make_napari_viewer()
    a, b = on_disk("a", (50, 70), 1), on_disk("b", (50, 70), 2)
    image_a, labels_a, annotate = _annotate(viewer, a)
    session = project_for(viewer)
    folder = session.choose_folder(tmp_path / "p").folder
    labels_a.paint((10, 10), 1)
    image_b = viewer.open(str(b))[0]
    annotate._image.value = image_b
    annotate.new_annotation()
    labels_b = viewer.layers["b annotation"]
    labels_b.paint((20, 20), 4)
    # the user's own stacking: b's image at the bottom, and a's annotation chosen again
    viewer.layers.move(viewer.layers.index(image_b), 0)
    annotate._annotation.value = labels_a
    assert session.flush()
    session.save_now()  # the view is written with the next save
    assert session.flush()
    order = [layer.name for layer in viewer.layers]
    history = Project.open(folder).history
    history.add_round(
        UNet(base_channels=2, depth=2), start_model="scratch", cells=2, steps=1, seconds=0.1,
        ap50=None, mean_iou=None, val_cells=0, entries=["a", "b"],
    )  # fmt: skip
    history.set_current(1)
    state_for(viewer).close()

    other = make_napari_viewer()
    annotate2, train2, model2 = [
        other.window.add_plugin_dock_widget("napari-unet", n)[1]
        for n in ("Annotate", "Train", "Model")
    ]
    with qtbot.waitSignal(project_for(other).opened, timeout=20000):
        project_for(other).open(folder)
    assert [layer.name for layer in other.layers] == order
    current = state_for(other).annotation.labels
    assert current.name == "a annotation"
    assert annotate2._annotation.value is current and train2._annotation.value is current
    assert train2._start.value == "current"
    assert model2._in_use.value.startswith("round 1 of project p")


def test_open_starts_in_the_projects_folder_and_recent_projects_open(make_napari_viewer, qtbot):
    from napari_unet.project import data_folder

    viewer = make_napari_viewer()
    session, _ = _painted_array(viewer, np.zeros((30, 40), np.uint8), "sample")
    folder = session.project.folder
    state_for(viewer).close()
    other = make_napari_viewer()
    panel = ProjectPanel(other)
    assert panel._start_folder() == str(data_folder() / "projects")  # not the home folder
    assert str(folder) in panel._recent.choices
    with qtbot.waitSignal(project_for(other).opened, timeout=20000) as opened:
        panel._recent.value = str(folder)  # choosing a recent project opens it
    assert opened.args[0][0].name == "sample"
    assert panel._recent.value == ""
