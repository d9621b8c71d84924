"""Project folders: manifest, annotations with versions, regions, moved images."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from napari_unet import NapariUnetError
from napari_unet.project import (
    EmptyAnnotationError,
    Project,
    RegionShapes,
    annotation_versions,
    default_project_folder,
    load_annotation,
    load_region,
    safe_name,
    save_annotation,
)


def _image(tmp_path, name="cells.tif", shape=(40, 50), seed=0):
    path = tmp_path / name
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8))
    return path


def test_default_folder_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_DATA_DIR", str(tmp_path / "data"))
    assert default_project_folder(tmp_path / "a" / "cells.ome.tif", "x") == (
        tmp_path / "a" / "cells.napari-unet"
    )
    made = default_project_folder(None, "nuclei [1]", when=1700000000.0)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1700000000.0))
    assert made == tmp_path / f"data/projects/nuclei-1-{stamp}"
    # an image not from disk never lands in an existing project of the same name
    made.mkdir(parents=True)
    again = default_project_folder(None, "nuclei [1]", when=1700000000.0)
    assert again == tmp_path / f"data/projects/nuclei-1-{stamp}-2" and not again.exists()
    assert safe_name("cells / DAPI: 2") == "cells-DAPI-2"
    assert safe_name("cells", {"cells", "CELLS-2"}) == "cells-3"
    assert safe_name("///") == "image"


def test_manifest_round_trip_with_checksums(tmp_path):
    image = _image(tmp_path)
    project = Project.create(tmp_path / "p")
    name = project.unique_name("cells")
    assert project.unique_name("cells") == "cells-2"  # reserved names are not handed out twice
    project.add_entry(name, image, layer_name="cells", shape=(40, 50), dtype="uint8")
    project.hash_images()
    labels = np.zeros((40, 50), np.uint16)
    labels[5:10, 5:10] = 3
    project.save_labels(name, labels)
    region = RegionShapes(
        ndim=2,
        shape_types=["rectangle", "polygon"],
        data=[np.array([[0, 0], [0, 20], [20, 20], [20, 0.5]]), np.array([[1, 1], [9, 3], [4, 8]])],
    )
    project.save_region(name, region)

    doc = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert doc["format"] == 1 and doc["entries"][0]["image"] == str(image)
    again = Project.open(tmp_path / "p")
    record = again.entry("cells")
    assert record.shape == (40, 50) and record.dtype == "uint8" and len(record.sha256) == 64
    np.testing.assert_array_equal(load_annotation(again.path(record.labels)), labels)
    back = load_region(again.path(record.region))
    assert back.shape_types == ["rectangle", "polygon"] and back.ndim == 2
    for a, b in zip(back.data, region.data):
        np.testing.assert_allclose(a, b)
    assert again.check_images() == []
    # a mask region replaces the shapes file
    project.save_region(name, labels > 0)
    assert Project.open(tmp_path / "p").entry("cells").region == "entries/cells/region.tif"
    assert load_region(tmp_path / "p/entries/cells/region.tif").sum() == 25
    assert not (tmp_path / "p/entries/cells/region.json").exists()


def test_no_image_is_copied_unless_asked(tmp_path):
    image = _image(tmp_path, shape=(300, 300))
    project = Project.create(tmp_path / "p")
    project.add_entry("cells", image, shape=(300, 300), dtype="uint8")
    project.save_labels("cells", np.ones((300, 300), np.uint8))
    sizes = sum(f.stat().st_size for f in (tmp_path / "p").rglob("*") if f.is_file())
    assert sizes < image.stat().st_size  # paths and checksums, not pixels
    stored = project.store_image("cells", tifffile.imread(image))
    np.testing.assert_array_equal(tifffile.imread(stored), tifffile.imread(image))
    assert Project.open(tmp_path / "p").entry("cells").stored_image == "entries/cells/image.tif"


def test_moved_and_changed_images_are_one_sentence_each(tmp_path):
    a, b, c = (_image(tmp_path, f"{n}.tif", seed=i) for i, n in enumerate("abc"))
    project = Project.create(tmp_path / "p")
    for path in (a, b, c):
        project.add_entry(path.stem, path, shape=(40, 50), dtype="uint8")
    project.hash_images()
    a.rename(tmp_path / "moved.tif")
    tifffile.imwrite(b, np.zeros((40, 50), np.uint8))  # same place, other pixels
    problems = Project.open(tmp_path / "p").check_images()
    assert len(problems) == 2
    assert "'a' is no longer at" in problems[0] and str(a) in problems[0]
    assert "'b'" in problems[1] and "changed" in problems[1]
    assert all(p.count(". ") == 0 and p.endswith(".") for p in problems)
    project.relocate("a", tmp_path / "moved.tif")
    assert len(Project.open(tmp_path / "p").check_images()) == 1


def test_empty_never_replaces_an_annotation_unless_asked(tmp_path):
    path = tmp_path / "e" / "labels.tif"
    full = np.zeros((64, 64), np.uint32)
    full[10:30, 10:30] = 1
    save_annotation(path, full, version_every=0)
    with pytest.raises(EmptyAnnotationError, match="now empty"):
        save_annotation(path, np.zeros_like(full), version_every=0)
    np.testing.assert_array_equal(load_annotation(path), full)  # untouched
    save_annotation(path, np.zeros_like(full), allow_empty=True, version_every=0)
    assert not load_annotation(path).any()
    versions = annotation_versions(path)
    assert len(versions) == 1
    np.testing.assert_array_equal(load_annotation(versions[0]), full)  # the user can go back
    # an empty annotation may replace an empty one (nothing to lose)
    save_annotation(path, np.zeros_like(full), version_every=0)


def test_last_versions_are_kept(tmp_path):
    path = tmp_path / "labels.tif"
    for k in range(1, 9):
        save_annotation(path, np.full((8, 8), k, np.uint8), version_every=0)
    versions = annotation_versions(path)
    assert len(versions) == 5
    assert [int(load_annotation(v)[0, 0]) for v in versions] == [7, 6, 5, 4, 3]
    # autosaves a few seconds apart do not push the older versions out...
    save_annotation(path, np.full((8, 8), 9, np.uint8))
    assert int(load_annotation(annotation_versions(path)[0])[0, 0]) == 7
    # ...but losing more than half the labelled pixels always keeps what was there
    half = np.zeros((8, 8), np.uint8)
    half[0, 0] = 10
    save_annotation(path, half)
    assert int(load_annotation(annotation_versions(path)[0])[0, 0]) == 9


def test_bad_projects_are_one_sentence(tmp_path):
    with pytest.raises(NapariUnetError, match="holds no napari-unet project"):
        Project.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(NapariUnetError, match="is damaged"):
        Project.open(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 99}')
    with pytest.raises(NapariUnetError, match="newer napari-unet"):
        Project.open(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NapariUnetError, match="is a file"):
        Project.create(tmp_path / "file")
    with pytest.raises(NapariUnetError, match="integer labels"):
        save_annotation(tmp_path / "l.tif", np.zeros((4, 4), np.float32))


def test_removed_entry_keeps_its_files_and_name(tmp_path):
    project = Project.create(tmp_path / "p")
    project.add_entry("cells")
    project.save_labels("cells", np.ones((4, 4), np.uint8))
    project.remove_entry("cells")
    assert (tmp_path / "p/entries/cells/labels.tif").is_file()
    assert project.unique_name("cells") == "cells-2"  # its folder is not reused


def test_project_import_is_light():
    code = "import napari_unet.project as p; p.Project; import sys; print(' '.join(sys.modules))"
    mods = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not mods & {"torch", "qtpy", "napari"}


def test_unwritable_folder(tmp_path, monkeypatch):
    # permissions cannot be denied to root (CI): stub the check, as tests/test_robustness.py does
    import napari_unet.project.folder as folder

    monkeypatch.setattr(folder.os, "access", lambda *a, **k: False)
    with pytest.raises(NapariUnetError, match="is not writable"):
        Project.create(tmp_path / "p")


def test_a_project_folder_has_one_owner(tmp_path):
    import os
    import socket

    from napari_unet.project import ProjectInUseError, ProjectLock

    folder = tmp_path / "p"
    first = ProjectLock(folder)
    first.acquire(create=False)  # claimed in this process, nothing on disk yet
    assert not folder.exists()
    second = ProjectLock(folder)  # another viewer of this process
    with pytest.raises(ProjectInUseError, match="open in another napari window"):
        second.acquire()
    first.acquire()  # again, now on disk
    assert json.loads(first.path.read_text())["token"] == first.token
    with pytest.raises(ProjectInUseError):
        second.acquire()
    first.release()
    assert not first.path.exists()
    second.acquire()
    second.release()
    # a live process on this host (our parent) holds it: refused, in one sentence
    host = socket.gethostname()
    live = {"pid": os.getppid(), "host": host, "token": "theirs"}
    first.path.write_text(json.dumps(live))
    with pytest.raises(ProjectInUseError) as refused:
        ProjectLock(folder).acquire()
    assert str(refused.value).startswith(f"The project {folder} is open in another napari window;")
    assert json.loads(first.path.read_text()) == live  # untouched
    # a process that has ended: its lock is stale and taken over
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    first.path.write_text(json.dumps({"pid": int(ended.stdout), "host": host, "token": "old"}))
    taker = ProjectLock(folder)
    taker.acquire()
    assert json.loads(first.path.read_text())["token"] == taker.token
    taker.release()


def test_versions_kept_across_a_seconds_turn_keep_their_order(tmp_path, monkeypatch):
    """The version's name reads the clock once (read twice, a turn of the second between
    the two readings named it before the versions kept a moment earlier)."""
    import time as clock

    path = tmp_path / "labels.tif"
    readings = iter([1_700_000_000_999_999_000, 1_700_000_001_000_001_000])
    real = clock.time_ns
    monkeypatch.setattr(clock, "time_ns", lambda: next(readings, real()))
    for k in range(1, 4):
        save_annotation(path, np.full((8, 8), k, np.uint8), version_every=0)
    assert [int(load_annotation(v)[0, 0]) for v in annotation_versions(path)] == [2, 1]
