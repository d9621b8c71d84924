"""One truth on screen: one model in use per viewer, and lists that offer what fits."""

import numpy as np

from napari_unet._qt.session import session_for


def _docks(viewer, *names):
    return [viewer.window.add_plugin_dock_widget("napari-unet", n)[1] for n in names]


def test_a_model_chosen_in_predict_is_in_use_in_every_dock(
    make_napari_viewer, qtbot, tiny_model, tmp_path, cells
):
    from napari_unet import save_model

    image, _ = cells
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="nuclei")
    predict, model, train = _docks(viewer, "Predict", "Model", "Train")
    session = session_for(viewer)
    session.set_model(tiny_model, "round 1 of the project")
    assert train._start.value == "current"
    other = save_model(tiny_model, tmp_path / "other.safetensors")
    predict._model_choice.value = "file"
    predict._model_path.value = other
    predict._image.value = layer
    predict.segment()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=30000)
    assert session.source == "other.safetensors"
    for text in (predict._model_info.value, model._in_use.value):
        assert text.startswith("other.safetensors")
    assert predict._model_choice.value == "current"  # the next run uses it again
    # its segmentation counts as made by the model in use
    seg = viewer.layers["nuclei segmentation"]
    assert seg.metadata["napari_unet"]["model"] == session.generation
    # a choice in another dock reaches Predict and Train
    train._start.value = "scratch"
    session.set_model(tiny_model, "round 2 of the project")
    assert predict._model_info.value.startswith("round 2 of the project")
    assert train._start.value == "current"


def test_annotation_lists_offer_only_layers_that_fit_the_image(make_napari_viewer, cells):
    image, truth = cells
    viewer = make_napari_viewer()
    flat = viewer.add_image(image, name="flat")
    stack = viewer.add_image(np.stack([image] * 3), name="stack")
    flat_labels = viewer.add_labels(truth, name="flat labels")
    stack_labels = viewer.add_labels(np.stack([truth] * 3), name="stack labels")
    annotate, train = _docks(viewer, "Annotate", "Train")
    for dock in (annotate, train):
        dock._image.value = flat
        assert list(dock._annotation.choices) == [None, flat_labels] or list(
            dock._annotation.choices
        ) == [flat_labels], dock
        dock._image.value = stack
        assert stack_labels in dock._annotation.choices
        assert flat_labels not in dock._annotation.choices
