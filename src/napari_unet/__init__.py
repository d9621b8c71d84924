"""napari-unet: the original U-Net for biologists, headless core plus a napari plugin.

Public names are imported lazily on first use, so ``import napari_unet`` (which
napari does at start-up to read the plugin manifest) loads neither torch nor Qt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__ as __version__  # the package's own attribute

# public name -> module that defines it
_LAZY = {
    "UNet": "model",
    "predict_tiled": "tiling",
    "iter_predict_tiled": "tiling",
    "labels_from_probabilities": "postprocess",
    "Normalization": "normalization",
    "save_model": "modelfile",
    "load_model": "modelfile",
    "NapariUnetError": "errors",
    "select_device": "device",
    "unet_weight_map": "weightmap",
    "elastic_deform": "augment",
    "AugmentConfig": "augment",
    "TrainConfig": "training",
    "Trainer": "training",
    "train_model": "training",
    "instance_scores": "metrics",
    "match_instances": "metrics",
    "predict_to_zarr": "bigimage",
    "open_prediction": "bigimage",
    "load_bundled_model": "bundled",
    "export_bioimageio": "export",
    "image_files": "batch",
    "segment_files": "batch",
    "segment_folder": "batch",
    "estimate_diameter": "sizing",
    "segment": "segment",
    "Segmentation": "segment",
}

__all__ = [
    "AugmentConfig",
    "NapariUnetError",
    "Normalization",
    "Segmentation",
    "TrainConfig",
    "Trainer",
    "UNet",
    "elastic_deform",
    "estimate_diameter",
    "export_bioimageio",
    "image_files",
    "instance_scores",
    "iter_predict_tiled",
    "labels_from_probabilities",
    "load_bundled_model",
    "load_model",
    "match_instances",
    "open_prediction",
    "predict_tiled",
    "predict_to_zarr",
    "save_model",
    "segment",
    "segment_files",
    "segment_folder",
    "select_device",
    "train_model",
    "unet_weight_map",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .augment import AugmentConfig, elastic_deform
    from .batch import image_files, segment_files, segment_folder
    from .bigimage import open_prediction, predict_to_zarr
    from .bundled import load_bundled_model
    from .device import select_device
    from .errors import NapariUnetError
    from .export import export_bioimageio
    from .metrics import instance_scores, match_instances
    from .model import UNet
    from .modelfile import load_model, save_model
    from .normalization import Normalization
    from .postprocess import labels_from_probabilities
    from .segment import Segmentation, segment
    from .sizing import estimate_diameter
    from .tiling import iter_predict_tiled, predict_tiled
    from .training import TrainConfig, Trainer, train_model
    from .weightmap import unet_weight_map
