"""3D objects on zarr stacks: slab by slab in Z, merged across slab faces."""

import tracemalloc

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from napari_unet import NapariUnetError, UNet, save_model
from napari_unet.bigimage import ChunkProgress, iter_predict_to_zarr, open_prediction
from napari_unet.bigimage import predict_to_zarr as to_zarr
from napari_unet.bigimage.stack3d import plan_slabs
from napari_unet.cli import main
from napari_unet.segment import segment
from threshold_net import threshold_unet


@pytest.fixture(scope="module")
def thresh():
    return threshold_unet()


@pytest.fixture(scope="module")
def small_model():
    """A random network (context 20 px, pooling 4) much shallower than the test stacks."""
    import torch

    torch.manual_seed(0)
    return UNet(base_channels=4, depth=3, dropout=0.0)


def _balls(shape, centres, radius):
    zz, yy, xx = np.indices(shape)
    truth = np.zeros(shape, np.int32)
    for i, (z, y, x) in enumerate(centres, 1):
        truth[((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius**2) & (truth == 0)] = i
    image = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.0) * 1000 + 100
    return image.astype(np.uint16), truth


def _same_partition(a, b):
    """Same objects, ids may differ: the id pairs are one-to-one and background matches."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    assert np.array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a, b]), axis=1)
    assert pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("stack", ["linked", "views"])
def test_nucleus_spanning_several_slabs_gets_one_id(tmp_path, thresh, stack):
    image, truth = _balls((24, 40, 40), [(12, 20, 20)], 8.0)
    spanned = {z // 4 for z in np.flatnonzero(truth.any(axis=(1, 2)))}
    assert len(spanned) >= 4  # the nucleus crosses at least three slab faces
    # the size segment() estimates, given: both follow it (the API does not estimate)
    ref = segment(thresh, image, stack=stack)
    out = to_zarr(
        thresh, image, tmp_path / "o.zarr", stack=stack, z_chunk=4, label_margin=2,
        diameter=ref.diameter,
    )  # fmt: skip
    labels = np.asarray(out.labels[0])
    assert out.n_objects == 1 and set(np.unique(labels)) == {0, 1}
    assert labels.any(axis=(1, 2)).sum() >= 15
    _same_partition(labels, ref.labels)


@pytest.mark.parametrize("stack", ["linked", "views"])
def test_two_touching_nuclei_across_slab_faces_stay_two(tmp_path, thresh, stack):
    image, truth = _balls((24, 40, 54), [(12, 20, 19), (12, 20, 34)], 7.5)
    assert ndi.label(truth > 0)[1] == 1  # they touch
    out = to_zarr(thresh, image, tmp_path / "o.zarr", stack=stack, z_chunk=5, label_margin=3)
    labels = np.asarray(out.labels[0])
    assert out.n_objects == 2
    for i in (1, 2):
        ids, counts = np.unique(labels[truth == i], return_counts=True)
        assert ids[np.argmax(counts)] > 0 and counts.max() > 0.6 * (truth == i).sum()


def test_linked_equals_in_memory_on_a_random_stack(tmp_path, thresh, rng):
    image = ndi.gaussian_filter(rng.random((20, 48, 48)), 2.0).astype(np.float32)
    ref = segment(thresh, image, stack="linked", min_size=4, min_volume=6)
    assert ref.labels.max() > 20  # many objects, many cut by slab faces
    out = to_zarr(
        thresh, image, tmp_path / "o.zarr", stack="linked", z_chunk=3,
        min_size=4, min_volume=6, probabilities=True, diameter=ref.diameter,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(out.probabilities), ref.probabilities)
    _same_partition(out.labels[0], ref.labels)
    assert out.n_objects == ref.labels.max()


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (1.3, 1.0, 1.0), (4.0, 1.0, 1.0)])
def test_views_probabilities_equal_in_memory_with_tiny_slabs(tmp_path, small_model, rng, voxel):
    image = ndi.gaussian_filter(rng.random((64, 20, 18)), 1.5).astype(np.float32)
    ref = segment(small_model, image, stack="views", voxel_size=voxel, min_size=0)
    out = to_zarr(
        small_model, image, tmp_path / "o.zarr", stack="views", voxel_size=voxel,
        z_chunk=3, label_margin=2, probabilities=True, min_size=0, diameter=ref.diameter,
    )  # fmt: skip
    # the windows are partial (a slab of 3, 2 planes of margin and the context each
    # side), cut off the pooling grid unless moved onto it, and resampled on their own
    assert 3 + 2 * (2 + out.metadata["labels"]["z_context"]) < 64 and len(plan_slabs(64, 3)) == 22
    np.testing.assert_allclose(np.asarray(out.probabilities), ref.probabilities, atol=1e-6)
    assert out.scale == voxel


def test_views_labels_equal_in_memory_on_nuclei(tmp_path, thresh):
    centres = [(6, 10, 10), (12, 28, 26), (17, 12, 30), (9, 30, 9)]
    image, _ = _balls((24, 40, 40), centres, 5.0)
    ref = segment(thresh, image, stack="views")
    out = to_zarr(
        thresh, image, tmp_path / "o.zarr", stack="views", z_chunk=4, label_margin=6,
        diameter=ref.diameter,
    )  # fmt: skip
    assert out.n_objects == 4
    _same_partition(out.labels[0], ref.labels)


def test_output_layout_progress_and_cancel(tmp_path, thresh):
    image, _ = _balls((12, 40, 40), [(6, 20, 20)], 5.0)
    src = tmp_path / "stack.zarr"
    _save(src, image, (1, 40, 40))
    gen = iter_predict_to_zarr(thresh, src, tmp_path / "o.zarr", stack="views", z_chunk=3)
    events = list(_drain(gen))
    assert all(isinstance(e, ChunkProgress) for e in events[:-1])
    done = [e.done for e in events[:-1]]
    assert done == sorted(done) and events[-2].phase == "done"
    assert {"statistics", "predict", "relabel"} <= {e.phase for e in events[:-1]}
    # the bar moves within a slab (4 slabs here), not only between them
    assert len({e.done for e in events[:-1] if e.phase == "predict"}) > 2 * 4
    result = open_prediction(tmp_path / "o.zarr")
    assert result.labels[0].shape == image.shape and result.n_objects == 1
    assert result.metadata["labels"]["stack"] == "views"
    ms = dict(zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["labels/segmentation"].attrs)
    axes = [a["name"] for a in ms["ome"]["multiscales"][0]["axes"]]
    assert axes == ["z", "y", "x"]
    # closing after the first slab stops the run; the store stays marked incomplete
    gen = iter_predict_to_zarr(thresh, src, tmp_path / "c.zarr", stack="linked", z_chunk=3)
    for e in gen:
        if e.phase == "predict" and e.done >= 2:
            break
    gen.close()
    with pytest.raises(NapariUnetError, match="incomplete"):
        open_prediction(tmp_path / "c.zarr")


def _save(path, image, chunks):
    arr = zarr.open_array(path, mode="w", shape=image.shape, chunks=chunks, dtype=image.dtype)
    arr[:] = image


def _drain(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration as stop:
            yield stop.value
            return


def test_memory_does_not_grow_with_z(tmp_path, thresh):
    def run(z, trace):
        image, _ = _balls((z, 64, 64), [(z // 2, 32, 32)], 6.0)
        source = tmp_path / f"s{z}{trace}.zarr"  # on disk: an in-memory array is copied
        _save(source, (image / 1100.0).astype(np.float32), (8, 64, 64))
        if trace:
            tracemalloc.start()
        # slabs of 4 planes and one of halo each side (linked: the cheap mode to run);
        # normalization=False: the statistics' subsample is capped, but at 4 M pixels
        out = to_zarr(
            thresh, source, tmp_path / f"o{z}{trace}.zarr", stack="linked", z_chunk=4,
            method="components", normalization=False,
        )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        assert out.n_objects == 1
        return peak

    run(8, False)  # imports and caches first
    small, large = run(16, True), run(64, True)
    # 4x the planes, not 4x the memory: what grows is bookkeeping (the input's task
    # graph, object sizes), not planes of pixels
    assert large < 1.5 * small


@pytest.mark.parametrize(
    "kwargs, shape, words",
    [
        ({"stack": "views"}, (32, 32), "2D"),
        ({"stack": "linked", "z_chunk": 0}, (6, 32, 32), "z_chunk"),
        ({"stack": "views", "voxel_size": (float("nan"), 1, 1)}, (6, 32, 32), "positive"),
        ({"stack": "views", "colour": 3}, (6, 32, 32), "Unknown option"),
        ({"stack": "cubes"}, (6, 32, 32), "Unknown stack mode"),
        ({"stack": "linked", "scheduler": "tcp://1.2.3.4:1"}, (6, 32, 32), "cluster"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, thresh, kwargs, shape, words):
    with pytest.raises(NapariUnetError, match=words) as info:
        to_zarr(thresh, np.zeros(shape, np.uint16), tmp_path / "o.zarr", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.zarr").exists()


def test_cli_segments_a_zarr_stack_in_3d(tmp_path, thresh, capsys):
    image, _ = _balls((16, 40, 40), [(8, 20, 20)], 6.0)
    src = tmp_path / "stack.zarr"
    _save(src, image, (4, 40, 40))
    model = tmp_path / "m.safetensors"
    save_model(thresh, model)
    out = tmp_path / "out.zarr"
    argv = ["predict", str(src), "-o", str(out), "--model", str(model), "--stack", "linked"]
    assert main([*argv, "--voxel-size", "2,1,1"]) == 0
    result = open_prediction(out)
    assert result.n_objects == 1 and result.scale == (2.0, 1.0, 1.0)
    _same_partition(result.labels[0], segment(thresh, image, stack="linked").labels)
    for extra, words in (
        (["--into-input"], "--into-input"),
        (["--voxel-size", "0,1,1", "--overwrite"], "positive"),
    ):
        rc = main([*argv, *extra])
        err = capsys.readouterr().err
        assert rc != 0 and words in err and "Traceback" not in err


def test_ome_zarr_stack_gives_voxel_size_and_display_levels(tmp_path, thresh, monkeypatch):
    from napari_unet import bigimage

    monkeypatch.setattr(bigimage.levels, "_PYRAMID_STOP", 32)  # small images get a pyramid
    image, _ = _balls((8, 64, 64), [(4, 32, 32)], 10.0)
    image = image[::2]  # Z step 2x the pixel size: the ball is squashed in the array
    g = zarr.open_group(str(tmp_path / "raw.zarr"), mode="w", zarr_format=3)
    g.create_array("0", data=image, chunks=(1, 32, 32), dimension_names=["z", "y", "x"])
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    t = [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]
    ds = [{"path": "0", "coordinateTransformations": t}]
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": ds}]}
    ref = segment(thresh, image, stack="views", voxel_size=(1.0, 0.5, 0.5))
    out = to_zarr(
        thresh, tmp_path / "raw.zarr", tmp_path / "o.zarr", stack="views", z_chunk=2,
        diameter=ref.diameter,
    )  # fmt: skip
    assert out.metadata["labels"]["voxel_size"] == [1.0, 0.5, 0.5]
    assert out.scale == (1.0, 0.5, 0.5) and out.n_objects == 1
    full = np.asarray(out.labels[0])
    assert len(out.labels) >= 2
    np.testing.assert_array_equal(np.asarray(out.labels[1]), full[:, ::2, ::2])
    _same_partition(full, ref.labels)
