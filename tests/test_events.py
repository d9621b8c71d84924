"""The core's typed events: counted progress and sentences, one module, old paths kept."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet._generators import progress_callback, run_to_end
from napari_unet.events import (
    Announcement,
    CountedProgress,
    DiameterEstimate,
    Note,
    SizeChoice,
    SizeProgress,
    TileProgress,
)


def test_counted_progress_and_sentences_are_told_apart_by_type():
    from napari_unet.bigimage import ChunkProgress

    counted = [TileProgress(1, 4), SizeProgress(2, 4), ChunkProgress("predict", 3, 4)]
    estimate = DiameterEstimate(20.0, 9, (18.0, 22.0), "model", note="Estimated.")
    said = [Note("A sentence."), SizeChoice(estimate, 1.0, "Estimated object diameter 20 px.")]
    assert all(isinstance(e, CountedProgress) and not isinstance(e, Announcement) for e in counted)
    assert all(isinstance(e, Announcement) and not isinstance(e, CountedProgress) for e in said)
    seen = []
    on_event = progress_callback(lambda done, total: seen.append((done, total)))
    for event in [*counted, *said, None, "a string"]:
        on_event(event)
    assert seen == [(1, 4), (2, 4), (3, 4)]


def test_events_keep_their_fields_and_equality():
    # the precision says, the count counts: two events of one count are equal
    assert TileProgress(1, 4, precision=object()) == TileProgress(1, 4)
    assert TileProgress(1, 4) != SizeProgress(1, 4)  # same numbers, different work
    estimate = DiameterEstimate(50.0, 9, (45.0, 55.0), "model")
    choice = SizeChoice(estimate, 0.36, "Estimated object diameter 50 px: resized x0.36.")
    costly = SizeChoice(estimate, 0.36, choice.message, "Resizing x0.36 for the network.")
    assert choice == costly  # the cost sentence does not count
    assert choice.text == choice.message
    assert costly.text == f"{choice.message} Resizing x0.36 for the network."
    with pytest.raises(AttributeError):
        costly.rescale = 1.0  # frozen


def test_old_import_paths_give_the_same_objects():
    import napari_unet.rescaling as rescaling
    import napari_unet.segment as segment
    import napari_unet.sizing as sizing
    import napari_unet.tiling as tiling
    from napari_unet.volume import plan

    assert tiling.TileProgress is TileProgress
    assert sizing.SizeProgress is SizeProgress and sizing.SizeChoice is SizeChoice
    assert sizing.DiameterEstimate is DiameterEstimate
    for name in ("rescale_for_diameter", "resize_spatial", "check_diameter", "describe_resize"):
        assert getattr(segment, name) is getattr(rescaling, name)
    assert sizing.model_diameter_range is rescaling.model_diameter_range
    assert segment.describe_stack_mode is plan.describe_stack_mode


def test_a_diameter_resize_is_said_before_any_work(tiny_model, rng):
    from napari_unet.rescaling import describe_resize
    from napari_unet.segment import iter_segment

    tiny_model.metadata["object_diameter"] = {"min": 8.0, "max": 40.0}
    image = ndi.gaussian_filter(rng.random((40, 48)), 1.5).astype(np.float32)
    events = []
    result = run_to_end(iter_segment(tiny_model, image, diameter=4.0, tile_shape=16), events.append)
    assert events[0] == Note(describe_resize(image.shape, 3.0))  # 4 px to 12 px
    assert all(isinstance(e, TileProgress) for e in events[1:]) and len(events) > 1
    assert result.rescale == 3.0 and result.labels.shape == image.shape
    # inside the range: nothing to say, only the prediction's progress
    events.clear()
    run_to_end(iter_segment(tiny_model, image, diameter=20.0, tile_shape=16), events.append)
    assert events and all(isinstance(e, TileProgress) for e in events)


def test_linked_planes_run_the_plane_path_not_iter_segment_again(tiny_model, rng, monkeypatch):
    """The checks and the empty-image test run once, in the outer iter_segment."""
    import napari_unet.segment as segment
    from napari_unet.planes import iter_segment_planes

    calls = []
    original = segment.nothing_to_segment

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(segment, "nothing_to_segment", counting)
    image = ndi.gaussian_filter(rng.random((3, 24, 24)), 1.5).astype(np.float32)
    linked = segment.segment(tiny_model, image, stack="linked", rescale=1.0, tile_shape=16)
    assert len(calls) == 1
    # the plane path's probabilities, exactly (its labels are then joined across planes)
    _, prob = run_to_end(iter_segment_planes(tiny_model, image, tile_shape=16))
    np.testing.assert_array_equal(linked.probabilities, prob)
    assert linked.labels.shape == image.shape
