"""Which model a dock uses: the viewer's current one, the bundled one, or a file."""

from __future__ import annotations

import copy as copying
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NapariUnetError

if TYPE_CHECKING:
    from ..model import UNet
    from .session import ModelSession

CURRENT, BUNDLED, FILE, SCRATCH = "current", "bundled", "file", "scratch"


def bundled_available() -> bool:
    """Whether this installation ships a bundled model (its package and its weights)."""
    if importlib.util.find_spec("napari_unet.bundled") is None:
        return False
    from ..bundled import bundled_model_path

    return bundled_model_path().is_file()


def model_choices(*, scratch: bool = False) -> list[str]:
    """Choices for a model combo box, best first."""
    choices = [CURRENT]
    if bundled_available():
        choices.append(BUNDLED)
    choices.append(FILE)
    if scratch:
        choices.append(SCRATCH)
    return choices


def chosen_path(value: Any) -> Path | None:
    """The path a FileEdit holds, or None when none was chosen (empty or ".")."""
    text = str(value or "")
    if text in ("", ".") or Path(text) == Path("."):
        return None
    return Path(text)


def model_loader(
    choice: str, path: str | Path | None, session: ModelSession, *, copy: bool = True
) -> tuple[Callable[[], UNet], str]:
    """A loader for ``choice`` to call in a worker, and a description of the model.

    The quick checks (is there a current model, was a file chosen) happen here,
    on the GUI thread, so they fail at once; reading and copying the weights
    (tens of milliseconds) happen in the loader. ``copy=False`` hands out the
    current model itself (prediction only reads it).
    """
    if choice == CURRENT and session.model is not None:
        model = session.model
        if not copy:
            return (lambda: model), session.source

        def copy_current() -> UNet:  # never train the model in use in place
            clone = copying.deepcopy(model)
            clone.metadata = copying.deepcopy(model.metadata)
            return clone

        return copy_current, session.source
    if choice == CURRENT:
        if not bundled_available():
            raise NapariUnetError("There is no current model yet; train one or load a file.")
        choice = BUNDLED
    if choice == BUNDLED:

        def load_bundled() -> UNet:
            from ..bundled import load_bundled_model

            return load_bundled_model()

        return load_bundled, "bundled model"
    if choice == FILE:
        file = chosen_path(path)
        if file is None:
            raise NapariUnetError("Choose a model file (.safetensors) first.")

        def load_file() -> UNet:
            from ..modelfile import load_model

            return load_model(file)

        return load_file, file.name
    raise NapariUnetError(f"Unknown model choice {choice!r}.")
