import numpy as np
import pytest

from napari_unet.errors import NapariUnetError
from napari_unet.seeding import random_generator


def test_one_seeding_rule():
    g = np.random.default_rng(3)
    assert random_generator(g) is g
    assert random_generator(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert random_generator([11, 2]).random() == np.random.default_rng([11, 2]).random()
    assert isinstance(random_generator(None), np.random.Generator)
    for bad in (True, -3, "abc", 1.5):
        with pytest.raises(NapariUnetError, match="seed"):
            random_generator(bad)
