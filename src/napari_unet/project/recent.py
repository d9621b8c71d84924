"""The projects opened or saved lately, newest first (``<data folder>/recent.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..fileio import atomic_write
from .folder import MANIFEST, data_folder

_LIMIT = 8


def _recent_file() -> Path:
    return data_folder() / "recent.json"


def recent_projects() -> list[Path]:
    """Project folders used lately, newest first; those gone since are left out.

    Returns
    -------
    list of pathlib.Path
        At most 8 folders that still hold a project.
    """
    try:
        names = json.loads(_recent_file().read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [Path(n) for n in names if isinstance(n, str) and (Path(n) / MANIFEST).is_file()]


def remember_project(folder: str | os.PathLike) -> None:
    """Put ``folder`` first in the recent projects (a write that fails changes nothing).

    Parameters
    ----------
    folder : path-like
        A project folder.
    """
    folder = str(Path(folder).absolute())
    names = [folder, *(str(p) for p in recent_projects() if str(p) != folder)][:_LIMIT]
    try:
        _recent_file().parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(_recent_file(), "w") as fh:
            json.dump(names, fh, indent=1)
    except OSError:  # a read-only data folder: the list is a convenience, not data
        pass
