"""napari-unet's version, read from the installed distribution.

Its own module, below everything, so that a module recording the version (in a
checkpoint, in an exported package) does not import the package ``napari_unet``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("napari-unet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
