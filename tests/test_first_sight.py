"""The first model's judgement of painted cells is kept across rounds (issue 28)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.synthetic.scribbles import box_cells
from napari_unet.training import TrainConfig, new_model, prepare_training_data
from napari_unet.training.data import model_normalization, planned_area
from napari_unet.training.first_sight import ForegroundMemory, plane_key
from napari_unet.training.known import ring_width
from napari_unet.training.partial import PartialRule

CFG = TrainConfig.fine_tune(tile_size=220, validation_fraction=0.0, seed=0)


@pytest.fixture(scope="module")
def scene():
    """Synthetic nuclei, the bundled model, and a model that is sure of nothing.

    The second stands for a later round's start model that no longer judges the
    paint as the first did (a model fine-tuned on boxes is no longer sure of
    their rims; one trained a few steps is no longer sure under a dab).
    """
    image, truth = make_cells((256, 256), style="fluorescence", seed=11)
    unsure = new_model(TrainConfig())
    unsure.metadata.update(load_bundled_model().metadata)  # same normalisation
    return image, truth, load_bundled_model(), unsure


def _model_input(image, model):
    """The plane as the partial rule sees it: normalised as training does, (1, H, W)."""
    norm = model_normalization(model, CFG)
    return norm.apply(image, norm.statistics(image), channel_axis=None)[None].astype(np.float32)


def _far_spots(truth, n):
    far = ndi.distance_transform_edt(truth == 0) > 10
    far[:24], far[-24:], far[:, :24], far[:, -24:] = False, False, False, False
    spots = np.argwhere(far)
    return spots[np.linspace(0, len(spots) - 1, n).astype(int)]


def test_stray_dabs_stay_left_out_when_a_later_model_is_unsure(scene):
    image, truth, bundled, unsure = scene
    labels = np.zeros(truth.shape, np.int32)
    for k, (y, x) in enumerate(_far_spots(truth, 2), start=1):
        labels[y - 2 : y + 3, x - 1 : x + 2] = k
    memory = ForegroundMemory()
    _, first = planned_area(image, labels, None, PartialRule(bundled, memory=memory), CFG)
    assert first["left_out"] == [1, 2]
    # the later model alone does not see them as strays: the memory is what keeps them out
    _, fresh = planned_area(image, labels, None, PartialRule(unsure), CFG)
    assert fresh["left_out"] == []
    _, later = planned_area(image, labels, None, PartialRule(unsure, memory=memory), CFG)
    assert later["left_out"] == [1, 2]
    # and a round from the later model, with a whole nucleus beside them
    labels[truth == np.unique(truth)[1]] = 3
    data = prepare_training_data(image, labels, model=unsure, config=CFG, memory=memory)
    assert data.summary[0]["left_out"] == [1, 2] and data.summary[0]["cells"] == 1


def test_a_new_area_is_judged_by_the_newer_model(scene):
    image, truth, bundled, unsure = scene
    (y, x), (v, u) = _far_spots(truth, 2)
    labels = np.zeros(truth.shape, np.int32)
    labels[y - 2 : y + 3, x - 1 : x + 2] = 1
    memory = ForegroundMemory()
    planned_area(image, labels, None, PartialRule(bundled, memory=memory), CFG)
    x_in = _model_input(image, bundled)
    _, done = memory.plane(plane_key(x_in, 0), truth.shape)
    assert done[y, x] and not done[v, u]  # the second spot lies outside the judged area
    labels[v - 2 : v + 3, u - 1 : u + 2] = 2
    _, later = planned_area(image, labels, None, PartialRule(unsure, memory=memory), CFG)
    assert later["left_out"] == [1]  # dab 1 as first judged; dab 2 as the newer model sees it
    # many new marks (a Fine-tune predicts one box round them all): dab 1 keeps its judgement
    for k, (y, x) in enumerate(_far_spots(truth, 12)[[1, 3, 5, 7, 9]], start=3):
        labels[y - 2 : y + 3, x - 1 : x + 2] = k
    _, many = planned_area(image, labels, None, PartialRule(unsure, memory=memory), CFG)
    assert 1 in many["left_out"] and 2 not in many["left_out"]


def test_over_painted_rims_are_the_first_models_in_a_later_round(scene):
    image, truth, bundled, unsure = scene
    ids = np.sort(np.random.default_rng(0).choice(np.unique(truth)[1:], 3, replace=False))
    labels = box_cells(truth, ids)
    x_in = _model_input(image, bundled)
    ring = ring_width(labels, CFG.sigma)
    memory = ForegroundMemory()
    first = PartialRule(bundled, memory=memory)(x_in, labels, ring)[3]
    assert first is not None and first.sum() > 50
    assert PartialRule(unsure)(x_in, labels, ring)[3] is None  # unsure: no rim alone
    np.testing.assert_array_equal(PartialRule(unsure, memory=memory)(x_in, labels, ring)[3], first)


def test_another_image_is_never_judged_by_this_ones_foreground(scene):
    image, truth, bundled, _ = scene
    second = np.rot90(image, 2).copy()
    labels = np.zeros(truth.shape, np.int32)
    for k, (y, x) in enumerate(_far_spots(truth, 2), start=1):
        labels[y - 2 : y + 3, x - 1 : x + 2] = k
    memory = ForegroundMemory()
    planned_area(image, labels, None, PartialRule(bundled, memory=memory), CFG)
    _, shared = planned_area(second, labels, None, PartialRule(bundled, memory=memory), CFG)
    _, alone = planned_area(second, labels, None, PartialRule(bundled), CFG)
    assert shared["left_out"] == alone["left_out"]
    assert len(memory) == 2


def test_the_memory_keeps_its_newest_planes():
    memory = ForegroundMemory(max_bytes=2 * 8 * 8 * 5)  # two 8x8 planes
    keys = [plane_key(np.full((8, 8), v, np.float32), 0) for v in range(3)]
    first = memory.plane(keys[0], (8, 8))
    first[1][:] = True
    memory.plane(keys[1], (8, 8))
    assert memory.plane(keys[0], (8, 8))[1].all()  # kept, and now the newest
    memory.plane(keys[2], (8, 8))
    assert len(memory) == 2 and not memory.plane(keys[1], (8, 8))[1].any()  # 1 was forgotten
    assert plane_key(np.zeros((8, 8)), 0) != plane_key(np.zeros((8, 8)), 1)


def test_a_saved_memory_judges_a_reopened_projects_dabs_as_before(scene, tmp_path):
    """A project keeps the first judgement: a new session's later model leaves the dabs out."""
    image, truth, bundled, unsure = scene
    labels = np.zeros(truth.shape, np.int32)
    for k, (y, x) in enumerate(_far_spots(truth, 2), start=1):
        labels[y - 2 : y + 3, x - 1 : x + 2] = k
    memory = ForegroundMemory()
    planned_area(image, labels, None, PartialRule(bundled, memory=memory), CFG)
    path = memory.save(tmp_path / "first_sight.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first_sight.npz"]  # no temp left
    reopened = ForegroundMemory()
    assert reopened.load(path) == 1
    _, later = planned_area(image, labels, None, PartialRule(unsure, memory=reopened), CFG)
    assert later["left_out"] == [1, 2]
    key = plane_key(_model_input(image, bundled), 0)
    (fg, done), (fg2, done2) = memory.plane(key, truth.shape), reopened.plane(key, truth.shape)
    np.testing.assert_array_equal(done, done2)
    np.testing.assert_allclose(fg2[done], fg[done], atol=1e-3)  # float16 on disk
    # areas judged in this session stay; the file fills only the rest
    here = ForegroundMemory()
    fg3, done3 = here.plane(key, truth.shape)
    y, x = np.argwhere(done)[0]
    fg3[y, x], done3[y, x] = 0.123, True
    assert here.load(path) == 1
    assert fg3[y, x] == np.float32(0.123) and (done3 == done | done3).all() and done3[done].all()
    assert ForegroundMemory().load(tmp_path / "none.npz") == 0


def test_a_damaged_memory_file_says_one_sentence_and_adds_nothing(tmp_path):
    from napari_unet.errors import NapariUnetError

    bad = tmp_path / "first_sight.npz"
    bad.write_bytes(b"not a zip")
    memory = ForegroundMemory()
    with pytest.raises(NapariUnetError, match="could not be read .*judged again"):
        memory.load(bad)
    assert len(memory) == 0
    np.savez(bad, format=np.array(1), z_0=np.array(0), key_0=np.zeros(16, np.uint8),
             fg_0=np.zeros((4, 4), np.float16), done_0=np.zeros((3, 3), bool))  # fmt: skip
    with pytest.raises(NapariUnetError, match="different shapes"):
        memory.load(bad)
    assert len(memory) == 0
