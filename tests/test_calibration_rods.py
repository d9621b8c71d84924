"""Fine-tuned on a rod colony, the calibrated instance step does not cut rods."""

import numpy as np

from napari_unet import (
    TrainConfig,
    labels_from_probabilities,
    load_bundled_model,
    predict_tiled,
    train_model,
)
from napari_unet.metrics import match_instances, pooled_ap
from napari_unet.synthetic.colonies import make_scene


def test_calibrated_rule_keeps_rods_whole():
    image, labels = make_scene("rods", (192, 192), seed=1)
    test, truth = make_scene("rods", (192, 192), seed=2)
    # the colony is labelled completely: every unlabelled pixel is background. The time
    # limit only sizes the calibration's share (6 s: the whole search, on any machine);
    # the 12 steps end the training long before it
    cfg = TrainConfig.fine_tune(
        steps=12, time_limit=60.0, tile_size=188, validation_fraction=0.2, complete=True
    )
    model = train_model(image, labels, model=load_bundled_model(), config=cfg, device="cpu")
    record = model.metadata["postprocess"]["calibration"]
    assert record["cells"] >= 2 and record["seconds"] >= 0
    prob = predict_tiled(model, test, device="cpu")

    def ap75(pred: np.ndarray) -> float:
        return pooled_ap([match_instances(truth, pred)], 0.75)

    calibrated = ap75(labels_from_probabilities(prob, model=model))
    components = ap75(labels_from_probabilities(prob, method="components"))
    assert calibrated >= components - 0.05, (calibrated, components, model.metadata["postprocess"])
