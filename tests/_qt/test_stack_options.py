import numpy as np
import pytest

from napari_unet._qt.stack_options import PLANES, VIEWS, check_voxel_size, stack_axes
from napari_unet.errors import NapariUnetError


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
