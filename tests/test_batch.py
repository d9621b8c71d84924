import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import NapariUnetError
from napari_unet._generators import run_to_end
from napari_unet.batch import (
    BatchState,
    image_files,
    output_path,
    segment_files,
    segment_folder,
)
from napari_unet.segment import segment


@pytest.fixture
def folder(tmp_path, rng):
    """Three images of different sizes and one file that only looks like an image."""
    d = tmp_path / "images"
    d.mkdir()
    for name, shape in (("a.tif", (60, 70)), ("b.tif", (48, 90)), ("d.png", (40, 40))):
        # smoothed: white noise is "nothing to segment" and never reaches the model
        data = (ndi.gaussian_filter(rng.random(shape), 1.5) * 255).astype(np.uint8)
        if name.endswith(".png"):
            import skimage.io

            skimage.io.imsave(d / name, data, check_contrast=False)
        else:
            tifffile.imwrite(d / name, data)
    (d / "c.tif").write_text("not an image at all")
    return d


def _events(gen):
    events = []
    result = run_to_end(gen, events.append)
    return events, result


def test_image_files_skips_own_outputs_hidden_files_and_others(tmp_path):
    names = "b.tif a.TIFF x_labels.tif x_region.tif x_probabilities.tif .a.tif.123.part"
    for name in names.split() + ["notes.txt", "model.safetensors", "c.ome.tif", "e.jpg"]:
        (tmp_path / name).write_bytes(b"")
    import zarr

    zarr.open_array(tmp_path / "big.zarr", mode="w", shape=(4, 4), dtype="uint8")
    zarr.open_array(tmp_path / "big_labels.zarr", mode="w", shape=(4, 4), dtype="uint8")
    (tmp_path / "empty.zarr").mkdir()  # not a store
    (tmp_path / "sub").mkdir()
    names = [p.name for p in image_files(tmp_path)]
    assert names == ["a.TIFF", "b.tif", "big.zarr", "c.ome.tif", "e.jpg"]
    with pytest.raises(NapariUnetError, match="does not exist"):
        image_files(tmp_path / "nope")
    with pytest.raises(NapariUnetError, match="is a file"):
        image_files(tmp_path / "b.tif")


def test_output_names_pair_with_training_names(tmp_path):
    assert output_path(tmp_path / "x" / "cells.ome.tif") == tmp_path / "x" / "cells_labels.tif"
    assert output_path("img.01.tif", tmp_path) == tmp_path / "img.01_labels.tif"
    assert output_path("big.zarr", zarr=True).name == "big_labels.zarr"
    assert output_path("a.png", kind="probabilities").name == "a_probabilities.tif"


def test_one_corrupt_file_does_not_stop_the_others(folder, tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    paths = image_files(folder)
    assert [p.name for p in paths] == ["a.tif", "b.tif", "c.tif", "d.png"]
    events, result = _events(segment_files(paths, out, model=tiny_model, tile_shape=32))
    # the others are written, each equal to segmenting it on its own
    for name in ("a", "b", "d"):
        written = tifffile.imread(out / f"{name}_labels.tif")
        src = next(p for p in paths if p.stem == name)
        from napari_unet.fileio import read_image

        expected = segment(tiny_model, read_image(src), tile_shape=32).labels
        np.testing.assert_array_equal(written, expected)
    assert not (out / "c_labels.tif").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    # the failure is listed by path with one sentence
    assert [src for src, _ in result.failures] == [folder / "c.tif"]
    reason = result.failures[0][1]
    assert "could not be read as an image" in reason and "\n" not in reason
    assert [item.source.name for item in result.done] == ["a.tif", "b.tif", "d.png"]
    counts = {item.source.name: item.n_objects for item in result.done}
    assert counts["a.tif"] == int(tifffile.imread(out / "a_labels.tif").max())
    assert result.n_objects == sum(counts.values())
    assert result.summary().endswith("; 1 failed: c.tif")
    assert result.summary().startswith("4 images: ")
    # events: every image starts and ends once, in order; progress rises to 1
    ends = [(e.source.name, e.state) for e in events if e.state in (BatchState.DONE,
                                                                    BatchState.FAILED)]  # fmt: skip
    assert ends == [("a.tif", BatchState.DONE), ("b.tif", BatchState.DONE),
                    ("c.tif", BatchState.FAILED), ("d.png", BatchState.DONE)]  # fmt: skip
    assert sum(e.state is BatchState.STARTED for e in events) == 4
    assert any(e.state is BatchState.PROGRESS and 0 < e.fraction < 1 for e in events)
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == 1.0
    failed = next(e for e in events if e.state is BatchState.FAILED)
    assert failed.message == reason and failed.index == 2 and failed.total == 4


def test_results_next_to_the_images_and_existing_ones_kept(folder, tiny_model):
    paths = [folder / "a.tif", folder / "b.tif"]
    _, first = _events(segment_files(paths, model=tiny_model))
    assert [item.output for item in first.done] == [folder / "a_labels.tif",
                                                    folder / "b_labels.tif"]  # fmt: skip
    (folder / "a_labels.tif").write_bytes(b"corrected by hand")
    _, again = _events(segment_files(paths, model=tiny_model))
    assert len(again.failures) == 2 and "already exists" in again.failures[0][1]
    assert (folder / "a_labels.tif").read_bytes() == b"corrected by hand"
    # overwriting replaces the batch's own results, never a file it did not write
    tifffile.imwrite(folder / "a_labels.tif", np.ones((60, 70), np.uint16))  # an annotation
    _, replaced = _events(segment_files(paths, model=tiny_model, overwrite=True))
    assert [p.name for p, _ in replaced.failures] == ["a.tif"]
    assert "not written by napari-unet" in replaced.failures[0][1]
    assert (tifffile.imread(folder / "a_labels.tif") == 1).all()
    assert [item.output.name for item in replaced.done] == ["b_labels.tif"]
    # the folder's own results are not taken for images the next time
    assert [p.name for p in image_files(folder)] == ["a.tif", "b.tif", "c.tif", "d.png"]


def test_never_writes_over_an_input_or_twice_to_one_name(tmp_path, rng, tiny_model):
    a, a_labels = tmp_path / "a.tif", tmp_path / "a_labels.tif"
    for p in (a, a_labels):
        tifffile.imwrite(p, rng.random((40, 40)).astype(np.float32))
    before = a_labels.read_bytes()
    _, result = _events(segment_files([a, a_labels], model=tiny_model, overwrite=True))
    assert a_labels.read_bytes() == before
    assert result.failures[0][0] == a and "overwrite an input" in result.failures[0][1]
    assert [item.source for item in result.done] == [a_labels]
    # two images of one name into one folder: the second is refused, the first kept
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "a.tif", rng.random((30, 30)).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    _, result = _events(segment_files([a, other / "a.tif"], out, model=tiny_model, overwrite=True))
    assert len(result.done) == 1 and "two images with one name" in result.failures[0][1]
    assert tifffile.imread(out / "a_labels.tif").shape == (40, 40)


def test_cancel_within_a_file_leaves_no_partial_output(folder, tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    gen = segment_files([folder / "a.tif", folder / "b.tif"], out, model=tiny_model, tile_shape=8)
    for event in gen:
        if event.state is BatchState.PROGRESS and event.index == 1:
            break
    gen.close()  # what the GUI's Cancel does
    assert (out / "a_labels.tif").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif"]


def test_zarr_outputs_and_cancel_removes_the_unfinished_store(folder, tmp_path, tiny_model):
    import zarr

    from napari_unet.bigimage import open_prediction

    image = tifffile.imread(folder / "a.tif")
    zarr.open_array(folder / "z.zarr", mode="w", shape=image.shape, chunks=(32, 32),
                    dtype=image.dtype)[:] = image  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    paths = [folder / "a.tif", folder / "z.zarr", folder / "d.png"]
    _, result = _events(segment_files(paths, out, model=tiny_model, output_format="zarr",
                                      chunk=32))  # fmt: skip
    assert not result.failures
    a, z = open_prediction(out / "a_labels.zarr"), open_prediction(out / "z_labels.zarr")
    np.testing.assert_array_equal(np.asarray(a.labels[0]), np.asarray(z.labels[0]))
    assert result.done[0].n_objects == a.n_objects
    assert open_prediction(out / "d_labels.zarr").labels[0].shape == (40, 40)
    # a zarr input gives a zarr store even when TIFF is asked for
    _, result = _events(segment_files([folder / "z.zarr"], model=tiny_model))
    assert result.done[0].output == folder / "z_labels.zarr"
    # resizing cannot go into zarr: refused before any work
    with pytest.raises(NapariUnetError, match="zarr"):
        next(segment_files(paths, out, model=tiny_model, output_format="zarr", rescale=0.5))
    # cancelled mid-store: the incomplete store is removed
    gen = segment_files([folder / "b.tif"], out, model=tiny_model, output_format="zarr",
                        chunk=16)  # fmt: skip
    for event in gen:
        if event.state is BatchState.PROGRESS and event.fraction > 0.3:
            break
    gen.close()
    assert not (out / "b_labels.zarr").exists()


def test_segment_folder_creates_the_output_folder_and_keeps_probabilities(folder, tmp_path,
                                                                          tiny_model):  # fmt: skip
    (folder / "c.tif").unlink()
    out = tmp_path / "new" / "results"
    seen = []
    result = segment_folder(folder, out, model=tiny_model, probabilities=True, progress=seen.append)
    assert not result.failures and len(result.done) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}_{k}.tif" for n in "abd" for k in ("labels", "probabilities")
    )
    p = tifffile.imread(out / "b_probabilities.tif")
    assert p.shape == (48, 90) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    assert seen[-1].state is BatchState.DONE
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NapariUnetError, match="holds no images"):
        segment_folder(empty, model=tiny_model)


def test_bad_arguments_fail_before_any_image(folder, tmp_path, tiny_model):
    with pytest.raises(NapariUnetError, match="does not exist"):
        next(segment_files([folder / "a.tif"], tmp_path / "nope", model=tiny_model))
    with pytest.raises(NapariUnetError, match="format"):
        next(segment_files([folder / "a.tif"], model=tiny_model, output_format="png"))
    with pytest.raises(NapariUnetError, match="no images"):
        next(segment_files([], model=tiny_model))
    assert not (folder / "a_labels.tif").exists()
