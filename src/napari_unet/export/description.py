"""The package's description (``rdf.yaml``), built with bioimageio.spec's model classes.

How napari-unet's prediction maps onto the spec (model format 0.5):

- Pre-processing: ``scale_range`` over ``(y, x)`` per sample and channel with the
  model's percentiles, which is :class:`napari_unet.normalization.Normalization`
  (statistics over the whole input, never per tile).
- Post-processing: ``softmax`` over the channel axis, as in ``predict_tiled``.
- Sizes: an input is valid for ``min + k * 2**(depth-1)`` pixels; the output is
  smaller by the network's context on each side. The spec's ``halo`` means
  *extra* pixels a consumer should crop from a same-size output, so a network
  that already crops its context declares it as the output size's ``offset``
  (``-2 * context``), as the spec prescribes; the context itself is recorded in
  ``config.napari_unet.context``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NapariUnetError
from .identifiers import (
    INPUT_ID,
    ONNX_OPSET,
    OUTPUT_ID,
    PACKAGE_CONFIG_KEY,
    UNET_DOI,
    WEIGHTS_ATTACHMENT,
)

if TYPE_CHECKING:
    from ..model import UNet

__all__ = [
    "INPUT_ID",
    "OUTPUT_ID",
    "PACKAGE_CONFIG_KEY",
    "UNET_DOI",
    "WEIGHTS_ATTACHMENT",
    "describe",
    "first_error",
]

_DEFAULT_NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}


def describe(
    model: UNet,
    work: Path,
    *,
    name: str,
    authors: list[str],
    cover: Path,
    meta: dict,
    context: int,
    min_size: int,
    step: int,
) -> Any:
    """The package's description (``rdf.yaml``) as ``bioimageio.spec``'s ``ModelDescr``.

    Every file it names lies in ``work`` and is checked (and hashed) as the
    description is built.

    Raises
    ------
    NapariUnetError
        With the first problem bioimageio.spec finds, in one line.
    """
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5 as v

    norm = meta.get("normalization") or _DEFAULT_NORMALIZATION
    shape = {"context": context, "min_size": min_size, "step": step}
    inputs = _inputs(v, model, work, norm, min_size=min_size, step=step)
    outputs = _outputs(v, model, work, context)
    weights = _weights(v, model, work)
    config = _config(model, meta, norm, shape)
    with ValidationContext(root=work, perform_io_checks=True):
        try:
            return v.ModelDescr(
                name=name,
                description=str(meta.get("description") or "A U-Net trained with napari-unet.")[
                    :1024
                ],
                authors=[v.Author(name=a) for a in authors],
                cite=_cite(v),
                license=v.LicenseId(str(meta.get("licence") or meta.get("license") or "MIT")),
                covers=[v.FileDescr(source=cover)],
                documentation=v.FileDescr(source=work / "README.md"),
                attachments=[
                    v.FileDescr(source=work / WEIGHTS_ATTACHMENT),
                    v.FileDescr(source=work / "napari_unet_provenance.json"),
                ],
                tags=["unet", "segmentation", "napari-unet", "2d", "pytorch"],
                inputs=inputs,
                outputs=outputs,
                weights=weights,
                config=config,
            )
        except Exception as exc:  # pydantic's ValidationError lists every field
            raise NapariUnetError(
                f"The bioimage.io description could not be built: {first_error(exc)}"
            ) from None


def _inputs(v: Any, model: UNet, work: Path, norm: dict, *, min_size: int, step: int) -> list:
    """The input tensor: any valid size, scaled by the model's percentiles."""
    preprocessing = []
    if norm.get("method", "percentile") == "percentile":
        preprocessing.append(
            v.ScaleRangeDescr(
                kwargs=v.ScaleRangeKwargs(
                    axes=[v.AxisId("y"), v.AxisId("x")],
                    min_percentile=float(norm.get("low", 1.0)),
                    max_percentile=float(norm.get("high", 99.8)),
                    # napari-unet divides by the range itself; the smallest eps the spec allows
                    # keeps the two within float rounding
                    eps=1e-12,
                )
            )
        )
    in_channels = [f"channel{c}" for c in range(model.in_channels)]
    spatial_in = [
        v.SpaceInputAxis(id=v.AxisId(a), size=v.ParameterizedSize(min=min_size, step=step))
        for a in ("y", "x")
    ]
    return [
        v.InputTensorDescr(
            id=v.TensorId(INPUT_ID),
            description="image, raw intensities (scaled by the pre-processing)",
            axes=[
                v.BatchAxis(),
                v.ChannelAxis(channel_names=[v.Identifier(c) for c in in_channels]),
                *spatial_in,
            ],
            test_tensor=v.FileDescr(source=work / "test_input.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing,
        )
    ]


def _outputs(v: Any, model: UNet, work: Path, context: int) -> list:
    """The output tensor: class probabilities, smaller than the input by the context."""
    if model.n_classes == 2:
        classes = ["background", "foreground"]
    else:
        classes = [f"class{k}" for k in range(model.n_classes)]
    spatial_out = [
        v.SpaceOutputAxis(
            id=v.AxisId(a),
            size=v.SizeReference(
                tensor_id=v.TensorId(INPUT_ID), axis_id=v.AxisId(a), offset=-2 * context
            ),
        )
        for a in ("y", "x")
    ]
    return [
        v.OutputTensorDescr(
            id=v.TensorId(OUTPUT_ID),
            description=(
                f"class probabilities of the input's centre ({context} pixels of context "
                "are cropped on every side)"
            ),
            axes=[
                v.BatchAxis(),
                v.ChannelAxis(channel_names=[v.Identifier(c) for c in classes]),
                *spatial_out,
            ],
            test_tensor=v.FileDescr(source=work / "test_output.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            postprocessing=[v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))],
        )
    ]


def _weights(v: Any, model: UNet, work: Path) -> Any:
    """The three weight formats: the state dict with its architecture, TorchScript, ONNX."""
    import torch

    from ..modelfile import _jsonable

    torch_version = v.Version(torch.__version__.split("+")[0])
    return v.WeightsDescr(
        pytorch_state_dict=v.PytorchStateDictWeightsDescr(
            source=work / "weights.pt",
            architecture=v.ArchitectureFromFileDescr(
                source=work / "unet_architecture.py",
                callable=v.Identifier("UNet"),
                kwargs=_jsonable(model.config),
            ),
            pytorch_version=torch_version,
        ),
        torchscript=v.TorchscriptWeightsDescr(
            source=work / "weights.torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
        onnx=v.OnnxWeightsDescr(
            source=work / "weights.onnx",
            opset_version=ONNX_OPSET,
            parent="pytorch_state_dict",
        ),
    )


def _config(model: UNet, meta: dict, norm: dict, shape: dict) -> dict:
    """``config``: bioimage.io's summary of the network and its training, and napari-unet's own.

    ``shape`` holds the network's ``context``, ``min_size`` and ``step``.
    """
    from .._version import __version__
    from ..modelfile import _jsonable

    training = meta.get("training") or {}
    tconf = training.get("config") or {}
    summary = {
        "training_preprocessing": (
            f"percentile normalisation ({norm.get('low')}, {norm.get('high')}) "
            "per image; elastic deformation and intensity augmentation"
        ),
        "optimizer": tconf.get("optimizer"),
        "initial_learning_rate": tconf.get("learning_rate"),
        "learning_rate_schedule": tconf.get("schedule"),
        "training_batch_size": tconf.get("batch_size"),
        "loss_function": "pixel-weighted cross-entropy (Ronneberger et al. 2015)",
    }
    return {
        "bioimageio": {
            "architecture_type": "U-Net (valid convolutions)",
            "architecture_description": (
                f"Ronneberger et al. 2015 U-Net, depth {model.depth}, "
                f"{model.base_channels} base channels, valid convolutions"
            ),
            "task": "semantic segmentation (class probabilities)",
            "model_parameter_count": int(sum(p.numel() for p in model.parameters())),
            "reproducibility_tolerance": [
                {
                    "relative_tolerance": 1e-4,
                    "absolute_tolerance": 1e-4,
                    "mismatched_elements_per_million": 0,
                }
            ],
            "training": {k: val for k, val in summary.items() if val is not None},
        },
        PACKAGE_CONFIG_KEY: _jsonable(
            {
                "napari_unet_version": __version__,
                "weights": WEIGHTS_ATTACHMENT,
                "config": model.config,
                "metadata": meta,
                **shape,
            }
        ),
    }


def _cite(v: Any) -> list:
    """The U-Net paper and napari-unet."""
    return [
        v.CiteEntry(
            text="Ronneberger O., Fischer P., Brox T. (2015) U-Net: Convolutional Networks "
            "for Biomedical Image Segmentation. MICCAI 2015.",
            doi=v.Doi(UNET_DOI),
        ),
        v.CiteEntry(
            text="napari-unet: the original U-Net for biologists in napari.",
            url="https://napari-hub.org/plugins/napari-unet",
        ),
    ]


def first_error(exc: Exception) -> str:
    """The first problem pydantic reports, in one line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(exc).splitlines()[0]
