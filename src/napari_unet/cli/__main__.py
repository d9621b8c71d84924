"""``python -m napari_unet.cli``: the ``napari-unet`` command."""

import sys

from .entry import main

sys.exit(main())
