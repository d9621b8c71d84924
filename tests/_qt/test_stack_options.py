import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet._qt.stack_options import PLANES, VIEWS, check_voxel_size, stack_axes
from napari_unet.errors import NapariUnetError
from threshold_net import threshold_unet


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    return widget


def _shown(widget):
    return not widget.native.isHidden()


def test_axis_labels_say_which_axis_is_z_or_time():
    plain = stack_axes(3, ("-3", "-2", "-1"))  # napari's defaults say nothing
    assert plain.is_stack and plain.z is None and plain.default_z == 0
    assert not plain.time_lapse
    assert stack_axes(3, ("Z", "y", "x")).z == 0
    lapse = stack_axes(3, ("t", "y", "x"))
    assert lapse.time_lapse and lapse.time == 0 and lapse.default_z is None
    tzyx = stack_axes(4, ("T", "z", "y", "x"))
    assert (tzyx.z, tzyx.time, tzyx.leading) == (1, 0, (1,))
    # unlabelled 4D: Z is asked for, the axis before Y by default (TZYX order)
    four = stack_axes(4)
    assert four.z is None and four.leading == (0, 1) and four.default_z == 1
    assert not stack_axes(2, ("y", "x")).is_stack


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0), (1.0, float("nan"), 1.0), (1.0, 1.0, -2.0)])
def test_a_voxel_size_not_above_zero_is_one_sentence(bad):
    with pytest.raises(NapariUnetError, match=r"^The voxel size .*\.$"):
        check_voxel_size(bad)
    assert check_voxel_size((4, 1, 1)) == (4.0, 1.0, 1.0)


def test_the_stack_choice_shows_only_for_stacks(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    flat = viewer.add_image(rng.random((40, 50)), name="flat")
    stack = viewer.add_image(rng.random((6, 40, 50)), name="stack", scale=(4.0, 0.5, 0.5))
    widget = _dock(viewer)
    options = widget._stack
    widget._image.value = flat
    assert not _shown(options.mode) and not _shown(options.voxel)
    assert options.options() == {}
    widget._image.value = stack
    assert _shown(options.mode) and options.mode.value == PLANES
    assert not _shown(options.voxel) and options.options() == {}  # planes: as before
    options.mode.value = VIEWS
    # no axis labels: Z is asked for (axis 0 of a 3D layer), voxel size from the scale
    assert _shown(options.z_axis) and options.z_axis.value == 0
    assert _shown(options.voxel) and options.voxel_size == (4.0, 0.5, 0.5)
    assert options.options() == {"stack": "views", "voxel_size": (4.0, 0.5, 0.5), "z_axis": None}
    stack.scale = (2.0, 0.5, 0.5)  # the layer's scale changes: the fields follow
    assert options.voxel_size == (2.0, 0.5, 0.5)
    options.set_voxel_size(3.0, 1.0, 1.0)  # the user's own numbers count
    assert options.options()["voxel_size"] == (3.0, 1.0, 1.0)
    widget._image.value = flat  # back to 2D: the stack fields go away again
    assert not _shown(options.mode) and not _shown(options.voxel) and options.options() == {}


def test_axis_labels_decide_z_and_time(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    lapse = viewer.add_image(rng.random((5, 30, 30)), name="lapse", axis_labels=("t", "y", "x"))
    zyx = viewer.add_image(
        rng.random((5, 30, 30)), name="zyx", axis_labels=("z", "y", "x"), scale=(3, 1, 1)
    )
    tz = viewer.add_image(
        rng.random((2, 5, 30, 30)), name="tz", axis_labels=("t", "z", "y", "x"), scale=(1, 5, 1, 1)
    )
    widget = _dock(viewer)
    options = widget._stack
    widget._image.value = lapse  # time-lapse: only planes, and the dock says why
    assert _shown(options.mode)
    assert list(options.mode.choices) == [PLANES]
    assert "time" in options.hint.value
    assert options.options() == {}
    widget._image.value = zyx  # labelled Z: nothing to ask
    options.mode.value = VIEWS
    assert not _shown(options.z_axis) and "label" in options.hint.value
    assert options.options() == {"stack": "views", "voxel_size": (3.0, 1.0, 1.0), "z_axis": None}
    widget._image.value = tz  # 4D: Z is axis 1 of the spatial axes, said to the core
    options.mode.value = VIEWS
    assert not _shown(options.z_axis)
    assert options.options() == {"stack": "views", "voxel_size": (5.0, 1.0, 1.0), "z_axis": 1}
    # a user who labels the lapse's axis 'z' later gets the 3D modes back
    lapse.axis_labels = ("z", "y", "x")
    widget._image.value = lapse
    assert VIEWS in options.mode.choices


def test_unlabelled_4d_asks_for_z(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((2, 4, 30, 30)), name="4d", scale=(1, 4, 1, 1))
    widget = _dock(viewer)
    options = widget._stack
    widget._image.value = image
    options.mode.value = VIEWS
    assert _shown(options.z_axis)
    assert list(options.z_axis.choices) == [0, 1]
    assert options.z_axis.value == 1 and options.voxel_size == (4.0, 1.0, 1.0)
    options.z_axis.value = 0  # the user says the first axis is Z: its scale is the Z step
    assert options.voxel_size == (1.0, 1.0, 1.0)
    assert options.options()["z_axis"] == 0


def test_a_zero_voxel_size_is_refused_in_the_dock(make_napari_viewer, rng, monkeypatch):
    import napari_unet._qt.predict_widget as pw

    messages = []
    monkeypatch.setattr(pw, "show_error", messages.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(rng.random((4, 30, 30)), name="s")
    widget = _dock(viewer)
    widget._image.value = image
    widget._stack.mode.value = VIEWS
    widget._stack.set_voxel_size(0.0, 1.0, 1.0)
    widget.segment()
    assert widget.worker is None
    assert messages and messages[-1].startswith("The voxel size")


def test_result_layers_take_the_stack_scale(make_napari_viewer, qtbot, tiny_model, rng):
    from napari_unet._qt.session import session_for

    viewer = make_napari_viewer()
    image = viewer.add_image(
        rng.random((3, 40, 40)).astype(np.float32),
        name="s",
        scale=(4.0, 0.5, 0.5),
        translate=(10.0, 0, 0),
    )
    widget = _dock(viewer)
    session_for(viewer).set_model(tiny_model, "tiny")
    widget._image.value = image
    widget.segment()  # planes, as before, but placed on the stack's grid
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    for name in ("s segmentation", "s probability"):
        assert tuple(viewer.layers[name].scale) == (4.0, 0.5, 0.5)
        assert tuple(viewer.layers[name].translate) == (10.0, 0.0, 0.0)


def _balls(shape, centres, radius):
    """Bright blurred balls on a dim background (uint16) and their true labels."""
    from scipy import ndimage as ndi

    zz, yy, xx = np.indices(shape)
    truth = np.zeros(shape, np.int32)
    for i, (z, y, x) in enumerate(centres, 1):
        truth[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = i
    image = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.0) * 1000 + 100
    return image.astype(np.uint16), truth


@pytest.mark.parametrize("mode", ["planes", "linked", "views"])
def test_a_3d_run_gives_one_id_per_nucleus_across_planes(make_napari_viewer, qtbot, mode):
    from napari_unet._qt.session import session_for

    # three nuclei, each spanning 11 planes
    image, truth = _balls((14, 48, 48), [(7, 12, 12), (7, 34, 30), (6, 14, 36)], 5.0)
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="stack", scale=(1.0, 1.0, 1.0))
    widget = _dock(viewer)
    session_for(viewer).set_model(threshold_unet(), "threshold")
    widget._image.value = layer
    widget._stack.mode.value = mode
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    labels = viewer.layers["stack segmentation"].data
    assert labels.shape == truth.shape
    found = [labels[truth == i] for i in (1, 2, 3)]
    ids = [set(np.unique(f[f > 0]).tolist()) for f in found]
    if mode == "planes":  # the old way: every plane of a nucleus is its own object
        assert all(len(i) >= 7 for i in ids)
        return
    assert [len(i) for i in ids] == [1, 1, 1] and len(set.union(*ids)) == 3
    assert all((f > 0).mean() > 0.8 for f in found)  # each id covers its nucleus
    assert labels.max() == 3
    # then the size note: this model records no object sizes
    assert widget._status.value.startswith("3 objects found in stack. Estimated object")
    assert widget._progress.value == widget._progress.max


def test_anisotropic_time_lapse_of_stacks(make_napari_viewer, qtbot, monkeypatch):
    import napari_unet._qt.prediction as prediction
    from napari_unet._qt.session import session_for

    said = []
    monkeypatch.setattr(prediction, "show_info", said.append)
    # Z step 3x the pixel size, 2 time points
    image, truth = _balls((6, 24, 24), [(3, 7, 7), (3, 17, 16)], 4.5)
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.stack([image, image]), name="tz", axis_labels=("t", "z", "y", "x"), scale=(1, 3, 1, 1)
    )
    widget = _dock(viewer)
    session_for(viewer).set_model(threshold_unet(), "threshold")
    widget._image.value = layer
    widget._stack.mode.value = VIEWS
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    # the cost was said before the run, for the Z step the layer's scale gave
    assert said[0].startswith("Three views") and "resampled" in said[0]
    labels = viewer.layers["tz segmentation"].data
    assert labels.shape == (2, 6, 24, 24)
    assert tuple(viewer.layers["tz segmentation"].scale) == (1, 3, 1, 1)
    for t in (0, 1):
        ids = [set(np.unique(labels[t][truth == i]).tolist()) - {0} for i in (1, 2)]
        assert [len(i) for i in ids] == [1, 1] and ids[0] != ids[1]
    assert len(np.unique(labels)) == 5  # background + 2 nuclei x 2 time points


def test_cancel_stops_a_3d_run(make_napari_viewer, qtbot, rng):
    from napari_unet._qt.session import session_for

    viewer = make_napari_viewer()
    # smoothed: white noise is "nothing to segment" and never reaches the model
    pixels = ndi.gaussian_filter(rng.random((16, 160, 160)), 1.5).astype(np.float32)
    layer = viewer.add_image(pixels, name="big")
    widget = _dock(viewer)
    session_for(viewer).set_model(threshold_unet(), "threshold")
    widget._image.value = layer
    widget._stack.mode.value = VIEWS
    widget._tile.value = 16
    widget.segment()
    qtbot.waitUntil(lambda: widget._progress.value > 0, timeout=30000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10000)
    assert widget._progress.value < widget._progress.max
    assert widget._status.value == "Prediction cancelled."
    assert "big segmentation" not in [lyr.name for lyr in viewer.layers]


def test_the_hint_says_what_the_mode_costs(make_napari_viewer, qtbot, rng):
    from napari_unet._qt.session import state_for

    viewer = make_napari_viewer()
    layer = viewer.add_image(rng.random((10, 64, 64)), name="s", scale=(4, 1, 1))
    widget = _dock(viewer)
    qtbot.waitUntil(lambda: state_for(viewer).is_warm, timeout=60000)
    widget._image.value = layer
    options = widget._stack
    options.mode.value = VIEWS
    assert "10 XY, 64 XZ and 64 YZ planes" in options.hint.value
    assert "from 10 to 40 planes" in options.hint.value  # the Z step of 4 from the scale
    options.set_voxel_size(0.0, 1.0, 1.0)  # refused before Segment is even pressed
    assert "must be above 0" in options.hint.value


def test_a_stack_not_in_memory_gets_3d_objects_through_zarr(make_napari_viewer, qtbot, tmp_path):
    import dask.array as da

    from napari_unet._qt.session import session_for
    from napari_unet.bigimage import open_prediction

    image, truth = _balls((14, 48, 48), [(7, 12, 12), (7, 34, 30)], 5.0)
    viewer = make_napari_viewer()
    data = da.from_array(image, chunks=(2, 48, 48))
    layer = viewer.add_image(data, name="lazy", scale=(2.0, 1.0, 1.0))
    widget = _dock(viewer)
    session_for(viewer).set_model(threshold_unet(), "threshold")
    widget._image.value = layer
    widget._stack.mode.value = VIEWS
    widget._zarr_out.value = tmp_path / "seg.zarr"
    widget.segment()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    result = open_prediction(tmp_path / "seg.zarr")
    assert result.metadata["labels"]["stack"] == "views"
    assert result.metadata["labels"]["voxel_size"] == [2.0, 1.0, 1.0]  # the layer's scale
    labels = np.asarray(result.labels[0])
    ids = [set(np.unique(labels[truth == i]).tolist()) - {0} for i in (1, 2)]
    assert [len(i) for i in ids] == [1, 1] and result.n_objects == 2
    shown = viewer.layers["lazy segmentation"]
    assert tuple(shown.scale) == (2.0, 1.0, 1.0)
