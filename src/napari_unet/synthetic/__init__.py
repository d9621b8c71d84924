"""Synthetic microscopy images with exact instance labels.

The generator draws crowded, touching cells of varied size, shape, texture and
brightness, then images them the way a microscope does: optical blur, uneven
illumination, background, photon shot noise, camera read noise, gain, offset,
integer output and saturation. Labels are the exact masks of the drawn objects,
so training, benchmarks and tests know the truth. Everything comes from one
seeded random generator: the same settings and seed give the same arrays.

Two imaging styles exist:

``"fluorescence"`` (the main one)
    DAPI/Hoechst-like nuclei: chromatin texture, dark nucleoli, bright
    chromocentres, a few small, very bright condensed dividing cells, some
    out-of-focus nuclei and a faint haze of out-of-focus light.
``"brightfield"``
    Phase-contrast/brightfield-like cells: a textured grey background with the
    cells seen through their optical thickness, with dark and bright halo edges.

The bundled model is trained only on this module's output; a training recipe
records :meth:`SyntheticConfig.to_dict` and the seeds, which is the whole
provenance of its data. Bump :data:`GENERATOR_VERSION` whenever a change alters
the arrays a given configuration and seed produce.

The package, one idea per module:

- :mod:`.settings`: :class:`SyntheticConfig` and :func:`make_cells`;
- :mod:`.scene_settings`: the settings' fields, checks and JSON form, which the
  drawing modules read;
- :mod:`.scenes`: one image, from placing the cells to the camera;
- :mod:`.shapes`: cell outlines, placement and exact labels;
- :mod:`.optics`: texture, blur, halos and illumination of each style;
- :mod:`.camera`: noise, gain, offset, integer output and saturation;
- :mod:`.realism`: failure modes seen on real nuclei (condensed mitotic nuclei, specks,
  large camera offsets), each an option that is off by default;
- :mod:`.cases`: the named cases a model is checked on (:data:`REALISM_CASES`), shared
  by the tests and the benchmarks;
- :mod:`.volumes`: 3D stacks of nuclei (:func:`make_nuclei_3d`), anisotropic PSF and Z step.
"""

from .cases import DEFOCUS_3D, REALISM_CASES, RealismCase
from .settings import GENERATOR_VERSION, STYLES, SyntheticConfig, make_cells
from .volumes import make_nuclei_3d

__all__ = [
    "GENERATOR_VERSION", "STYLES", "SyntheticConfig", "make_cells", "make_nuclei_3d",
    "REALISM_CASES", "RealismCase", "DEFOCUS_3D",
]  # fmt: skip
