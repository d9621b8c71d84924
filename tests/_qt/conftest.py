import numpy as np
import pytest

from napari_unet.training import TrainConfig

# A tiny network (depth 3, width 4) so GUI tests train in seconds.
FAST_TRAINING = TrainConfig(
    base_channels=4, depth=3, tile_size=92, steps=6, time_limit=None, validate_every=3
)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    """Models kept at close go to the test's folder, never the user's."""
    monkeypatch.setenv("NAPARI_UNET_DATA_DIR", str(tmp_path / "napari-unet-data"))


@pytest.fixture
def cells():
    from napari_unet.synthetic import make_cells

    return make_cells((96, 128), diameter=(10, 18), seed=3)


def paint_cells(labels_layer, true_labels, ids):
    """Paint some true cells into an annotation layer, as a user would (one paint call each)."""
    for new_id, cell in enumerate(ids, start=1):
        coords = np.argwhere(true_labels == cell)
        labels_layer.data_setitem(tuple(coords.T), new_id)


@pytest.fixture
def paint():
    return paint_cells


@pytest.fixture
def fast_config():
    return FAST_TRAINING
