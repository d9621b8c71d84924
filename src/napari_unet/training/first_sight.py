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
and only newly painted areas are predicted by the newer model. A project keeps
it between sessions (:meth:`ForegroundMemory.save`, :meth:`ForegroundMemory.load`),
so a reopened project judges its paint as before too.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import NapariUnetError
from ..fileio import atomic_write

__all__ = ["ForegroundMemory", "plane_key", "FILE_NAME"]

#: The file a project keeps the memory in.
FILE_NAME = "first_sight.npz"
_FORMAT = 1


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

    def save(self, path: str | os.PathLike) -> Path:
        """Write the kept planes to ``path``, atomically (a compressed ``.npz``, no pickle).

        Only the predicted areas carry information: the foreground is stored as
        float16 (the rule compares it with thresholds 0.1 apart) and 0.5
        elsewhere, so a project's file stays a small fraction of its images.
        """
        with self.lock:  # a consistent copy; a rule may be filling an area
            items = [(k, fg.copy(), done.copy()) for k, (fg, done) in self._planes.items()]
        arrays: dict[str, np.ndarray] = {"format": np.array(_FORMAT)}
        for i, ((z, digest), fg, done) in enumerate(items):
            arrays[f"z_{i}"] = np.array(z, np.int64)
            arrays[f"key_{i}"] = np.frombuffer(digest, np.uint8)
            arrays[f"fg_{i}"] = np.where(done, fg, 0.5).astype(np.float16)
            arrays[f"done_{i}"] = done
        path = Path(path)
        with atomic_write(path) as f:
            np.savez_compressed(f, **arrays)
        return path

    def load(self, path: str | os.PathLike) -> int:
        """Add what ``path`` kept that this memory lacks; how many planes gained areas.

        Areas judged here already stay as they are (judged in this session, as
        the first model here saw them); the file's areas fill the rest. No file:
        nothing added.

        Raises
        ------
        NapariUnetError
            When the file cannot be read as one this class wrote (nothing is added).
        """
        path = Path(path)
        if not path.is_file():
            return 0
        try:
            with np.load(path, allow_pickle=False) as f:
                if int(f["format"]) != _FORMAT:
                    raise ValueError(f"format {int(f['format'])}")
                planes = []
                for i in range(sum(name.startswith("z_") for name in f.files)):
                    key = (int(f[f"z_{i}"]), f[f"key_{i}"].tobytes())
                    fg, done = f[f"fg_{i}"].astype(np.float32), f[f"done_{i}"].astype(bool)
                    if fg.shape != done.shape or fg.ndim != 2:
                        raise ValueError("arrays of different shapes")
                    planes.append((key, fg, done))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise NapariUnetError(
                f"The first judgement of painted cells in {path.name} could not be read "
                f"({exc}); painted cells are judged again by the model in use."
            ) from None
        added = 0
        with self.lock:
            for key, fg, done in planes:
                here = self._planes.get(key)
                if here is None or here[0].shape != fg.shape:
                    self._planes[key] = (fg, done)
                    self._planes.move_to_end(key, last=False)  # oldest: forgotten first
                    added += int(done.any())
                    continue
                new = done & ~here[1]
                if new.any():
                    here[0][new] = fg[new]
                    here[1][new] = True
                    added += 1
            while len(self._planes) > 1 and self.nbytes > self.max_bytes:
                self._planes.popitem(last=False)
        return added
