"""A project folder: the manifest of entries, their annotations and regions, the rounds.

Layout (everything written atomically)::

    <folder>/manifest.json              format version, entries, image paths and checksums
    <folder>/entries/<name>/labels.tif  the annotation (earlier ones under versions/)
    <folder>/entries/<name>/region.json the region as Shapes data (or region.tif, a mask)
    <folder>/history.json, rounds/      the rounds (napari_unet.project.history)

Images are not copied (they can be large) unless :meth:`Project.store_image` is
asked to: the manifest keeps their absolute paths and SHA-256 checksums, and
:meth:`Project.check_images` says in one sentence when one moved or changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NapariUnetError
from ..fileio import atomic_write, write_tiff
from .annotations import RegionShapes, save_annotation, save_region

if TYPE_CHECKING:
    from .history import RoundHistory

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "EntryRecord",
    "Project",
    "data_folder",
    "default_project_folder",
    "file_sha256",
    "safe_name",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Per entry: the cells copied from a prediction, and whether the image is complete.
NOTES_FILE = "notes.json"
PROJECT_SUFFIX = ".napari-unet"
_CHUNK = 4 << 20  # bytes hashed at a time: a large image is never read whole


def data_folder() -> Path:
    """napari-unet's folder in the user's data directory.

    ``$NAPARI_UNET_DATA_DIR``, by default platformdirs' ``user_data_dir("napari-unet")``
    (``~/.local/share/napari-unet`` on Linux).
    """
    import platformdirs

    base = os.environ.get("NAPARI_UNET_DATA_DIR") or platformdirs.user_data_dir("napari-unet")
    return Path(base)


def safe_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``name`` made safe as a file name and different from every name in ``taken``.

    Parameters
    ----------
    name : str
        A layer name, e.g. "cells [1] / DAPI".
    taken : set of str
        Names already in use (compared case-insensitively: some file systems are).

    Returns
    -------
    str
        E.g. "cells-1-DAPI", or "cells-1-DAPI-2" when that is taken.
    """
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "image"
    base = base[:80]
    lower = {t.lower() for t in taken}
    candidate, k = base, 2
    while candidate.lower() in lower:
        candidate, k = f"{base}-{k}", k + 1
    return candidate


def _image_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem or name


def default_project_folder(
    image_path: str | os.PathLike | None, name: str, *, when: float | None = None
) -> Path:
    """Where an image's project lives unless the user chooses a folder.

    Parameters
    ----------
    image_path : path-like or None
        The image's file (or zarr folder); None for an image not read from disk.
    name : str
        The image layer's name.
    when : float, optional
        The session's start (seconds since the epoch; default now), for an image
        not read from disk.

    Returns
    -------
    pathlib.Path
        ``<image name>.napari-unet/`` next to the image, else a new folder
        ``<data folder>/projects/<name>-YYYYMMDD-HHMMSS/`` (see :func:`data_folder`):
        a layer name says nothing about where an image came from, so an image not
        from disk never lands in another session's project (older ones are
        reopened with *Open project*). A folder that exists gets a suffix.
    """
    if image_path is not None:
        p = Path(image_path).absolute()
        return p.parent / f"{_image_stem(p)}{PROJECT_SUFFIX}"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    projects = data_folder() / "projects"
    taken = {p.name for p in projects.iterdir()} if projects.is_dir() else set()
    return projects / safe_name(f"{safe_name(name)}-{stamp}", taken)


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file, read in chunks (run it off the GUI thread); None for a folder."""
    p = Path(path)
    if p.is_dir():  # a zarr store: many files, checked by presence only
        return None
    digest = hashlib.sha256()
    with open(p, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class EntryRecord:
    """One (image, annotation, optional region) entry of a project.

    Attributes
    ----------
    name : str
        Filename-safe and unique in the project; the entry's folder is ``entries/<name>``.
    layer_name : str
        The image layer's name when the entry was made.
    image : str or None
        Absolute path of the image file; None for an image not read from disk.
    sha256 : str or None
        Checksum of the image file (None until computed, or for a folder).
    shape : tuple of int
        The image's spatial shape.
    dtype : str
        The image's dtype.
    labels : str
        The annotation file, relative to the project folder.
    region : str or None
        The region file, relative to the project folder, or None.
    stored_image : str or None
        A copy of the image kept in the project (only when asked), relative.
    saved_at : float
        When the annotation was last written (seconds since the epoch).
    """

    name: str
    layer_name: str = ""
    image: str | None = None
    sha256: str | None = None
    shape: tuple[int, ...] = ()
    dtype: str = ""
    labels: str = ""
    region: str | None = None
    stored_image: str | None = None
    saved_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        doc = asdict(self)
        doc["shape"] = list(self.shape)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EntryRecord:
        """The record a :meth:`to_json` dictionary describes (unknown keys are ignored)."""
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        known["shape"] = tuple(int(n) for n in known.get("shape", ()))
        return cls(**known)


@dataclass
class Project:
    """A project folder; see the module docstring for its layout.

    Use :meth:`create` or :meth:`open`. Methods may be called from worker
    threads: changes to the manifest are serialised by a lock.

    Attributes
    ----------
    folder : pathlib.Path
        The project folder.
    entries : list of EntryRecord
        The entries, in the order they were added.
    """

    folder: Path
    entries: list[EntryRecord] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    # how the viewer showed the project: "order" [[entry, "image"|"labels"|"region"], ...]
    # bottom to top, and the "current" entry; reopening restores both
    view: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).absolute()
        self._lock = threading.RLock()
        self._reserved: set[str] = set()

    # -- creating and opening
    @classmethod
    def create(cls, folder: str | os.PathLike) -> Project:
        """Make a project in ``folder`` (created if needed); an existing project is opened."""
        folder = Path(folder)
        if (folder / MANIFEST).is_file():
            return cls.open(folder)
        if folder.exists() and not folder.is_dir():
            raise NapariUnetError(f"{folder} is a file, not a folder for a project.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NapariUnetError(
                f"The project folder {folder} could not be made ({exc.strerror})."
            ) from None
        if not os.access(folder, os.W_OK):
            raise NapariUnetError(f"The project folder {folder} is not writable.")
        project = cls(folder)
        project.save()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        """The project saved in ``folder``."""
        folder = Path(folder)
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise NapariUnetError(f"{folder} holds no napari-unet project (no {MANIFEST}).")
        try:
            doc = json.loads(manifest.read_text())
            version = int(doc["format"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise NapariUnetError(f"The project file {manifest} is damaged ({exc}).") from None
        if version > FORMAT_VERSION:
            raise NapariUnetError(
                f"The project {folder} was made by a newer napari-unet (format {version}); "
                "update napari-unet to open it."
            )
        try:
            entries = [EntryRecord.from_json(e) for e in doc.get("entries", [])]
        except (TypeError, ValueError) as exc:
            raise NapariUnetError(f"The project file {manifest} is damaged ({exc}).") from None
        view = doc.get("view") if isinstance(doc.get("view"), dict) else {}
        return cls(folder, entries, float(doc.get("created", time.time())), view)

    def save(self) -> Path:
        """Write ``manifest.json`` atomically (the folder is made if needed)."""
        with self._lock:
            doc = {
                "format": FORMAT_VERSION,
                "created": self.created,
                "entries": [e.to_json() for e in self.entries],
                "view": self.view,
            }
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / MANIFEST
            with atomic_write(path, "w") as fh:
                json.dump(doc, fh, indent=1)
            return path

    # -- entries
    @property
    def names(self) -> list[str]:
        """The entries' names."""
        return [e.name for e in self.entries]

    def entry(self, name: str) -> EntryRecord:
        """The entry called ``name``."""
        for record in self.entries:
            if record.name == name:
                return record
        raise NapariUnetError(f"The project has no entry called '{name}'.")

    def unique_name(self, layer_name: str) -> str:
        """A new entry name for an image layer called ``layer_name``, reserved for it.

        Names of entries, of names reserved before, and of folders left under
        ``entries/`` (of removed entries) are never reused, so no file is overwritten.
        """
        with self._lock:
            taken = set(self.names) | self._reserved
            entries_dir = self.folder / "entries"
            if entries_dir.is_dir():
                taken |= {p.name for p in entries_dir.iterdir()}
            name = safe_name(layer_name, taken)
            self._reserved.add(name)
            return name

    def add_entry(
        self,
        name: str,
        image: str | os.PathLike | None = None,
        *,
        layer_name: str = "",
        shape: tuple[int, ...] = (),
        dtype: str = "",
        sha256: str | None = None,
    ) -> EntryRecord:
        """Add an entry (``name`` as given by :meth:`unique_name`) and save the manifest.

        Parameters
        ----------
        name : str
            The entry's name; an existing entry of that name is returned, updated.
        image : path-like or None
            The image file; None for an image not read from disk.
        layer_name : str
            The image layer's name.
        shape, dtype
            The image's spatial shape and dtype.
        sha256 : str or None
            The image file's checksum, when known (else computed by :meth:`hash_images`).

        Returns
        -------
        EntryRecord
        """
        with self._lock:
            record = next((e for e in self.entries if e.name == name), None)
            if record is None:
                record = EntryRecord(name=safe_name(name), labels=f"entries/{name}/labels.tif")
                if record.name != name:
                    raise NapariUnetError(f"'{name}' cannot be a file name; use unique_name.")
                self.entries.append(record)
            self._reserved.discard(name)
            path = str(Path(image).absolute()) if image is not None else None
            if path != record.image and path is not None:
                record.image, record.sha256 = path, sha256
            record.layer_name = layer_name or record.layer_name or name
            record.shape = tuple(int(n) for n in shape) or record.shape
            record.dtype = str(dtype) or record.dtype
            self.save()
            return record

    def remove_entry(self, name: str) -> None:
        """Take an entry out of the manifest; its files stay on disk (nothing is lost)."""
        with self._lock:
            record = self.entry(name)
            self.entries.remove(record)
            self.save()

    def path(self, relative: str) -> Path:
        """A file of the project, from its path relative to the folder."""
        return self.folder / relative

    # -- writing an entry's annotation and region (worker threads)
    def save_labels(self, name: str, labels: np.ndarray, *, allow_empty: bool = False) -> Path:
        """Write the annotation of entry ``name`` (see :func:`.annotations.save_annotation`)."""
        record = self.entry(name)
        path = save_annotation(self.path(record.labels), labels, allow_empty=allow_empty)
        with self._lock:
            record.saved_at = time.time()
            self.save()
        return path

    def save_notes(self, name: str, notes: dict) -> None:
        """Write what an entry's annotation says about itself (``entries/<name>/notes.json``).

        The cells copied from a prediction (their signatures, so they never count as
        validation cells until edited) and whether the image is completely annotated.
        """
        self.entry(name)
        path = self.path(f"entries/{name}/{NOTES_FILE}")
        with atomic_write(path, "w") as fh:
            json.dump(notes, fh)

    def load_notes(self, name: str) -> dict:
        """:meth:`save_notes`'s dict for entry ``name`` ({} when missing or unreadable)."""
        path = self.path(f"entries/{name}/{NOTES_FILE}")
        try:
            notes = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return notes if isinstance(notes, dict) else {}

    def save_region(self, name: str, region: RegionShapes | np.ndarray | None) -> Path | None:
        """Write (or, with None, forget) the region of entry ``name``."""
        record = self.entry(name)
        if region is None:
            if record.region is None:
                return None
            with self._lock:
                record.region = None
                self.save()
            return None
        written = save_region(self.path(f"entries/{name}/region"), region)
        relative = written.relative_to(self.folder).as_posix()
        if relative != record.region:
            with self._lock:
                record.region = relative
                self.save()
        return written

    def store_image(self, name: str, image: np.ndarray) -> Path:
        """Keep a copy of the image of entry ``name`` in the project (only when asked)."""
        record = self.entry(name)
        relative = f"entries/{name}/image.tif"
        path = write_tiff(self.path(relative), np.asarray(image), compression="zlib")
        with self._lock:
            record.stored_image = relative
            self.save()
        return path

    # -- images: paths and checksums
    def hash_images(self) -> None:
        """Compute the checksums not known yet (reads the image files: off the GUI thread)."""
        todo = [e for e in self.entries if e.image and e.sha256 is None]
        changed = False
        for record in todo:
            p = Path(record.image)
            if p.is_file():
                record.sha256 = file_sha256(p)
                changed = True
        if changed:
            self.save()

    def image_problem(self, record: EntryRecord) -> str | None:
        """One sentence when the image of ``record`` moved or changed, else None."""
        if record.image is None:
            return None
        p = Path(record.image)
        if not p.exists():
            return f"The image of '{record.name}' is no longer at {p}; its annotation opens alone."
        if record.sha256 is not None and file_sha256(p) != record.sha256:
            return (
                f"The image of '{record.name}' at {p} has changed since it was annotated "
                "(its checksum differs); check that the annotation still fits it."
            )
        return None

    def check_images(self) -> list[str]:
        """One sentence per image that moved or changed (hashes the files: off the GUI thread)."""
        return [msg for e in self.entries if (msg := self.image_problem(e)) is not None]

    def relocate(self, name: str, image: str | os.PathLike) -> EntryRecord:
        """Point entry ``name`` at its image's new place (checksum recomputed)."""
        p = Path(image).absolute()
        if not p.exists():
            raise NapariUnetError(f"The file {p} does not exist.")
        digest = file_sha256(p)
        with self._lock:
            record = self.entry(name)
            record.image, record.sha256 = str(p), digest
            self.save()
            return record

    # -- rounds
    @property
    def history(self) -> RoundHistory:
        """The rounds of this project (``history.json`` and ``rounds/``)."""
        from .history import RoundHistory

        return RoundHistory(self.folder)
