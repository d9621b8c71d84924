"""Checkpoints and provenance: saving a run, resuming it exactly, and recording where it began.

A checkpoint is a model file (:func:`~napari_unet.modelfile.save_checkpoint`) whose
metadata holds the run's record (:func:`training_record`) and whose extra tensors
hold the optimizer's state and torch's random state, so that a resumed run
continues as if it had never stopped.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..modelfile import save_checkpoint
from .config import Validation

# what a fine-tuned model's name ends with (the comma form is that of older files)
FINE_TUNED_SUFFIXES = (" (fine-tuned)", ", fine-tuned")

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["origin_of", "restore_training_state", "save_trainer", "training_record"]


def training_record(trainer: Trainer, seconds: float, validation: Validation | None) -> dict:
    """The run's provenance: version, steps, time, settings, data, origin, scores, random state."""
    return {
        "napari_unet_version": __version__,
        "steps": trainer.step,
        "seconds": round(trainer.seconds_before + seconds, 3),
        "config": trainer.config.to_dict(),
        "data": trainer.data.summary,
        "started_from": trainer.started_from,
        "validation": asdict(validation) if validation else None,
        "start_validation": asdict(trainer.baseline) if trainer.baseline else None,
        "rng": trainer.rng.bit_generator.state,
    }


def save_trainer(
    trainer: Trainer, path: str | Path, seconds: float, validation: Validation | None
) -> Path:
    """Save a checkpoint (model, optimizer and random state) atomically."""
    state: dict[str, torch.Tensor] = {"torch_rng": trainer.torch_generator.get_state()}
    opt = trainer.optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            state[f"optim.{idx}.{key}"] = tensor
    return save_checkpoint(
        trainer.model, path, state, training=training_record(trainer, seconds, validation)
    )


def restore_training_state(trainer: Trainer, info: dict[str, Any], state: dict) -> None:
    """Put a checkpoint's record (``info``) and tensors (``state``) back into ``trainer``."""
    # the run's own origin; a checkpoint from before origins were recorded has none
    trainer.started_from = info.get("started_from") or {
        "model": "unknown (the checkpoint predates provenance records)"
    }
    trainer.step = int(info.get("steps", 0))
    trainer.seconds_before = float(info.get("seconds", 0.0))
    if "rng" in info:
        trainer.rng.bit_generator.state = info["rng"]
    if "torch_rng" in state:
        trainer.torch_generator.set_state(state["torch_rng"])
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value.to(trainer.device)
    if opt_state:
        sd = trainer.optimizer.state_dict()
        for pstate in opt_state.values():
            if "step" in pstate:
                pstate["step"] = pstate["step"].to("cpu")
        sd["state"] = opt_state
        trainer.optimizer.load_state_dict(sd)


def origin_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """Where a run starts: scratch, or a named/trained model (whose scores no longer apply).

    The start model's own description, training data and evaluation move in
    here (with its own origin, so fine-tuning twice keeps the whole chain), and
    a named model gets " (fine-tuned)" added (a name bioimage.io accepts), so a
    fine-tuned model never shows the name, data or scores of the weights it
    started from as its own.
    (Changes ``metadata``.)
    """
    training = metadata.get("training") or {}
    if not training and "name" not in metadata:
        return {"model": "scratch"}
    name = metadata.get("name", "a trained model")
    origin = {"model": name, "steps": training.get("steps")}
    if training.get("started_from"):
        origin["started_from"] = training["started_from"]
    for key in ("description", "training_data"):
        if key in metadata:
            origin[key] = metadata.pop(key)
    if "name" in metadata and not name.endswith(FINE_TUNED_SUFFIXES):
        metadata["name"] = f"{name} (fine-tuned)"
    if "evaluation" in metadata:
        origin["evaluation"] = {
            k: v for k, v in metadata.pop("evaluation").items() if k in ("ap50", "mean_iou")
        }
    return origin
