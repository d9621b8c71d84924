import numpy as np
import pytest

from napari_unet import NapariUnetError, labels_from_probabilities


def _probs(fg):
    fg = fg.astype(np.float32)
    return np.stack([1 - fg, fg])


def test_components_become_consecutive_instances():
    fg = np.zeros((30, 30))
    fg[2:8, 2:8] = 0.9
    fg[10:20, 10:20] = 0.8
    fg[25, 25] = 0.99  # one pixel: dropped as too small
    fg[8:10, 8:10] = 0.2  # below threshold: keeps the squares apart
    labels = labels_from_probabilities(_probs(fg), min_size=4)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[2:8, 2:8] == labels[2, 2]).all()
    assert labels[25, 25] == 0


def test_diagonal_contact_keeps_objects_apart():
    fg = np.zeros((10, 10))
    fg[0:4, 0:4] = 1
    fg[4:8, 4:8] = 1
    assert labels_from_probabilities(_probs(fg), min_size=1).max() == 2


def test_stack_ids_are_unique():
    fg = np.zeros((2, 10, 10))
    fg[:, 2:6, 2:6] = 1
    labels = labels_from_probabilities(_probs(fg), min_size=1)
    assert labels.shape == (2, 10, 10)
    assert labels[0, 3, 3] == 1 and labels[1, 3, 3] == 2


def test_threshold_and_bad_input():
    fg = np.full((5, 5), 0.6)
    assert labels_from_probabilities(_probs(fg), threshold=0.7, min_size=1).max() == 0
    with pytest.raises(NapariUnetError):
        labels_from_probabilities(_probs(fg), threshold=1.5)
    with pytest.raises(NapariUnetError):
        labels_from_probabilities(np.zeros((5, 5)))
