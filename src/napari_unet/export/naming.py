"""The characters bioimage.io allows in a model's name (light: the docks use it too)."""

from __future__ import annotations

import string

from ..errors import NapariUnetError

# bioimageio.spec's alphabet for a model's name
_ALLOWED = frozenset(string.ascii_letters + string.digits + "_+- ()")


def valid_model_name(name: str) -> str:
    """``name`` with every character bioimage.io refuses (commas, dots, colons...) as a space.

    Parameters
    ----------
    name : str
        The name the user or the model file gives.

    Returns
    -------
    str
        At most 120 characters, runs of spaces collapsed.

    Raises
    ------
    NapariUnetError
        When fewer than 5 characters are left.
    """
    cleaned = "".join(ch if ch in _ALLOWED else " " for ch in name)
    cleaned = " ".join(cleaned.split())[:120].strip()
    if len(cleaned) < 5:
        raise NapariUnetError(
            f"The model name {name!r} is too short for bioimage.io; use at least 5 letters."
        )
    return cleaned
