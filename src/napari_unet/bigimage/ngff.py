"""OME-Zarr (NGFF) metadata: what we read from an input image and write for a result.

Pure functions on dictionaries; the arrays are made in :mod:`.output`. Our own
stores are NGFF 0.5 (zarr v3, metadata under the ``"ome"`` attribute). Labels
written into an input image (``into_input``) follow that image's version, 0.4
(zarr v2, metadata at the top of the attributes) or 0.5, as the spec asks of
a ``labels`` group.
"""

from __future__ import annotations

import colorsys
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from ..errors import NapariUnetError

__all__ = [
    "MAX_LISTED_LABELS",
    "SourceImage",
    "Spatial",
    "image_label",
    "multiscales",
    "ome_attrs",
    "read_ome",
    "read_source_image",
]

#: Versions we write: our own stores are 0.5; labels inside an input follow the input.
VERSIONS = ("0.4", "0.5")
#: ``image-label`` lists a colour and the area of every id only up to this many ids; one
#: entry per id of a whole-slide segmentation (millions) would bloat the metadata, and the
#: spec makes both optional per value: viewers colour unlisted ids themselves.
MAX_LISTED_LABELS = 1024


@dataclass(frozen=True)
class Spatial:
    """Physical placement of the result's spatial axes (``(z,) y, x``) at full resolution.

    Attributes
    ----------
    axes : list of dict
        NGFF axes (``name``, ``type``, optionally ``unit``).
    scale : tuple of float
        Pixel size per axis.
    translation : tuple of float or None
        Position of the first pixel, when the source image gives one.
    """

    axes: list
    scale: tuple
    translation: tuple | None = None

    @classmethod
    def plain(cls, n_spatial: int, scale: Any = None) -> Spatial:
        """Axes ``(z,) y, x`` without units, with ``scale`` (default: 1 per pixel)."""
        names = ("z", "y", "x")[-n_spatial:]
        if scale is None:
            scale = (1.0,) * n_spatial
        scale = tuple(float(s) for s in scale)
        if len(scale) != n_spatial or not all(s > 0 for s in scale):
            raise NapariUnetError(
                f"The scale must be {n_spatial} positive pixel sizes ({', '.join(names)}), "
                f"got {scale!r}."
            )
        return cls([{"name": n, "type": "space"} for n in names], scale, None)


@dataclass(frozen=True)
class SourceImage:
    """An OME-Zarr image that the input was read from.

    Attributes
    ----------
    path : pathlib.Path
        The image group.
    version : str
        Its NGFF version, ``"0.4"`` or ``"0.5"``.
    axes : list of dict
        Its axes, in its order.
    shape : tuple of int
        The shape of its full-resolution array.
    transforms : list of dict
        The coordinate transformations of its full-resolution dataset.
    global_transforms : list of dict
        The multiscale's own coordinate transformations (usually none).
    """

    path: Path
    version: str
    axes: list
    shape: tuple
    transforms: list
    global_transforms: list
    level_scales: tuple = ()

    def levels_by_two(self) -> int | None:
        """Its number of levels if each halves y and x (and keeps the rest), else None."""
        if not self.level_scales or any(len(s) != len(self.axes) for s in self.level_scales):
            return None
        first = self.level_scales[0]
        n = len(first)
        for lv, scale in enumerate(self.level_scales):
            want = [v * (2**lv if i >= n - 2 else 1) for i, v in enumerate(first)]
            if not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(scale, want)):
                return None
        return len(self.level_scales)

    def kept(self) -> list[int]:
        """The axes that :func:`~.inputs.open_image_lazily` keeps (not squeezed away)."""
        n = len(self.shape)
        return [i for i, s in enumerate(self.shape) if s != 1 or i >= n - 2]

    def spatial(self, n_spatial: int) -> Spatial:
        """The placement of the last ``n_spatial`` kept non-channel axes (full resolution)."""
        keep = [i for i in self.kept() if self.axes[i].get("type") != "channel"][-n_spatial:]
        scale = _vector(self.transforms, "scale", len(self.axes), 1.0)
        shift = _vector(self.transforms, "translation", len(self.axes), 0.0)
        gscale = _vector(self.global_transforms, "scale", len(self.axes), 1.0)
        gshift = _vector(self.global_transforms, "translation", len(self.axes), 0.0)
        has_shift = any(
            t.get("type") == "translation" for t in self.transforms + self.global_transforms
        )
        axes = [
            {k: v for k, v in self.axes[i].items() if k in ("name", "type", "unit")} for i in keep
        ]
        return Spatial(
            axes=axes,
            scale=tuple(scale[i] * gscale[i] for i in keep),
            translation=tuple(shift[i] * gscale[i] + gshift[i] for i in keep)
            if has_shift
            else None,
        )


def _vector(transforms: list, kind: str, n: int, default: float) -> list[float]:
    for t in transforms or []:
        if t.get("type") == kind and isinstance(t.get(kind), list) and len(t[kind]) == n:
            return [float(v) for v in t[kind]]
    return [default] * n


def read_ome(attrs: dict) -> tuple[dict, str | None]:
    """The NGFF part of a group's attributes and its version (0.5: under ``"ome"``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        return ome, str(ome.get("version", "0.5"))
    ms = attrs.get("multiscales")
    if isinstance(ms, list) and ms and isinstance(ms[0], dict):
        return attrs, str(ms[0].get("version", "0.4"))
    image_label = attrs.get("image-label")
    if isinstance(image_label, dict):
        return attrs, str(image_label.get("version", "0.4"))
    if "labels" in attrs:
        return attrs, None
    return attrs, None


def read_source_image(path: str | os.PathLike) -> SourceImage | None:
    """The OME-Zarr image at ``path``, or None if ``path`` is not one (a TIFF, a plain zarr)."""
    p = Path(path)
    if not p.is_dir():
        return None
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception:  # an array, or not zarr at all
        return None
    ome, version = read_ome(dict(group.attrs))
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or version not in VERSIONS:
        return None
    first = multiscales[0]
    datasets = first.get("datasets") or []
    axes = first.get("axes")
    if not datasets or not isinstance(axes, list):
        return None
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in axes]
    try:
        shape = tuple(group[datasets[0]["path"]].shape)
    except Exception:  # a dataset that is missing or not an array
        return None
    if len(shape) != len(axes):
        return None
    return SourceImage(
        path=p,
        version=version,
        axes=axes,
        shape=shape,
        transforms=list(datasets[0].get("coordinateTransformations") or []),
        global_transforms=list(first.get("coordinateTransformations") or []),
        level_scales=tuple(
            tuple(_vector(d.get("coordinateTransformations") or [], "scale", len(axes), 1.0))
            for d in datasets
        ),
    )


def level_transforms(
    scale: tuple, translation: tuple | None, level: int, halved: tuple[bool, ...]
) -> list[dict]:
    """The ``coordinateTransformations`` of display level ``level`` (each halves ``halved``).

    Levels take every ``2**level``-th pixel starting at the first, so their first
    pixel stays where level 0's is: the translation does not change.
    """
    f = 2.0**level
    out = [{"type": "scale", "scale": [s * f if h else s for s, h in zip(scale, halved)]}]
    if translation is not None:
        out.append({"type": "translation", "translation": list(translation)})
    return out


def multiscales(
    name: str,
    axes: list,
    scale: tuple,
    translation: tuple | None,
    paths: list[str],
    halved: tuple[bool, ...],
    version: str,
    global_transforms: list | None = None,
) -> list[dict]:
    """One ``multiscales`` entry for the arrays ``paths``, full resolution first.

    ``global_transforms`` (the source image's multiscale-wide transformations)
    apply after each level's own.
    """
    entry = {
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": p,
                "coordinateTransformations": level_transforms(scale, translation, lv, halved),
            }
            for lv, p in enumerate(paths)
        ],
        "type": "nearest",
        "metadata": {"method": "every 2**level-th pixel along y and x, not averaged"},
    }
    if global_transforms:
        entry["coordinateTransformations"] = list(global_transforms)
    if version == "0.4":  # 0.5 moved the version to the "ome" attribute
        entry = {"version": "0.4", **entry}
    return [entry]


def image_label(
    sizes: Any, source: str | None, version: str, *, max_listed: int = MAX_LISTED_LABELS
) -> dict:
    """``image-label`` metadata for ids ``1..len(sizes)``.

    Up to ``max_listed`` ids each get a colour (background 0 transparent) and
    their area in pixels as a property (0 is listed as the background); with
    more, neither is listed (both are optional per value in the spec) and
    viewers pick colours themselves.
    ``source`` is the relative path to the image the labels derive from.
    """
    out: dict = {}
    if version == "0.4":
        out["version"] = "0.4"
    n = len(sizes)
    if n <= max_listed:
        out["colors"] = [{"label-value": 0, "rgba": [0, 0, 0, 0]}] + [
            {"label-value": i, "rgba": _colour(i)} for i in range(1, n + 1)
        ]
        # the same values as the colours: validators (ome-zarr-models) check they agree
        out["properties"] = [{"label-value": 0, "class": "background"}] + [
            {"label-value": i, "class": "object", "area (pixels)": int(sizes[i - 1])}
            for i in range(1, n + 1)
        ]
    if source is not None:
        out["source"] = {"image": source}
    return out


def _colour(i: int) -> list[int]:
    """A bright colour per id; golden-ratio hues keep neighbouring ids apart."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.8, 1.0)
    return [round(r * 255), round(g * 255), round(b * 255), 255]


def ome_attrs(content: dict, version: str) -> dict:
    """Group attributes holding NGFF ``content`` (0.5: under ``"ome"``, with the version)."""
    if version == "0.5":
        return {"ome": {"version": "0.5", **content}}
    return dict(content)
