"""napari opens napari-unet zarr results (both layouts) lazily, at their pixel size."""

import dask.array as da
import numpy as np
import zarr

from napari_unet import UNet, bigimage
from napari_unet._reader import get_reader
from napari_unet.bigimage import predict_to_zarr


def test_napari_opens_the_ome_zarr_result_lazily_with_its_scale(
    make_napari_viewer, tmp_path, monkeypatch
):
    monkeypatch.setattr(bigimage.levels, "_PYRAMID_STOP", 64)
    net = UNet(base_channels=4, depth=3, dropout=0.0)
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    out = tmp_path / "cells.zarr"
    r = predict_to_zarr(net, image, out, chunk=64, probabilities=True, scale=(0.5, 0.25))
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-unet")
    seg = viewer.layers["cells segmentation"]
    assert seg.multiscale and len(seg.data) == 2
    assert all(isinstance(level, da.Array) for level in seg.data)  # lazy
    assert tuple(seg.scale) == (0.5, 0.25)
    np.testing.assert_array_equal(np.asarray(seg.data[0]), r.labels[0].compute())
    prob = viewer.layers["cells probability"]
    assert prob.multiscale and tuple(prob.scale) == (0.5, 0.25)
    np.testing.assert_array_equal(np.asarray(prob.data[0]), r.probabilities[1].compute())


def test_napari_opens_the_old_layout_and_leaves_foreign_stores(make_napari_viewer, tmp_path):
    labels = (np.arange(40 * 30).reshape(40, 30) % 7).astype(np.uint16)
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    root.create_array("labels/0", data=labels)
    root.attrs["napari_unet"] = {
        "format_version": 1, "complete": True, "n_objects": 6,
        "labels": {"levels": 1, "dtype": "uint16"}, "probabilities": None,
    }  # fmt: skip
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "old.zarr"), plugin="napari-unet")
    seg = viewer.layers["old segmentation"]
    assert not seg.multiscale and tuple(seg.scale) == (1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(seg.data), labels)
    foreign = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    foreign.create_array("0", data=labels)
    assert get_reader(str(tmp_path / "img.zarr")) is None  # for napari-ome-zarr & co.
    assert get_reader(str(tmp_path)) is None
