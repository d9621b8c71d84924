"""Sharing models with the rest of the field: bioimage.io model packages.

Names are imported lazily, so that importing this package loads neither torch
nor ``bioimageio.spec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = {
    "ExportProgress": "bioimageio",
    "export_bioimageio": "bioimageio",
    "iter_export_bioimageio": "bioimageio",
}

__all__ = ["ExportProgress", "export_bioimageio", "iter_export_bioimageio"]

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .bioimageio import ExportProgress, export_bioimageio, iter_export_bioimageio
