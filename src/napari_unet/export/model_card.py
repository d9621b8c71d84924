"""The model card: the package's documentation, written from the model's metadata."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .identifiers import UNET_DOI

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["model_card"]


def model_card(model: UNet, name: str, context: int, min_size: int, step: int) -> str:
    """The package's documentation (README.md) in Markdown.

    Parameters
    ----------
    model : UNet
        The network; its metadata gives the normalisation, training and evaluation.
    name : str
        The model's name on bioimage.io.
    context, min_size, step : int
        The network's context per side, smallest valid input and input step, in pixels.

    Returns
    -------
    str
    """
    meta = model.metadata or {}
    norm = meta.get("normalization") or {"method": "percentile", "low": 1.0, "high": 99.8}
    training = meta.get("training") or {}
    data = meta.get("training_data") or {}
    lines = [
        f"# {name}",
        "",
        str(meta.get("description") or "A U-Net trained with napari-unet."),
        "",
        "## Model",
        "",
        "The original U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) with valid "
        "(unpadded) convolutions, exported by napari-unet.",
        "",
        f"- Architecture: {json.dumps(model.config)}",
        f"- Parameters: {sum(p.numel() for p in model.parameters()):,}",
        f"- Valid input sizes: {min_size} + k * {step} pixels along y and x.",
        f"- The output is {context} pixels smaller than the input on every side (the "
        "network's context). To segment a large image, cut it into tiles that overlap by "
        f"{2 * context} pixels, start every tile at a multiple of {step} pixels, and "
        "mirror the image at its borders; the tiles' outputs then abut without seams.",
        "",
        "## Pre- and post-processing",
        "",
        f"- Input: raw intensities, scaled per image and channel so that the "
        f"{norm.get('low')}th percentile maps to 0 and the {norm.get('high')}th to 1 "
        "(`scale_range`).",
        "- Output: softmax over the classes (`softmax`); channel 1 is the foreground "
        "(cell) probability for a two-class model.",
        "",
        "## Training",
        "",
    ]
    if training:
        origin = training.get("started_from") or {}
        start = origin.get("model") if isinstance(origin, dict) else None
        lines += [
            f"- Start model: {start or 'trained from scratch'}",
            f"- Steps: {training.get('steps', 'not recorded')}",
            f"- Recipe: {training.get('recipe', 'napari-unet training')}",
        ]
    else:
        lines.append("- Training provenance was not recorded in the model file.")
    if data:
        lines.append(f"- Data: {data.get('source', data.get('description', 'not recorded'))}")
    lines += [
        "",
        "The full provenance is in `napari_unet_provenance.json` and in "
        "`config.napari_unet.metadata` of `rdf.yaml`.",
        "",
        "## Validation",
        "",
    ]
    evaluation = meta.get("evaluation")
    if evaluation:
        lines.append(
            f"On {evaluation.get('images', '?')} held-out images: AP50 "
            f"{evaluation.get('ap50', '?')}, mean IoU {evaluation.get('mean_iou', '?')}."
        )
    else:
        lines.append(
            "No evaluation was recorded. Check the model on annotated images of your own "
            "before relying on it."
        )
    lines += [
        "",
        "The package's test tensors were computed by napari-unet itself; all three weight "
        "formats reproduce them.",
        "",
        "## Citation",
        "",
        "Ronneberger O., Fischer P., Brox T. (2015) U-Net: Convolutional Networks for "
        f"Biomedical Image Segmentation. MICCAI 2015. doi:{UNET_DOI}",
        "",
    ]
    return "\n".join(lines)
