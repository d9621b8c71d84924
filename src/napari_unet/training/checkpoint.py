"""Checkpoints and provenance: the optimizer's state as tensors, and where a run began.

A checkpoint is a model file (:func:`~napari_unet.modelfile.save_checkpoint`) whose
metadata holds the run's record and whose extra tensors hold the optimizer's state
and torch's random state, so that a resumed run continues as if it had never
stopped. :meth:`Trainer.save <napari_unet.training.Trainer.save>` and
:meth:`Trainer.resume <napari_unet.training.Trainer.resume>` write and read them;
this module holds the parts that know nothing of the Trainer.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FINE_TUNED_SUFFIXES", "optimizer_tensors", "origin_of", "restore_optimizer"]

# what a fine-tuned model's name ends with (the comma form is that of older files)
FINE_TUNED_SUFFIXES = (" (fine-tuned)", ", fine-tuned")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as named tensors (``optim.<index>.<key>``)."""
    tensors: dict[str, torch.Tensor] = {}
    for idx, pstate in optimizer.state_dict()["state"].items():
        for key, value in pstate.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer, state: dict[str, torch.Tensor], device: torch.device
) -> None:
    """Load the ``optim.*`` tensors of a checkpoint's ``state`` back into ``optimizer``."""
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value.to(device)
    if opt_state:
        sd = optimizer.state_dict()
        for pstate in opt_state.values():
            if "step" in pstate:
                pstate["step"] = pstate["step"].to("cpu")
        sd["state"] = opt_state
        optimizer.load_state_dict(sd)


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
