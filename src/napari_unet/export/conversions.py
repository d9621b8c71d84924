"""The weight formats: the shipped architecture with its state dict, TorchScript and ONNX.

The TorchScript and ONNX files are converted from the one-file architecture that
the package ships (:mod:`napari_unet.export.unet_architecture`) with the model's
state dict, so all three formats run the same network.
"""

from __future__ import annotations

import warnings
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .identifiers import INPUT_ID, ONNX_OPSET, OUTPUT_ID

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["ONNX_OPSET", "shipped_architecture", "write_onnx", "write_torchscript"]


def shipped_architecture(model: UNet, state: dict, folder: Path) -> Any:
    """Copy the architecture source into ``folder``; its network with ``state``, in eval mode."""
    from .unet_architecture import UNet as ShippedUNet  # imports torch

    # the architecture's source lies beside this module
    source = files(__package__).joinpath("unet_architecture.py")
    (folder / "unet_architecture.py").write_text(source.read_text(encoding="utf-8"))
    arch = ShippedUNet(**model.config)
    arch.load_state_dict(state)
    return arch.eval()


def write_torchscript(arch: Any, path: Path) -> None:
    """``arch`` scripted (not traced: the crops depend on the input size)."""
    import torch

    with warnings.catch_warnings():
        # deprecated in favour of torch.export, but what deepImageJ and QuPath read
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(arch).save(str(path))


def write_onnx(arch: Any, raw: np.ndarray, path: Path) -> None:
    """``arch`` as ONNX, with batch, y and x dynamic (any valid size runs)."""
    import torch

    x = torch.from_numpy(raw[None])
    dims = {0: "batch", 2: "y", 3: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript-based exporter: it keeps the size-dependent crops symbolic
        # without needing onnxscript
        torch.onnx.export(
            arch,
            (x,),
            str(path),
            input_names=[INPUT_ID],
            output_names=[OUTPUT_ID],
            dynamic_axes={INPUT_ID: dims, OUTPUT_ID: dims},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
