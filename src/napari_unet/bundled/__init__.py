"""The bundled U-Net for fluorescent nuclei, trained only on synthetic images.

The weights (``nuclei.safetensors``) ship inside the package; the recipe that
reproduces them from a seed is ``scripts/train_bundled.py`` and the model card
is ``docs/model-card.md``. The model's metadata records the generator settings
and seeds of all its training data, and the object diameters it was trained
for (``metadata["object_diameter"]``, used by
:func:`napari_unet.segment.rescale_for_diameter`).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import TYPE_CHECKING

from ..errors import NapariUnetError

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["BUNDLED_MODELS", "bundled_model_path", "load_bundled_model"]

#: Names of the bundled models and their files in this package.
BUNDLED_MODELS = {"nuclei": "nuclei.safetensors"}


def bundled_model_path(name: str = "nuclei"):
    """The packaged file of a bundled model (a ``Traversable``; see :func:`as_file`)."""
    if name not in BUNDLED_MODELS:
        known = ", ".join(sorted(BUNDLED_MODELS))
        raise NapariUnetError(f"There is no bundled model called {name!r}; choose {known}.")
    return files(__name__).joinpath(BUNDLED_MODELS[name])


def load_bundled_model(name: str = "nuclei", *, device: str | None = None) -> UNet:
    """A fresh copy of a bundled model, ready to predict or to fine-tune.

    Every call reads the file again, so fine-tuning one copy never changes
    another.

    Parameters
    ----------
    name : str
        Which bundled model; ``"nuclei"`` (fluorescent nuclei, 8 to 40 pixels
        across) is the only one so far.
    device : str or None
        Where to put the weights (``"cpu"`` when None).

    Returns
    -------
    UNet
        The network in eval mode, with its metadata (normalisation, provenance).
    """
    # here, not at the top: the docks call bundled_model_path while they are built,
    # and only loading a model may pull in torch
    from ..modelfile import load_model

    resource = bundled_model_path(name)
    if not resource.is_file():
        raise NapariUnetError(
            f"The bundled model file {BUNDLED_MODELS[name]} is missing from this installation; "
            "reinstall napari-unet."
        )
    with as_file(resource) as path:
        return load_model(path, device=device)
