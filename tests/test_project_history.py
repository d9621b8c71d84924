"""Rounds of a project: recorded, reopened, and any round's model restored exactly."""

import json

import pytest
import torch

from napari_unet import NapariUnetError
from napari_unet.project import RoundHistory
from napari_unet.training import TrainConfig, new_model


def _info(cells, ap=0.5):
    return dict(
        start_model="bundled",
        cells=cells,
        steps=10,
        seconds=1.5,
        ap50=ap,
        mean_iou=0.6,
        val_cells=3,
        entries=["a"],
    )


def test_restoring_round_k_gives_round_k_weights(tmp_path):
    history = RoundHistory(tmp_path / "proj")
    models = [new_model(TrainConfig(base_channels=4, depth=2, seed=s)) for s in range(3)]
    for i, m in enumerate(models):
        history.add_round(m, **_info(cells=10 * (i + 1)))
    assert [r.round for r in history.rounds] == [1, 2, 3] and history.current == 3
    assert [r.new_cells for r in history.rounds] == [10, 10, 10]
    reopened = RoundHistory(tmp_path / "proj")
    assert reopened.rounds == history.rounds and reopened.current == 3
    back = reopened.load_model(2)
    for (name, a), b in zip(models[1].state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(
        next(iter(models[0].state_dict().values())), next(iter(back.state_dict().values()))
    )
    reopened.set_current(2)
    assert RoundHistory(tmp_path / "proj").current == 2
    with pytest.raises(NapariUnetError, match="no round 7"):
        reopened.set_current(7)


def test_a_damaged_or_incomplete_history_is_one_sentence(tmp_path):
    history = RoundHistory(tmp_path)
    history.add_round(new_model(TrainConfig(base_channels=4, depth=2)), **_info(5))
    history.model_path(1).unlink()
    with pytest.raises(NapariUnetError, match="model of round 1 .* is missing"):
        history.load_model(1)
    (tmp_path / "history.json").write_text(json.dumps({"rounds": [{"round": "x"}]}))
    with pytest.raises(NapariUnetError, match="damaged"):
        RoundHistory(tmp_path)


def test_two_histories_of_one_folder_do_not_write_stale_copies(tmp_path):
    """A round added by a worker survives "use this round" through an older copy."""
    model = new_model(TrainConfig(base_channels=4, depth=2))
    gui = RoundHistory(tmp_path)
    gui.add_round(model, **_info(5))
    worker = RoundHistory(tmp_path)
    worker.add_round(model, **_info(8))  # round 2, unknown to the GUI's copy
    gui.set_current(1)
    reopened = RoundHistory(tmp_path)
    assert [r.round for r in reopened.rounds] == [1, 2] and reopened.current == 1
    gui.add_round(model, **_info(9))  # numbered after the round it had not seen
    assert [r.round for r in RoundHistory(tmp_path).rounds] == [1, 2, 3]
    assert (tmp_path / "rounds" / "round-002.safetensors").is_file()
