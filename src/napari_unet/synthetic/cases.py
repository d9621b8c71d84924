"""Named synthetic cases where a model is checked against a known failure, with their seeds.

One table for the tests of the bundled model (``tests/test_bundled.py``,
``tests/test_volume.py``, each with its own threshold) and the benchmarks that score
the same cases (``benchmarks/bench_rule_scale.py``, ``benchmarks/bench_defocus3d.py``),
so both always measure the same images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .settings import SyntheticConfig

__all__ = ["DEFOCUS_3D", "REALISM_CASES", "RealismCase"]

# The realism cases' seeds are [REALISM_STREAM, case number, image index].
REALISM_STREAM = 16


@dataclass(frozen=True)
class RealismCase:
    """One case: its settings, its number in the seed, and how many images it has."""

    config: SyntheticConfig
    number: int
    n_images: int

    @property
    def seeds(self) -> range:
        """The image indices (the last part of each seed)."""
        return range(self.n_images)

    def seed(self, index: int) -> list[int]:
        """The full seed of image ``index``."""
        return [REALISM_STREAM, self.number, int(index)]

    def images(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(image, labels) of every image of the case, in order."""
        for s in self.seeds:
            yield self.config.generate(seed=self.seed(s))


_BASE = dict(shape=(256, 256), diameter=(15, 30), debris=0.0, dividing=0.0)

#: Where the generator-1 bundled model fell short (issue 16): isolated nuclei with
#: realistic edges, dim nuclei next to bright ones (8-bit), lobed nuclei, debris.
REALISM_CASES: dict[str, RealismCase] = {
    "edges": RealismCase(SyntheticConfig(**_BASE, touching=0.0, out_of_focus=0.0, dim=0.0), 1, 6),
    "dim": RealismCase(
        SyntheticConfig(
            **_BASE, touching=0.8, dim=0.5, out_of_focus=0.0, dtype="uint8", photons=(50, 200)
        ),
        2,
        8,
    ),
    "lobed": RealismCase(
        SyntheticConfig(**dict(_BASE, diameter=(18, 32)), touching=0.2, lobed=1.0), 3, 6
    ),
    "debris": RealismCase(
        SyntheticConfig(shape=(256, 256), diameter=(15, 30), touching=0.3, debris=6.0), 4, 6
    ),
}

#: 3D nuclei of about 11 px under strong widefield out-of-focus light (issue 25): isotropic
#: PSF, 60-120 photons, 85% of each nucleus's light spread into the other planes, so the
#: light of the nuclei above and below shows in every plane. Keywords of
#: :func:`napari_unet.synthetic.make_nuclei_3d`; seeds ``[25, 3, k]``.
DEFOCUS_3D: dict = dict(
    diameter=(9.0, 13.0), blur=(1.0, 1.4), axial_blur=1.0, touching=0.4,
    photons=(60.0, 120.0), defocus=0.85,
)  # fmt: skip
