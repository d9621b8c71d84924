"""The names and numbers every part of a bioimage.io package agrees on.

The tensor ids name the ONNX graph's inputs and outputs as well as the
description's tensors, and the ONNX opset is both what the converter writes and
what ``rdf.yaml`` declares: each lives here once, below the modules that use it.
"""

from __future__ import annotations

__all__ = [
    "INPUT_ID",
    "ONNX_OPSET",
    "OUTPUT_ID",
    "PACKAGE_CONFIG_KEY",
    "UNET_DOI",
    "WEIGHTS_ATTACHMENT",
]

#: Key under ``config`` in ``rdf.yaml`` that marks a package napari-unet exported.
PACKAGE_CONFIG_KEY = "napari_unet"
#: The attachment napari-unet imports a package from (never the pickle state dict).
WEIGHTS_ATTACHMENT = "napari_unet_model.safetensors"
#: The input and output tensors' ids, in ``rdf.yaml`` and in the ONNX graph.
INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
#: The ONNX opset the converter writes and the description declares.
ONNX_OPSET = 17
UNET_DOI = "10.1007/978-3-319-24574-4_28"
