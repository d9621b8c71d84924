"""Why live mode lagged Fine-tune on rods: the start model's object rule, at fixed steps.

Run:  .venv/bin/python benchmarks/bench_live_rule.py [--seed 0]

The rounds arm's random cells of ``bench_live.py`` (rods, scene ``2 seed + 1``),
fine-tuned from the bundled model with the Fine-tune settings (220-px tiles, no
calibration while training); after 160, 320 and 480 steps the held-out rods image
(scene ``2 seed + 2``) is scored with AP@0.5 twice on the same weights: with the
bundled model's rule (what live mode used before it calibrated) and with the rule
calibrated on the painted cells (:func:`napari_unet.training.calibrate.calibrate_model`,
a 30 s budget). One torch thread. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic.colonies import make_scene
from napari_unet.training import TrainConfig, Trainer, prepare_training_data
from napari_unet.training.calibrate import calibrate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cells", default="20,40", help="painted cells, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    image, labels = make_scene("rods", (256, 256), seed=2 * args.seed + 1)[:2]
    test_image, test_labels = make_scene("rods", (256, 256), seed=2 * args.seed + 2)[:2]
    labels, test_labels = labels.astype(np.int32), test_labels.astype(np.int32)

    def score(model) -> float:
        probs = predict_tiled(model, test_image, device="cpu")
        return instance_scores(test_labels, labels_from_probabilities(probs, model=model)).ap50

    ids = np.unique(labels)
    order = np.random.default_rng(args.seed).permutation(ids[ids > 0])  # the rounds' order
    print("painted cells | steps | AP@0.5 bundled rule | calibrated rule | the rule")
    for n in map(int, args.cells.split(",")):
        model = load_bundled_model()
        painted = np.where(np.isin(labels, order[:n]), labels, 0).astype(np.int32)
        config = TrainConfig.fine_tune(tile_size=220, calibrate=False, seed=args.seed)
        data = prepare_training_data(image, painted, model=model, config=config)
        trainer = Trainer(model, data, config, device="cpu")
        for step in range(1, 481):
            trainer.train_step(config.learning_rate)
            if step % 160:
                continue
            model.eval()
            before, kept = score(model), copy.deepcopy(model.metadata.get("postprocess"))
            calibrate_model(model, data, "cpu", 30.0)
            after, rule = score(model), model.metadata["postprocess"]
            model.metadata["postprocess"] = kept  # training goes on with the start rule
            said = {k: v for k, v in rule.items() if k != "calibration"}
            print(f"{n} | {step} | {before:.3f} | {after:.3f} | {said}", flush=True)


if __name__ == "__main__":
    main()
