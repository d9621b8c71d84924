"""The ``napari-unet`` command, one module per subcommand.

``entry`` is the entry point (``main``: failures become one line and an exit
status), ``parser`` every option and help text; ``predict`` (with
``predict_zarr`` and ``predict_batch``), ``train``, ``weightmap`` and ``export``
run the subcommands; ``progress`` draws the bars and ``options`` reads what
several commands share (the model, the precision).
"""

from .entry import main
from .parser import build_parser

__all__ = ["main", "build_parser"]
