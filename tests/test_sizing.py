"""The object size estimate: nuclei at 0.3x, 1x and 3x the bundled model's sizes."""

import math

import numpy as np
import pytest
import torch
from skimage.transform import rescale as sk_rescale

from napari_unet import (
    NapariUnetError,
    estimate_diameter,
    instance_scores,
    labels_from_probabilities,
)
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.postprocess import resolve_postprocess
from napari_unet.segment import iter_segment, rescale_for_diameter, segment
from napari_unet.sizing import (
    DiameterEstimate,
    SizeChoice,
    SizeProgress,
    choose_rescale,
)
from napari_unet.sizing.from_image import sample_planes as _sample_planes
from napari_unet.synthetic import make_cells


@pytest.fixture(scope="module")
def bundled():
    from napari_unet import load_bundled_model

    return load_bundled_model()


def _resized(shape, factor, seed):
    """Synthetic nuclei drawn at the model's sizes, then resized (labels nearest-neighbour)."""
    image, labels = make_cells(shape, seed=seed)
    if factor == 1:
        return image, labels
    image = sk_rescale(
        image.astype(np.float32), factor, order=1, anti_aliasing=factor < 1, preserve_range=True
    ).astype(np.float32)
    labels = sk_rescale(labels, factor, order=0, anti_aliasing=False, preserve_range=True)
    return image, labels.astype(np.int32)


def _median_diameter(labels):
    """The truth: median equivalent diameter of the labelled objects."""
    _, areas = np.unique(labels[labels > 0], return_counts=True)
    return float(np.median(2 * np.sqrt(areas / np.pi)))


# base shape, factor: 0.3x gives nuclei about 5.5 px (the model knows 8-40), 3x about 55 px
CASES = {"0.3x": ((320, 320), 0.3), "1x": ((256, 256), 1.0), "3x": ((160, 160), 3.0)}


# The README's promise: within 10% of the true median diameter (measured within 4%: 0.3x,
# 1x, 3x on seeds 21-24, a stack and a lazy image, docs/benchmarks.md).
PROMISE = 0.10


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_is_within_the_promised_tenth_of_the_truth(bundled, case):
    shape, factor = CASES[case]
    image, labels = _resized(shape, factor, seed=21)
    truth = _median_diameter(labels)
    est = estimate_diameter(image, bundled, device="cpu")
    assert est.source == "model" and est.count >= 10
    assert abs(est.diameter / truth - 1) < PROMISE, (est, truth)
    q1, q3 = est.quartiles
    assert q1 <= est.diameter <= q3
    # the model-free estimate alone is rougher but on the right scale
    alone = estimate_diameter(image)
    assert alone.source == "image"
    assert abs(alone.diameter / truth - 1) < 0.4, (alone, truth)


@pytest.mark.parametrize("case", ["0.3x", "3x"])
def test_segment_without_a_diameter_resizes_far_from_the_model_range(bundled, case):
    """Pooled over three images: one image of about 20 nuclei swings AP@0.5 by 0.15."""
    shape, factor = CASES[case]
    found = {"auto": [], "as_is": [], "given": []}
    for seed in (22, 23, 24):
        image, labels = _resized(shape, factor, seed=seed)
        auto = segment(bundled, image, device="cpu")
        as_is = segment(bundled, image, rescale=1.0, device="cpu")
        given = segment(bundled, image, diameter=_median_diameter(labels), device="cpu")
        for name, r in (("auto", auto), ("as_is", as_is), ("given", given)):
            found[name].append(match_instances(labels, r.labels))
        assert auto.resized and auto.estimate is not None
        assert auto.diameter == auto.estimate.diameter
        assert (auto.rescale > 1) == (factor < 1)
        assert "Estimated object diameter" in auto.note and "resized x" in auto.note
        # an explicit factor or diameter skips the estimate
        assert as_is.estimate is None and given.estimate is None and not as_is.resized
    ap_auto, ap_as_is, ap_given = (pooled_ap(found[k], 0.5) for k in ("auto", "as_is", "given"))
    # past its range (3x: nuclei 47-55 px) the model cuts or merges nuclei as is; resized
    # by the estimate it does about as well as with the true diameter given. Pooled, 3x:
    # first-stage model auto 0.86, as is 0.31, given 0.91; with the second stage (issue
    # 25) 0.88, 0.47, 0.88 (seed 22 alone: as is 0.81 -> 0.95, auto 0.95 -> 0.81). 0.3x:
    # both 0.89, 0.19, 0.87
    assert ap_auto >= ap_as_is + 0.1, (ap_auto, ap_as_is)
    assert ap_auto >= ap_given - 0.1, (ap_auto, ap_given)


def test_at_the_trained_size_nothing_is_resized_and_nothing_predicted_twice(bundled):
    image, labels = _resized(*CASES["1x"], seed=23)
    calls = []
    hook = bundled.register_forward_hook(lambda *args: calls.append(1))
    try:
        auto = segment(bundled, image, device="cpu")
        n_auto = len(calls)
        plain = segment(bundled, image, rescale=1.0, device="cpu")
    finally:
        hook.remove()
    assert auto.rescale == 1.0 and not auto.resized
    assert "within the model's 8-40 px, no resizing" in auto.note
    # a small image in range: the estimate's own whole-image pass is the prediction
    assert n_auto == len(calls) - n_auto
    np.testing.assert_array_equal(auto.probabilities, plain.probabilities)
    # the same rule, at the object size the estimate found (a factor alone says no size)
    sized = labels_from_probabilities(plain.probabilities, model=bundled, diameter=auto.diameter)
    np.testing.assert_array_equal(auto.labels, sized)
    assert instance_scores(labels, auto.labels).ap50 > 0.9


def test_iter_segment_says_the_choice_before_predicting(bundled):
    image, _ = _resized(*CASES["3x"], seed=24)
    gen = iter_segment(bundled, image, device="cpu")
    events = list(_events(gen))
    kinds = [type(e).__name__ for e in events]
    choice = kinds.index("SizeChoice")
    assert set(kinds[:choice]) == {"SizeProgress"} and "SizeChoice" not in kinds[choice + 1 :]
    assert set(kinds[choice + 1 :]) <= {"TileProgress"}
    event = events[choice]
    assert isinstance(event, SizeChoice) and event.rescale < 1
    # the middle of the range: the rule's factor, or the estimate's own pass at a factor
    # that puts the objects in 12-27 px (then that prediction is the result)
    rule = rescale_for_diameter(bundled, event.estimate.diameter)
    at = event.estimate.diameter * event.rescale
    assert event.rescale == pytest.approx(rule) or 12 <= at <= 40 / 1.5
    assert f"resized x{event.rescale:.2g}" in event.message


def test_a_small_image_out_of_range_is_predicted_once(bundled):
    """The estimate's whole-image pass at the middle of the range is the prediction."""
    image, labels = _resized(*CASES["3x"], seed=28)
    calls = []
    hook = bundled.register_forward_hook(lambda *args: calls.append(1))
    try:
        auto = segment(bundled, image, device="cpu")
        n_auto = len(calls)
        # a factor alone says no object size: the rule at the estimated one, given
        sized = resolve_postprocess(bundled, diameter=auto.diameter * auto.rescale)
        rule = {k: sized[k] for k in ("h", "smoothing")}
        again = segment(bundled, image, rescale=auto.rescale, device="cpu", **rule)
    finally:
        hook.remove()
    assert auto.resized and n_auto == len(calls) - n_auto
    np.testing.assert_array_equal(auto.labels, again.labels)
    assert instance_scores(labels, auto.labels).ap50 >= 0.8


def _events(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_stacks_are_measured_on_a_few_planes(bundled):
    planes = [_resized((160, 160), 3.0, seed=30 + z) for z in range(7)]
    stack = np.stack([p[0] for p in planes])
    # ids repeat between planes: each plane's objects are its own (the model measures all three
    # planes: the middle one alone missed this median by 18%)
    per_plane = [np.unique(p[1][p[1] > 0], return_counts=True)[1] for p in planes[2:5]]
    truth = float(np.median(2 * np.sqrt(np.concatenate(per_plane) / np.pi)))
    picked = _sample_planes(stack, has_channels=False)
    assert [p.index for p in picked] == [(2,), (3,), (4,)]  # three from the middle
    est = estimate_diameter(stack, bundled, device="cpu")
    assert abs(est.diameter / truth - 1) < PROMISE, (est, truth)


def test_too_few_objects_no_range_and_no_model():
    yy, xx = np.mgrid[:128, :128]
    two = (((yy - 40) ** 2 + (xx - 40) ** 2 < 100) | ((yy - 90) ** 2 + (xx - 90) ** 2 < 100)) * 1.0
    est = estimate_diameter(two.astype(np.float32))
    assert est.diameter is None and est.count < 5 and "Too few objects" in est.note

    class NoRange(torch.nn.Module):
        metadata = {}

    f, message = choose_rescale(NoRange(), DiameterEstimate(60.0, 30, (50.0, 70.0), "image"))
    assert f == 1.0 and "records no object sizes" in message
    f, message = choose_rescale(NoRange(), est)
    assert f == 1.0 and "Too few objects" in message


def test_a_model_without_a_range_is_not_resized_and_says_so(tiny_model, rng):
    image, _ = _resized((160, 160), 3.0, seed=25)
    result = segment(tiny_model, image)
    assert result.rescale == 1.0 and result.estimate is not None
    assert result.estimate.source == "image"  # no model pass: nothing it could change
    assert "records no object sizes" in result.note


def test_lazy_images_are_measured_on_a_crop(bundled):
    import dask.array as da

    image, labels = _resized((160, 160), 3.0, seed=26)
    lazy = da.from_array(image, chunks=100)
    est = estimate_diameter(lazy, bundled, device="cpu")
    assert abs(est.diameter / _median_diameter(labels) - 1) < PROMISE, est


@pytest.mark.parametrize("bad", [0, -3, math.nan, math.inf, -math.inf, 300, 1e6, "big", True])
def test_bad_diameters_are_one_sentence(bundled, bad):
    image, _ = _resized((64, 64), 1.0, seed=27)
    with pytest.raises(NapariUnetError) as info:
        segment(bundled, image, diameter=bad)
    text = str(info.value)
    assert "\n" not in text and text.endswith(".") and "diameter" in text
    if bad == 300:  # within what the model can resize for, but not in this image
        assert "larger than the image (64x64 px)" in text


def test_a_diameter_and_a_factor_together_are_refused(bundled):
    with pytest.raises(NapariUnetError, match="not both"):
        segment(bundled, np.ones((32, 32)), diameter=20, rescale=0.5)


def test_size_progress_is_not_tile_progress():
    from napari_unet.tiling import TileProgress

    assert not isinstance(SizeProgress(0, 1), TileProgress)
