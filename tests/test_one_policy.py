"""One image, one model, one answer: every entry point resolves the instance step alike."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_unet import NapariUnetError, labels_from_probabilities, predict_tiled, save_model
from napari_unet.cli import main
from napari_unet.postprocess import DEFAULTS, recommended_postprocess, resolve_postprocess
from threshold_net import threshold_unet

#: A calibrated rule as the calibration writes it: components (the watershed would cut
#: the dumbbell below), a raised threshold, faint objects and specks dropped.
RULE = {"method": "components", "threshold": 0.6, "min_confidence": 0.8, "min_size": 30}


def _scene() -> np.ndarray:
    """A dumbbell (two discs joined by a neck), a rod, a faint disc and a speck."""
    yy, xx = np.mgrid[:96, :96]
    img = np.zeros((96, 96), np.float32)
    for cy, cx in ((24, 20), (24, 42)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = 1.0
    img[21:28, 20:42] = 1.0  # the neck
    img[60:67, 10:60] = 1.0  # a rod
    img[(yy - 75) ** 2 + (xx - 80) ** 2 <= 49] = 0.56  # faint: p about 0.65
    img[85:89, 20:24] = 1.0  # a speck of 16 px
    return ndi.gaussian_filter(img, 0.7)


@pytest.fixture
def model():
    m = threshold_unet(gain=10.0, level=0.5)
    m.metadata["normalization"] = {"method": "none"}
    m.metadata["postprocess"] = dict(RULE, calibration={"score": 0.8, "cells": 12})
    return m


def test_the_resolver_orders_caller_model_defaults(model):
    assert resolve_postprocess(None) == DEFAULTS
    assert resolve_postprocess(model) == {**DEFAULTS, **RULE}
    got = resolve_postprocess(model, {"threshold": 0.7, "min_size": None, "link_iou": 0.3})
    assert got == {**DEFAULTS, **RULE, "threshold": 0.7, "link_iou": 0.3}
    # a fallback (a training configuration's min_size) sits under the model's word
    assert resolve_postprocess(model, fallback={"min_size": 5})["min_size"] == 30
    assert resolve_postprocess(None, fallback={"min_size": 5})["min_size"] == 5
    # views keep the 3D watershed's own distances
    views = resolve_postprocess(model, stack="views")
    assert views["h"] == 0.5 and views["smoothing"] == 0.0 and views["min_size"] == 16
    # the model's seeds under a threshold the caller raised past them are dropped
    model.metadata["postprocess"] = {"method": "watershed", "seed_threshold": 0.7}
    assert resolve_postprocess(model, {"threshold": 0.8})["seed_threshold"] is None
    assert resolve_postprocess(model)["seed_threshold"] == 0.7


def test_recommendations_of_the_wrong_kind_are_ignored():
    class M:
        metadata = {"postprocess": {"method": "magic", "h": "x", "threshold": True, "hue": 3}}

    assert recommended_postprocess(M()) == {}
    M.metadata = {"postprocess": "components"}
    assert recommended_postprocess(M()) == {}
    M.metadata = {}  # an old model file: the defaults
    assert resolve_postprocess(M()) == DEFAULTS


def test_every_entry_point_gives_the_same_labels(model, tmp_path, capsys):
    import zarr

    from napari_unet import Segmentation, open_prediction, predict_to_zarr, segment, segment_files

    image = _scene()
    prob = predict_tiled(model, image)
    reference = labels_from_probabilities(prob, model=model)
    # the rule is the model's, not the defaults: 2 objects (dumbbell whole, rod);
    # the default watershed cuts the dumbbell and keeps the faint disc
    assert reference.max() == 2
    assert labels_from_probabilities(prob).max() >= 4

    results = {}
    seg = segment(model, image)
    assert isinstance(seg, Segmentation)
    results["segment"] = seg.labels
    from napari_unet.segment import segment as segment_function

    results["segment()"] = segment_function(model, image, rescale=1.0).labels
    results["predict_to_zarr"] = np.asarray(
        predict_to_zarr(model, image, tmp_path / "api.zarr", chunk=48).labels[0]
    )
    mfile = tmp_path / "m.safetensors"
    save_model(model, mfile)
    tif = tmp_path / "scene.tif"
    tifffile.imwrite(tif, image)
    assert main(["predict", str(tif), "-o", str(tmp_path / "l.tif"), "--model", str(mfile)]) == 0
    results["CLI TIFF"] = tifffile.imread(tmp_path / "l.tif")
    src = zarr.open_array(tmp_path / "in.zarr", mode="w", shape=image.shape, chunks=(48, 48),
                          dtype=image.dtype)  # fmt: skip
    src[:] = image
    args = ["predict", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "o.zarr")]
    assert main([*args, "--model", str(mfile), "--chunk", "48"]) == 0
    results["CLI zarr"] = np.asarray(open_prediction(tmp_path / "o.zarr").labels[0])
    for fmt in ("tiff", "zarr"):
        out = tmp_path / fmt
        out.mkdir()
        batch = segment_files([tif], out, model=model, output_format=fmt)
        while True:
            try:
                next(batch)
            except StopIteration as stop:
                written = stop.value.done[0].output
                break
        read = tifffile.imread if fmt == "tiff" else lambda p: open_prediction(p).labels[0]
        results[f"batch {fmt}"] = np.asarray(read(written))
    # batch as the CLI runs it: a folder of images into a folder of zarr stores
    (tmp_path / "many").mkdir()
    tifffile.imwrite(tmp_path / "many" / "a.tif", image)
    args = ["predict", str(tmp_path / "many"), "-o", str(tmp_path / "outs"), "--zarr"]
    assert main([*args, "--model", str(mfile)]) == 0
    zarr_out = next((tmp_path / "outs").iterdir())
    results["CLI batch --zarr"] = np.asarray(open_prediction(zarr_out).labels[0])
    capsys.readouterr()
    for name, labels in results.items():
        np.testing.assert_array_equal(labels, reference, err_msg=name)


def test_the_caller_overrides_the_model_everywhere(model, tmp_path):
    from napari_unet import predict_to_zarr, segment

    image = _scene()
    prob = predict_tiled(model, image)
    wanted = labels_from_probabilities(prob, model=model, method="watershed", min_confidence=0)
    assert wanted.max() > 2
    opts = {"method": "watershed", "min_confidence": 0.0}
    np.testing.assert_array_equal(segment(model, image, rescale=1, **opts).labels, wanted)
    z = predict_to_zarr(model, image, tmp_path / "o.zarr", chunk=48, **opts)
    np.testing.assert_array_equal(np.asarray(z.labels[0]), wanted)


def test_3d_modes_follow_the_recommendation(model):
    from napari_unet import segment

    stack = np.stack([_scene()] * 3)
    planes = segment(model, stack, rescale=1.0).labels
    linked = segment(model, stack, rescale=1.0, stack="linked").labels
    # three identical planes: linked gives every plane the same ids, planes' partition
    assert linked.max() == 2
    for z in range(3):
        np.testing.assert_array_equal(linked[z] > 0, planes[z] > 0)
    views = segment(model, stack, rescale=1.0, stack="views").labels
    # the faint disc (mean p under min_confidence) is dropped in 3D too
    assert views[:, 75, 80].max() == 0 and views[1, 63, 30] > 0
    kept = segment(model, stack, rescale=1.0, stack="views", min_confidence=0.0).labels
    assert kept[1, 75, 80] > 0


def test_bad_overrides_are_one_sentence(model):
    from napari_unet import segment

    with pytest.raises(NapariUnetError, match="threshold"):
        segment(model, _scene(), rescale=1.0, threshold=1.5)
    with pytest.raises(NapariUnetError, match="method"):
        labels_from_probabilities(predict_tiled(model, _scene()), model=model, method="x")


def test_a_known_diameter_scales_the_default_watershed():
    from napari_unet.postprocess import resolve_postprocess
    from napari_unet.postprocess.resolver import DEFAULTS, H_PER_DIAMETER, SMOOTHING_PER_DIAMETER

    class Recommends:
        metadata = {"postprocess": {"h": 2.0}}

    assert resolve_postprocess(None) == resolve_postprocess(None, diameter=None) == DEFAULTS
    big = resolve_postprocess(None, diameter=40.0)
    assert big["h"] == pytest.approx(H_PER_DIAMETER * 40) and big["h"] > DEFAULTS["h"]
    assert big["smoothing"] == pytest.approx(SMOOTHING_PER_DIAMETER * 40)
    small = resolve_postprocess(None, diameter=6.0)  # floors: never below the fixed rule's h
    assert small["h"] == DEFAULTS["h"] and small["smoothing"] == 1.0
    # what the caller or the model says wins over the size
    assert resolve_postprocess(None, {"h": 0.7}, diameter=40.0)["h"] == 0.7
    assert resolve_postprocess(Recommends(), diameter=40.0)["h"] == 2.0
    assert resolve_postprocess(Recommends(), diameter=40.0)["smoothing"] == pytest.approx(2.4)
    # the 3D watershed of the views mode scales its h alike but stays unsmoothed
    views = resolve_postprocess(None, diameter=40.0, stack="views")
    assert views == dict(resolve_postprocess(None, stack="views"), h=big["h"])
    assert resolve_postprocess(None, diameter=6.0, stack="views")["h"] == 0.5
    for bad in (0.0, -3.0, float("nan"), "25"):
        assert resolve_postprocess(None, diameter=bad) == DEFAULTS


def test_zarr_labels_follow_a_given_diameter(model, tmp_path):
    from napari_unet import predict_to_zarr

    image = _scene()
    prob = predict_tiled(model, image)
    model.metadata.pop("postprocess", None)  # the defaults' rule, which the size scales
    found = {}
    for d in (None, 60.0):
        wanted = found[d] = labels_from_probabilities(prob, model=model, diameter=d)
        z = predict_to_zarr(model, image, tmp_path / f"o{d}.zarr", chunk=48, diameter=d)
        np.testing.assert_array_equal(np.asarray(z.labels[0]), wanted)
    assert found[60.0].max() < found[None].max()  # the dumbbell stays whole


def _dumbbells() -> np.ndarray:
    """Nine pairs of discs (12 and 10 px radius) ever further apart: necks from wide to none.

    About 30 px objects, one in the middle of each 96 px chunk: the fixed
    watershed (h 0.5 px) cuts more of them than the rule scaled to their size.
    """
    yy, xx = np.mgrid[:288, :288]
    img = np.zeros((288, 288), np.float32)
    for k, (cy, cx) in enumerate((y, x) for y in (48, 144, 240) for x in (48, 144, 240)):
        # unequal discs: no ties in the watershed, which a chunk could break otherwise
        for dx, r2 in ((-(4 + k), 144), (4 + k, 100)):
            img[(yy - cy) ** 2 + (xx - cx - dx) ** 2 <= r2] = 1.0
    return ndi.gaussian_filter(img, 1.0)


@pytest.fixture
def plain_model():
    """No recommendation and no size range: the default watershed, scaled by the estimate."""
    m = threshold_unet(gain=10.0, level=0.5)
    m.metadata["normalization"] = {"method": "none"}
    return m


def test_the_cli_zarr_path_scales_the_rule_as_segment_does(plain_model, tmp_path, capsys):
    import zarr

    from napari_unet import open_prediction, segment

    image = _dumbbells()
    seg = segment(plain_model, image, precision="fp32")
    assert seg.diameter is not None and 25 < seg.diameter < 35
    prob = predict_tiled(plain_model, image)
    np.testing.assert_array_equal(
        seg.labels, labels_from_probabilities(prob, diameter=seg.diameter)
    )
    assert labels_from_probabilities(prob).max() > seg.labels.max()  # the size matters here
    mfile = tmp_path / "m.safetensors"
    save_model(plain_model, mfile)
    src = zarr.open_array(tmp_path / "in.zarr", mode="w", shape=image.shape, chunks=(96, 96),
                          dtype=image.dtype)  # fmt: skip
    src[:] = image
    args = ["predict", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "o.zarr")]
    assert main([*args, "--model", str(mfile), "--chunk", "96", "--precision", "fp32"]) == 0
    assert f"Estimated object diameter {seg.diameter:.0f} px" in capsys.readouterr().err
    zarr_labels = np.asarray(open_prediction(tmp_path / "o.zarr").labels[0])
    np.testing.assert_array_equal(raster_order(zarr_labels), raster_order(seg.labels))


def raster_order(labels: np.ndarray) -> np.ndarray:
    """The same objects with ids in raster order of their first pixel (as zarr outputs number)."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    order = ids[np.argsort(first)]
    order = order[order > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def test_a_factor_alone_implies_the_size_the_model_knows(plain_model):
    from napari_unet import segment
    from napari_unet.rescaling import implied_diameter, rescale_for_diameter

    assert implied_diameter(plain_model, 0.5) is None  # no range: no size, the fixed rule
    plain_model.metadata["object_diameter"] = {"min": 20.0, "max": 28.8}
    assert implied_diameter(plain_model, 0.5) == pytest.approx(48.0)  # sqrt(20 * 28.8) / 0.5
    image = _dumbbells()
    f = rescale_for_diameter(plain_model, 30.0)
    by_diameter = segment(plain_model, image, diameter=30.0, precision="fp32")
    by_factor = segment(plain_model, image, rescale=f, precision="fp32")
    assert by_diameter.rescale == by_factor.rescale == f
    np.testing.assert_array_equal(by_factor.labels, by_diameter.labels)
    # the fixed rule, which a factor used to get, cuts the dumbbells otherwise
    fixed = segment(plain_model, image, rescale=f, precision="fp32", h=0.5, smoothing=1.5)
    assert not np.array_equal(fixed.labels, by_factor.labels)


@pytest.mark.parametrize("mode", ["linked", "views"])
def test_3d_modes_scale_the_rule_alike_in_memory_and_in_zarr(plain_model, tmp_path, mode):
    """A stack's 3D objects follow its estimated size in memory and through the CLI's zarr path."""
    import zarr

    from napari_unet import open_prediction, segment

    stack = np.stack([_dumbbells()] * 4)
    seg = segment(plain_model, stack, stack=mode, precision="fp32")
    assert seg.diameter is not None
    fixed = {"h": 0.5, "smoothing": 1.5 if mode == "linked" else 0.0}
    unscaled = segment(plain_model, stack, stack=mode, rescale=1.0, precision="fp32", **fixed)
    assert unscaled.labels.max() > seg.labels.max()  # the size matters here
    mfile = tmp_path / "m.safetensors"
    save_model(plain_model, mfile)
    src = zarr.open_array(tmp_path / "in.zarr", mode="w", shape=stack.shape,
                          chunks=(1, 288, 288), dtype=stack.dtype)  # fmt: skip
    src[:] = stack
    args = ["predict", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "o.zarr"), "--stack", mode]
    assert main([*args, "--model", str(mfile), "--precision", "fp32"]) == 0
    zarr_labels = np.asarray(open_prediction(tmp_path / "o.zarr").labels[0])
    np.testing.assert_array_equal(raster_order(zarr_labels), raster_order(seg.labels))
