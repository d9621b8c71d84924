"""The start model's foreground, kept from the first model that judged each area.

The partial rule (:mod:`napari_unet.training.partial`) judges painted cells by
the foreground probability of the model training starts from: stray dabs are
left out, over-painted rims are not taught as cell, partly painted cells keep
their surroundings unknown. Judged again by the next round's start model, the
same paint was judged differently: a model fine-tuned on boxes is no longer
sure of their rims, a model trained a few steps is no longer sure of the
background under a dab, so the rule stopped firing and the second round
learned what the first had been kept from (docs/benchmarks.md, "Over-painted
cells over several rounds"). A :class:`ForegroundMemory` shared by the rules of
successive rounds keeps, per image plane, the foreground of the first model
that predicted each area: the same paint is judged the same in every round,
and only newly painted areas are predicted by the newer model.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["ForegroundMemory", "plane_key"]


def plane_key(image: np.ndarray, z: int) -> tuple[int, bytes]:
    """What names a plane in the memory: its index and a fingerprint of its pixels.

    The fingerprint hashes the shape and a strided sample of the normalised
    plane (about 1 pixel in 35: well under a millisecond for a 2048x2048 plane,
    so it costs a stroke nothing), so another image, or a plane of another
    stack, is never judged by this one's foreground.
    """
    a = np.asarray(image)
    sample = np.ascontiguousarray(a[..., ::7, ::5])
    digest = hashlib.blake2b(repr((a.shape, str(a.dtype))).encode(), digest_size=16)
    digest.update(sample.tobytes())
    return int(z), digest.digest()


class ForegroundMemory:
    """Per image plane, the foreground first predicted in each area, and where it was.

    Shared by the :class:`~napari_unet.training.partial.PartialRule` of every
    round (and of the Train dock's line and of live mode) on the same images,
    from any thread. The planes used least recently are forgotten beyond
    ``max_bytes`` (the newest plane is always kept): a later round re-judges them.

    Parameters
    ----------
    max_bytes : int
        How much memory the kept planes may take (5 bytes a pixel: a float32 and
        a bool array). The default holds about 13 planes of 2048x2048, 200 of 512x512.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._planes: OrderedDict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.lock = threading.RLock()  # held while a rule fills an area, so it is filled once

    def plane(self, key: tuple[int, bytes], shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        """The plane's (foreground, predicted) arrays, new ones (0.5, False) when unseen.

        The foreground is 0.5 (neither sure nor unsure) where nothing predicted yet;
        the caller fills an area and marks it predicted, holding :attr:`lock`.
        """
        with self.lock:
            got = self._planes.get(key)
            if got is None or got[0].shape != tuple(shape):
                got = (np.full(shape, 0.5, np.float32), np.zeros(shape, bool))
                self._planes[key] = got
            self._planes.move_to_end(key)
            while len(self._planes) > 1 and self.nbytes > self.max_bytes:
                self._planes.popitem(last=False)
            return got

    @property
    def nbytes(self) -> int:
        """The memory the kept planes take."""
        return sum(fg.nbytes + done.nbytes for fg, done in self._planes.values())

    def __len__(self) -> int:
        return len(self._planes)
