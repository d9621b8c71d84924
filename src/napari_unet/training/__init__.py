"""The training engine: fine-tune a U-Net from a few annotations, headless.

A :class:`Trainer` turns (image, instance labels, optional annotated region)
pairs into random valid-size tiles, augments each one (elastic deformation and
the rest, one field for image, labels and weight map), and minimises the paper's
pixel-wise softmax cross-entropy weighted by the boundary weight map.
:meth:`Trainer.run` is a generator: it yields a typed :class:`TrainEvent` after
every step, so a CLI progress bar or a napari thread worker can follow it, and
:meth:`Trainer.stop` ends it between two steps with a consistent model.

Pixels outside the annotated region carry zero loss. Some annotated cells, chosen
by a fixed rule that stays put as annotations grow, are held out for validation
(loss, mean IoU and AP@0.5 on instances).

The package, one idea per module:

- :mod:`.config`: :class:`TrainConfig`, and the events a run reports;
- :mod:`.annotated`: the inputs checked, and which of their planes are annotated;
- :mod:`.data`: :func:`prepare_training_data`, annotated planes ready for sampling;
- :mod:`.split`: which annotated cells are held out for validation;
- :mod:`.pairs`: image/labels/region files of a training set found in a folder;
- :mod:`.sampler`: where a training tile is cut and how it is augmented
  (:class:`TileSampler`), and :func:`preview_samples`;
- :mod:`.loss`: :func:`weighted_cross_entropy`;
- :mod:`.known`: where a sparse annotation says something (the loss looks only there);
- :mod:`.provenance`: which cells were copied from a prediction and never edited;
- :mod:`.validation`: scores on the held-out cells, and the guard between rounds;
- :mod:`.checkpoint`: checkpoints, resuming, provenance;
- :mod:`.trainer`: the loop (:class:`Trainer`), :func:`train_model`, :func:`new_model`.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# public name -> module; imported on first use, so that reading a TrainConfig (the
# napari docks do it on the GUI thread) does not load torch
_LAZY = {
    "FINE_TUNE_LEARNING_RATE": "config",
    "INTERACTIVE_SECONDS": "config",
    "TrainConfig": "config",
    "TrainEvent": "config",
    "TrainState": "config",
    "Validation": "config",
    "TrainingData": "data",
    "annotated_plane_count": "annotated",
    "split_cells": "split",
    "find_pairs": "pairs",
    "prepare_training_data": "data",
    "weighted_cross_entropy": "loss",
    "TileSampler": "sampler",
    "preview_samples": "sampler",
    "Comparison": "validation",
    "compare_to_start": "validation",
    "known_area": "known",
    "unedited_copies": "provenance",
    "Trainer": "trainer",
    "new_model": "trainer",
    "train_model": "trainer",
    "LiveEvent": "live",
    "LiveState": "live",
    "LiveTrainer": "live",
}
__all__ = [
    "FINE_TUNE_LEARNING_RATE",
    "Comparison",
    "compare_to_start",
    "known_area",
    "unedited_copies",
    "LiveEvent",
    "LiveState",
    "LiveTrainer",
    "INTERACTIVE_SECONDS",
    "TileSampler",
    "TrainConfig",
    "TrainEvent",
    "TrainState",
    "Trainer",
    "TrainingData",
    "Validation",
    "annotated_plane_count",
    "find_pairs",
    "new_model",
    "prepare_training_data",
    "preview_samples",
    "split_cells",
    "train_model",
    "weighted_cross_entropy",
]
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .annotated import annotated_plane_count
    from .config import (
        FINE_TUNE_LEARNING_RATE,
        INTERACTIVE_SECONDS,
        TrainConfig,
        TrainEvent,
        TrainState,
        Validation,
    )
    from .data import TrainingData, prepare_training_data
    from .known import known_area
    from .live import LiveEvent, LiveState, LiveTrainer
    from .loss import weighted_cross_entropy
    from .pairs import find_pairs
    from .provenance import unedited_copies
    from .sampler import TileSampler, preview_samples
    from .split import split_cells
    from .trainer import Trainer, new_model, train_model
    from .validation import Comparison, compare_to_start
