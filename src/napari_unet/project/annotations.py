"""An entry's annotation and region on disk: written atomically, earlier versions kept.

The annotation is a zlib-compressed TIFF whose description records how many
pixels are labelled, so the rule "an autosave never replaces a non-empty
annotation with an empty one" costs no decoding. Before a file is replaced,
the old one is kept under ``versions/`` (a hard link, so no copy) when the
newest kept version is old enough or the new annotation lost more than half
its pixels; the newest :data:`KEEP_VERSIONS` are kept.

A region is kept as napari Shapes data (shape types, vertex lists, ndim) in
JSON, so it comes back as an editable Shapes layer; a region given as a mask
is a TIFF.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import NapariUnetError
from ..fileio import atomic_write

__all__ = [
    "KEEP_VERSIONS",
    "EmptyAnnotationError",
    "RegionShapes",
    "annotation_versions",
    "labelled_pixels",
    "load_annotation",
    "load_region",
    "mask_to_shapes",
    "save_annotation",
    "save_region",
]

# How many earlier versions of an annotation are kept.
KEEP_VERSIONS = 5
# A replaced annotation is kept as a version at most this often (seconds), unless
# the new one lost more than half its labelled pixels: five versions then span
# minutes of work, not the last five autosaves.
VERSION_EVERY_S = 60.0
_TAG = "napari-unet annotation"


class EmptyAnnotationError(NapariUnetError):
    """An empty annotation would replace a non-empty one; the file was left as it was."""


@dataclass
class RegionShapes:
    """A region as napari Shapes data: one vertex array per shape and its type.

    Attributes
    ----------
    ndim : int
        Dimensions of the vertices (2 for an image, 3 for a stack).
    shape_types : list of str
        napari shape types ("rectangle", "polygon", "ellipse", ...).
    data : list of numpy.ndarray
        The vertices of each shape, (n_vertices, ndim), in data coordinates.
    """

    ndim: int
    shape_types: list[str] = field(default_factory=list)
    data: list[np.ndarray] = field(default_factory=list)

    def to_json(self) -> dict:
        """A JSON-ready dictionary."""
        return {
            "kind": "shapes",
            "ndim": int(self.ndim),
            "shapes": [
                {"type": str(t), "vertices": np.asarray(v, dtype=float).tolist()}
                for t, v in zip(self.shape_types, self.data)
            ],
        }

    @classmethod
    def from_json(cls, doc: dict) -> RegionShapes:
        """The region a :meth:`to_json` dictionary describes."""
        ndim = int(doc["ndim"])
        types, data = [], []
        for shape in doc["shapes"]:
            vertices = np.asarray(shape["vertices"], dtype=float).reshape(-1, ndim)
            types.append(str(shape["type"]))
            data.append(vertices)
        return cls(ndim=ndim, shape_types=types, data=data)


def labelled_pixels(path: str | os.PathLike) -> int | None:
    """Labelled (non-zero) pixels of a saved annotation, or None when there is no file.

    Read from the file's description; a TIFF written by another program is decoded.
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with tifffile.TiffFile(p) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            if meta.get("kind") == _TAG and "labelled_pixels" in meta:
                return int(meta["labelled_pixels"])
            return int(np.count_nonzero(tif.asarray()))
    except Exception as exc:  # a damaged file must not stop a save that replaces it
        raise NapariUnetError(f"The annotation file {p} could not be read ({exc}).") from None


def load_annotation(path: str | os.PathLike) -> np.ndarray:
    """The annotation saved at ``path``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_annotation` (or any label TIFF).

    Returns
    -------
    numpy.ndarray
    """
    p = Path(path)
    if not p.is_file():
        raise NapariUnetError(f"The annotation file {p} is missing.")
    try:
        return np.asarray(tifffile.imread(p))
    except Exception as exc:
        raise NapariUnetError(f"The annotation file {p} could not be read ({exc}).") from None


def annotation_versions(path: str | os.PathLike) -> list[Path]:
    """Earlier versions kept of the annotation at ``path``, newest first."""
    p = Path(path)
    folder = p.parent / "versions"
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{p.stem}-*{p.suffix}"), reverse=True)


def save_annotation(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    allow_empty: bool = False,
    keep: int = KEEP_VERSIONS,
    version_every: float = VERSION_EVERY_S,
) -> Path:
    """Write ``labels`` to ``path`` atomically, keeping earlier versions.

    Parameters
    ----------
    path : path-like
        The annotation file (``.tif``).
    labels : numpy.ndarray
        Integer labels; 0 is background.
    allow_empty : bool
        Replace a non-empty annotation with an empty one (the user asked).
    keep : int
        Earlier versions to keep under ``versions/`` beside the file.
    version_every : float
        Seconds between kept versions (a big loss of pixels is always kept).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    EmptyAnnotationError
        ``labels`` is empty, the saved annotation is not, and ``allow_empty`` is False.
    """
    p = Path(path)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise NapariUnetError(f"An annotation must hold integer labels, not {labels.dtype}.")
    count = int(np.count_nonzero(labels))
    try:
        before = labelled_pixels(p)
    except NapariUnetError:  # a damaged file: kept as a version, then replaced
        before = 0
    if count == 0 and before and not allow_empty:
        raise EmptyAnnotationError(
            f"The annotation '{p.parent.name}' is now empty; the project keeps the saved one "
            f"with {before} labelled pixels until you ask to save it empty."
        )
    if p.is_file():
        _keep_version(p, keep, version_every, lost_half=count * 2 < (before or 1))
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(p) as fh:
        tifffile.imwrite(
            fh,
            labels,
            compression="zlib",
            compressionargs={"level": 1},  # several times faster than the default, ~same size
            metadata={"kind": _TAG, "labelled_pixels": count},
        )
    return p


def _keep_version(path: Path, keep: int, every: float, *, lost_half: bool) -> None:
    """Keep the file about to be replaced under ``versions/``, then prune to ``keep``."""
    if keep <= 0:
        return
    versions = annotation_versions(path)
    if versions and not lost_half and time.time() - versions[0].stat().st_mtime < every:
        return
    folder = path.parent / "versions"
    folder.mkdir(exist_ok=True)
    # one clock reading for both parts: read twice across a second's turn, the name
    # sorted before the versions kept a moment earlier (seen once in a test run)
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(seconds)) + f"-{nanos:09d}"
    target = folder / f"{path.stem}-{stamp}{path.suffix}"
    try:
        os.link(path, target)  # the file is never written again (atomic replace): share it
    except OSError:  # file systems without hard links
        shutil.copy2(path, target)
    os.utime(target)  # its age counts from when it was kept
    for old in annotation_versions(path)[keep:]:
        old.unlink(missing_ok=True)


def save_region(path: str | os.PathLike, region: RegionShapes | np.ndarray) -> Path:
    """Write a region atomically: shapes as ``<path>.json``, a mask as ``<path>.tif``.

    Parameters
    ----------
    path : path-like
        The file name without its suffix (e.g. ``entries/cells/region``).
    region : RegionShapes or numpy.ndarray
        Shapes (restored as an editable Shapes layer) or a mask (non-zero inside).

    Returns
    -------
    pathlib.Path
        The file written; a region file of the other kind is removed.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(region, RegionShapes):
        target, other = base.with_suffix(".json"), base.with_suffix(".tif")
        with atomic_write(target, "w") as fh:
            json.dump(region.to_json(), fh)
    else:
        mask = np.asarray(region) != 0
        target, other = base.with_suffix(".tif"), base.with_suffix(".json")
        with atomic_write(target) as fh:
            tifffile.imwrite(fh, mask.astype(np.uint8), compression="zlib")
    other.unlink(missing_ok=True)
    return target


def load_region(path: str | os.PathLike) -> RegionShapes | np.ndarray:
    """The region saved at ``path`` (a ``.json`` of shapes or a ``.tif`` mask)."""
    p = Path(path)
    if not p.is_file():
        raise NapariUnetError(f"The region file {p} is missing.")
    try:
        if p.suffix == ".json":
            return RegionShapes.from_json(json.loads(p.read_text()))
        return np.asarray(tifffile.imread(p)) != 0
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise NapariUnetError(f"The region file {p} could not be read ({exc}).") from None


def mask_to_shapes(mask: np.ndarray) -> RegionShapes:
    """Polygons around the inside of a region mask, so it can be edited as Shapes.

    Each 2D plane's outlines become polygons (vertices at half-pixel precision);
    a hole in the mask becomes a polygon of its own, so the filled shapes cover it.

    Parameters
    ----------
    mask : numpy.ndarray
        Non-zero inside the region; 2D, or a stack whose last two axes are the plane.

    Returns
    -------
    RegionShapes
    """
    from skimage.measure import approximate_polygon, find_contours

    mask = np.asarray(mask) != 0
    region = RegionShapes(ndim=mask.ndim)
    for index in np.ndindex(mask.shape[:-2]):
        # padded so that a region touching the border still gets a closed outline
        plane = np.pad(mask[index], 1).astype(np.float32)
        for contour in find_contours(plane, 0.5):
            poly = approximate_polygon(contour - 1, tolerance=0.5)[:-1]  # last repeats first
            if len(poly) >= 3:
                lead = np.broadcast_to(np.array(index, float), (len(poly), len(index)))
                region.data.append(np.column_stack([lead, poly]))
                region.shape_types.append("polygon")
    return region
