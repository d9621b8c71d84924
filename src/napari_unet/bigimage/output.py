"""Our zarr output: how it is laid out, opened for writing, marked complete and read back.

A result is an OME-Zarr (NGFF 0.5) image::

    OUT.zarr/                 image group: the probabilities (c, [z,] y, x) at every display
      0, 1, ...               level when kept, else empty placeholder levels (no chunk written)
      labels/                 NGFF "labels" group, listing "segmentation"
        segmentation/         NGFF label image ("image-label"): instance ids, one array per
          0, 1, ...           display level, every 2**level-th pixel along y and x

With ``into_input`` the label image goes into the input OME-Zarr image's own
``labels/`` group instead (in that image's NGFF version), and nothing else of the
image is touched. The run's metadata lives in the attribute ``"napari_unet"`` of
the label image (and of our own store's root), whose ``"complete": true`` is
written last.

Results of format version 1 (``labels/0``, ``labels/1``... and ``probabilities``
at the root of a plain zarr group) are still read.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import zarr

from ..errors import NapariUnetError
from .ngff import (
    SourceImage,
    Spatial,
    image_label,
    multiscales,
    ome_attrs,
    read_ome,
)

if TYPE_CHECKING:
    from .chunks import ImageAxes

__all__ = [
    "FORMAT_VERSION",
    "LABEL_NAME",
    "OutputTarget",
    "ZarrPrediction",
    "create_label_levels",
    "create_probability_levels",
    "mark_complete",
    "open_output",
    "open_prediction",
    "pyramid_levels",
    "read_result",
]

#: 2: OME-Zarr (NGFF) layout; 1: ``labels/0..n`` and ``probabilities`` in a plain group.
FORMAT_VERSION = 2
#: The group attribute that holds a run's metadata.
ATTR = "napari_unet"
#: Default name of the label image under ``labels/``.
LABEL_NAME = "segmentation"
# Display levels stop once a level fits in a screen-sized texture.
_PYRAMID_STOP = 2048
_PYRAMID_MIN_CHUNK = 32
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ZarrPrediction:
    """A finished prediction in a zarr store, opened lazily.

    Attributes
    ----------
    path : str
        The store.
    labels : list of dask.array.Array
        Instance labels, full resolution first, then levels downsampled by 2, 4,
        ... along the last two axes (nearest neighbour); pass the list to
        ``viewer.add_labels(labels, multiscale=True, scale=result.scale)``.
    probabilities : dask.array.Array or None
        float32 ``(K, ..., H, W)`` class probabilities, when they were requested.
    n_objects : int
        Number of objects; ids are ``1..n_objects``.
    metadata : dict
        Everything the run recorded (model, normalisation with its statistics,
        chunking, post-processing).
    scale : tuple of float
        Pixel size along the labels' axes (``(z,) y, x``) at full resolution:
        the source OME-Zarr image's, the ``scale`` given to the run, or 1.
    translation : tuple of float
        Position of the first pixel (zeros unless the source image gives one).
    label_path : str
        The label image inside the store (``labels/segmentation``; ``labels``
        for format version 1).
    probability_levels : list of dask.array.Array
        The probabilities at every display level (full resolution first), when
        kept; empty otherwise.
    """

    path: str
    labels: list
    probabilities: Any
    n_objects: int
    metadata: dict = field(repr=False)
    scale: tuple = ()
    translation: tuple = ()
    label_path: str = "labels"
    probability_levels: list = field(default_factory=list)


@dataclass
class OutputTarget:
    """Where a run writes: the group holding ``labels/`` and the label image in it.

    ``root`` is our own store, or with ``into_input`` the input image (never
    written to, but for its ``labels/`` group). Work arrays live in the label
    image's ``_work`` group and are deleted once the run is complete.
    """

    root: zarr.Group
    label: zarr.Group
    name: str
    version: str
    into_input: bool
    path: str
    zarr_format: int
    # label arrays of a run into an input image have the image's axes: the
    # positions of the axes (channels, singletons) that the labels lack
    singleton_axes: tuple = ()
    label_axes: list = field(default_factory=list)
    label_scale: tuple = ()
    label_translation: tuple | None = None
    label_halved: tuple = ()
    global_transforms: list = field(default_factory=list)
    # the image the labels derive from, relative to the label image (NGFF "source")
    source_ref: str = "../../"

    def create_array(
        self, group: zarr.Group, name: str, dims: list | None = None, **kwargs: Any
    ) -> zarr.Array:
        """An array in ``group``, as this target's NGFF version asks.

        ``dims`` are the NGFF axes of an array that is part of an image (0.5 wants
        them as zarr dimension names).
        """
        if self.zarr_format == 2:  # NGFF 0.4 wants "/" between chunk indices
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        elif dims is not None:
            kwargs["dimension_names"] = [a["name"] for a in dims]
        return group.create_array(name, fill_value=0, overwrite=True, **kwargs)


# --------------------------------------------------------------------------- opening


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a zarr group holding a napari-unet result (complete or not)."""
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:  # an array, or not zarr at all
        return False
    return isinstance(dict(root.attrs).get(ATTR), dict)


def _check_local_output(p: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless ours and ``overwrite``) or cannot be written."""
    if p.exists():
        is_zarr = any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zarray"))
        if not overwrite:
            raise NapariUnetError(f"The output {p} already exists; pass --overwrite to replace it.")
        if not is_zarr:
            raise NapariUnetError(
                f"The output {p} exists and is not a zarr store; it was left alone."
            )
        if not _written_by_us(p):  # e.g. the input image: --overwrite never deletes data
            raise NapariUnetError(
                f"The output {p} is a zarr store that napari-unet did not write (an image?); "
                "it was left alone. Choose another output."
            )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise NapariUnetError(f"The folder {parent} for the output does not exist.")
    if not os.access(parent, os.W_OK):
        raise NapariUnetError(f"The folder {parent} is not writable.")


def open_output(
    output: Any,
    overwrite: bool,
    *,
    axes: ImageAxes,
    spatial: Spatial,
    source: SourceImage | None = None,
    into_input: bool = False,
    label_name: str = LABEL_NAME,
) -> OutputTarget:
    """Create the label image (and our store), marked as ours and incomplete from the start.

    ``output`` is our store (ignored with ``into_input``, where the labels go
    into ``source``'s ``labels/label_name``).
    """
    if not isinstance(label_name, str) or not _NAME.match(label_name):
        raise NapariUnetError(
            f"The label name must be letters, digits, '.', '_' or '-', got {label_name!r}."
        )
    n_spatial = len(spatial.scale)
    halved = (False,) * (n_spatial - 2) + (True, True)
    if into_input:
        target = _open_into_input(source, overwrite, axes, label_name)
        target.label_axes = source.axes
        n = len(source.axes)
        scale = [1.0] * n
        shift = None
        for t in source.transforms:  # the image's full-resolution placement, every axis
            if t.get("type") == "scale" and len(t.get("scale") or []) == n:
                scale = [float(v) for v in t["scale"]]
            if t.get("type") == "translation" and len(t.get("translation") or []) == n:
                shift = tuple(float(v) for v in t["translation"])
        target.label_scale, target.label_translation = tuple(scale), shift
        target.global_transforms = source.global_transforms
        kept = [i for i in range(n) if i not in target.singleton_axes]
        target.label_halved = tuple(i in kept[-2:] for i in range(n))
    else:
        root = _open_own_store(output, overwrite)
        label = root.create_group(f"labels/{label_name}")
        target = OutputTarget(
            root=root,
            label=label,
            name=label_name,
            version="0.5",
            into_input=False,
            path=str(output),
            zarr_format=3,
            label_axes=spatial.axes,
            label_scale=spatial.scale,
            label_translation=spatial.translation,
            label_halved=halved,
        )
    # ours from the start: a run that fails before its metadata is written is still
    # recognised as an incomplete result (and may be overwritten), not a foreign store
    target.label.attrs[ATTR] = {"complete": False}
    return target


def _open_own_store(output: Any, overwrite: bool) -> zarr.Group:
    if isinstance(output, str | os.PathLike) and "://" not in str(output):
        p = Path(output)
        _check_local_output(p, overwrite)
        root = zarr.open_group(str(p), mode="w", zarr_format=3)
    else:
        root = zarr.open_group(output, mode="w" if overwrite else "w-", zarr_format=3)
    root.attrs[ATTR] = {"complete": False}
    return root


def _open_into_input(
    source: SourceImage | None, overwrite: bool, axes: ImageAxes, name: str
) -> OutputTarget:
    """The label image ``labels/name`` inside the input image, checked and (re)created."""
    if source is None:
        raise NapariUnetError(
            "Labels can be written into the input only when it is an OME-Zarr image "
            "(a zarr group with multiscales metadata); write a separate output instead."
        )
    image = source.path
    singletons = _singleton_axes(source, axes)
    labels_dir = image / "labels"
    if labels_dir.exists() and not _is_group_dir(labels_dir):
        raise NapariUnetError(f"{labels_dir} is not a zarr group; the image was left alone.")
    if not os.access(labels_dir if labels_dir.exists() else image, os.W_OK):
        raise NapariUnetError(f"{image} is not writable, so its labels cannot be added.")
    label_dir = labels_dir / name
    if label_dir.exists():
        if not _written_by_us(label_dir):
            raise NapariUnetError(
                f"{image} already has a label image '{name}' that napari-unet did not write; "
                "it was left alone. Choose another label name."
            )
        if not overwrite:
            raise NapariUnetError(
                f"{image} already has napari-unet labels '{name}'; pass --overwrite to "
                "replace them."
            )
        _update_labels_list(labels_dir, source.version, remove=name)
        shutil.rmtree(label_dir)
    zarr_format = 2 if source.version == "0.4" else 3
    root = zarr.open_group(str(image), mode="r+", zarr_format=zarr_format)
    if not labels_dir.exists():
        root.create_group("labels", attributes=ome_attrs({"labels": []}, source.version))
    label = root.create_group(f"labels/{name}")
    return OutputTarget(
        root=root,
        label=label,
        name=name,
        version=source.version,
        into_input=True,
        path=str(image),
        zarr_format=zarr_format,
        singleton_axes=singletons,
    )


def _is_group_dir(p: Path) -> bool:
    return (p / ".zgroup").exists() or (
        (p / "zarr.json").exists()
        and json.loads((p / "zarr.json").read_text()).get("node_type") == "group"
    )


def _singleton_axes(source: SourceImage, axes: ImageAxes) -> tuple[int, ...]:
    """The image's axes the labels have size 1 along: channels and axes the run squeezed."""
    out_shape = axes.out_shape()
    full = [
        i
        for i in source.kept()
        if source.axes[i].get("type") != "channel" and i >= len(source.shape) - len(out_shape)
    ]
    if tuple(source.shape[i] for i in full) != tuple(out_shape):
        raise NapariUnetError(
            f"The labels {tuple(out_shape)} do not line up with the axes of {source.path} "
            f"({', '.join(a.get('name', '?') for a in source.axes)} = {source.shape}), so "
            "they cannot go into its labels; write a separate output instead."
        )
    return tuple(i for i in range(len(source.shape)) if i not in full)


def _update_labels_list(
    labels_dir: Path, version: str, *, add: str | None = None, remove: str | None = None
) -> None:
    """Add or remove a name in the ``labels`` list of a labels group, atomically.

    Only that list changes; the rest of the file (other tools' labels and
    attributes) is kept as it was.
    """
    if version == "0.5":
        meta_file = labels_dir / "zarr.json"
        doc = json.loads(meta_file.read_text())
        ome = doc.setdefault("attributes", {}).setdefault("ome", {})
        ome.setdefault("version", "0.5")
        holder = ome
    else:
        meta_file = labels_dir / ".zattrs"
        doc = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        holder = doc
    names = [n for n in holder.get("labels", []) if n != remove]
    if add is not None and add not in names:
        names.append(add)
    holder["labels"] = names
    tmp = meta_file.with_name(f".{meta_file.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, meta_file)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- arrays


def pyramid_levels(axes: ImageAxes, chunk: tuple[int, int]) -> int:
    """Display levels: halve until a level fits a screen, while chunks stay whole."""
    levels = 1
    while max(axes.shape) / 2 ** (levels - 1) > _PYRAMID_STOP and all(
        c % 2**levels == 0 and c >> levels >= _PYRAMID_MIN_CHUNK for c in chunk
    ):
        levels += 1
    return levels


def _level_shape(axes: ImageAxes, lv: int, lead: tuple = ()) -> tuple[int, ...]:
    H, W = axes.shape
    s = 2**lv
    return (*lead, *axes.plane_axis(), math.ceil(H / s), math.ceil(W / s))


def _level_chunks(axes: ImageAxes, chunk: tuple[int, int], lv: int, lead: tuple = ()) -> tuple:
    plane_chunk = (1,) if axes.is_stack else ()
    return (*lead, *plane_chunk, chunk[0] >> lv, chunk[1] >> lv)


def create_label_levels(
    target: OutputTarget, axes: ImageAxes, chunk: tuple[int, int], n_levels: int, dtype: str
) -> list[zarr.Array]:
    """The label image's arrays ``0`` ... ``n_levels - 1``, each level half the last."""
    levels = []
    for lv in range(n_levels):
        shape = list(_level_shape(axes, lv))
        chunks = list(_level_chunks(axes, chunk, lv))
        for a in target.singleton_axes:  # the image's own axes, 1 along the labels' missing ones
            shape.insert(a, 1)
            chunks.insert(a, 1)
        levels.append(
            target.create_array(
                target.label,
                str(lv),
                target.label_axes,
                shape=tuple(shape),
                chunks=tuple(chunks),
                dtype=dtype,
            )
        )
    return levels


def create_probability_levels(
    target: OutputTarget,
    axes: ImageAxes,
    chunk: tuple[int, int],
    n_levels: int,
    n_classes: int,
    first: int = 0,
) -> list[zarr.Array]:
    """Our store's image arrays ``first`` ... ``n_levels - 1``: the probabilities' levels."""
    return [
        target.create_array(
            target.root,
            str(lv),
            [{"name": "c"}, *target.label_axes],
            shape=_level_shape(axes, lv, (n_classes,)),
            chunks=_level_chunks(axes, chunk, lv, (n_classes,)),
            dtype="float32",
            compressors=None,  # float noise compresses little; decoding it would cost CPU
        )
        for lv in range(first, n_levels)
    ]


def _placeholder_levels(
    target: OutputTarget, axes: ImageAxes, chunk: tuple[int, int], n_levels: int
) -> None:
    """Image levels with no chunk written: zero bytes on disk, read as zeros."""
    for lv in range(n_levels):
        target.create_array(
            target.root,
            str(lv),
            target.label_axes,
            shape=_level_shape(axes, lv),
            chunks=_level_chunks(axes, chunk, lv),
            dtype="uint8",
        )


# --------------------------------------------------------------------------- completion


def mark_complete(
    target: OutputTarget,
    meta: dict,
    axes: ImageAxes,
    chunk: tuple[int, int],
    n_levels: int,
    sizes: np.ndarray,
    dtype: str,
    probabilities: bool,
) -> None:
    """Finish: NGFF metadata, work arrays gone, the label listed, then ``complete``.

    ``sizes`` are the objects' areas in pixels (ids ``1..len(sizes)``). The run
    metadata is written last: its ``"complete": true`` marks a finished run.
    """
    paths = [str(lv) for lv in range(n_levels)]
    label_ms = multiscales(
        target.name,
        target.label_axes,
        target.label_scale,
        target.label_translation,
        paths,
        target.label_halved,
        target.version,
        target.global_transforms,
    )
    label_content = {
        "multiscales": label_ms,
        "image-label": image_label(sizes, target.source_ref, target.version),
    }
    if "_work" in target.label:
        del target.label["_work"]
    n_objects = len(sizes)
    # a new dict: zarr keeps the attributes it wrote by reference, so changing ``meta`` in
    # place would write "complete": true with the next, unrelated attribute update
    meta = dict(
        meta,
        complete=True,
        n_objects=n_objects,
        labels={
            **meta["labels"],
            "path": f"labels/{target.name}",
            "levels": n_levels,
            "dtype": dtype,
            "singleton_axes": list(target.singleton_axes),
        },
        probabilities="0" if probabilities else None,
    )
    if target.into_input:
        target.label.attrs.update(ome_attrs(label_content, target.version))
        _update_labels_list(Path(target.path) / "labels", target.version, add=target.name)
        target.label.attrs[ATTR] = meta  # last: the labels are finished
        return
    if not probabilities:
        _placeholder_levels(target, axes, chunk, n_levels)
    image_axes = ([{"name": "c", "type": "channel"}] if probabilities else []) + target.label_axes
    lead = (1.0,) if probabilities else ()
    shift = (0.0,) * len(lead) + target.label_translation if target.label_translation else None
    image_ms = multiscales(
        "probabilities" if probabilities else "placeholder (probabilities were not kept)",
        image_axes,
        lead + target.label_scale,
        shift,
        paths,
        (False,) * len(lead) + target.label_halved,
        "0.5",
    )
    target.label.attrs.update(ome_attrs(label_content, "0.5"))
    target.label.attrs[ATTR] = meta
    target.root["labels"].attrs.update(ome_attrs({"labels": [target.name]}, "0.5"))
    target.root.attrs.update(ome_attrs({"multiscales": image_ms}, "0.5"))
    target.root.attrs[ATTR] = meta  # last: the store is finished


# --------------------------------------------------------------------------- reading


def open_prediction(output: str | os.PathLike | Any, *, label: str | None = None) -> ZarrPrediction:
    """Open the result of :func:`predict_to_zarr` lazily.

    Parameters
    ----------
    output : path-like or zarr store
        Our output store (this version's OME-Zarr layout or format version 1),
        or an OME-Zarr image that napari-unet wrote labels into.
    label : str or None
        In an image with several napari-unet label images, the one to open.

    Raises
    ------
    NapariUnetError
        If the store is missing, was not written by napari-unet, or comes from an
        interrupted run.
    """
    try:
        root = zarr.open_group(str(output) if isinstance(output, os.PathLike) else output, mode="r")
    except Exception:  # zarr raises several types for a missing or foreign store
        raise NapariUnetError(f"{output} is not a zarr store.") from None
    return read_result(root, str(output), label=label)


def read_result(root: zarr.Group, path: str, *, label: str | None = None) -> ZarrPrediction:
    """The finished result in ``root``, opened lazily; refused if foreign or incomplete."""
    meta = dict(root.attrs).get(ATTR)
    group = root
    if not isinstance(meta, dict):  # an image napari-unet wrote labels into?
        group = _our_label_image(root, path, label)
        meta = dict(group.attrs).get(ATTR)
    if not meta.get("complete"):
        raise NapariUnetError(
            f"{path} is incomplete (the run that wrote it was interrupted); run it again "
            "with --overwrite."
        )
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise NapariUnetError(
            f"{path} was written by a newer napari-unet (format {version}); update napari-unet "
            "to open it."
        )
    n_levels = int(meta["labels"]["levels"])
    if version == 1:
        label_group, label_path = root["labels"], "labels"
    else:
        label_path = meta["labels"]["path"]
        label_group = group if group is not root else root[label_path]
    singletons = tuple(meta["labels"].get("singleton_axes", ()))
    labels = []
    for lv in range(n_levels):
        arr = da.from_zarr(label_group[str(lv)])
        labels.append(arr.squeeze(axis=singletons) if singletons else arr)
    prob = meta.get("probabilities") if group is root else None
    prob_levels = []
    if prob:
        paths = [prob] if version == 1 else [str(lv) for lv in range(n_levels)]
        prob_levels = [da.from_zarr(root[p]) for p in paths]
    scale, translation = _placement(label_group, singletons, labels[0].ndim)
    return ZarrPrediction(
        path=path,
        labels=labels,
        probabilities=prob_levels[0] if prob_levels else None,
        n_objects=int(meta["n_objects"]),
        metadata=meta,
        scale=scale,
        translation=translation,
        label_path=label_path,
        probability_levels=prob_levels,
    )


def _our_label_image(root: zarr.Group, path: str, label: str | None) -> zarr.Group:
    """The napari-unet label image inside an OME-Zarr image's ``labels/`` group."""
    foreign = NapariUnetError(f"{path} was not written by napari-unet.")
    if "labels" not in root or not isinstance(root["labels"], zarr.Group):
        raise foreign
    labels = root["labels"]
    listed, _ = read_ome(dict(labels.attrs))
    names = [str(n) for n in listed.get("labels", [])]
    # unlisted groups are napari-unet runs under way (listed once complete) or foreign
    names += [n for n in labels.group_keys() if n not in names]
    ours = [n for n in names if isinstance(dict(labels[n].attrs).get(ATTR), dict)]
    if label is not None:
        if label not in ours:
            raise NapariUnetError(f"{path} has no napari-unet labels named '{label}'.")
        return labels[label]
    if not ours:
        raise foreign
    if len(ours) > 1:
        raise NapariUnetError(
            f"{path} holds {len(ours)} napari-unet label images ({', '.join(ours)}); "
            "name the one to open."
        )
    return labels[ours[0]]


def _placement(group: zarr.Group, singletons: tuple, ndim: int) -> tuple[tuple, tuple]:
    """Scale and translation of level 0 along the labels' own axes (1 and 0 if unknown)."""
    ome, _ = read_ome(dict(group.attrs))
    scale, shift = [1.0] * ndim, [0.0] * ndim
    try:
        transforms = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    except (KeyError, IndexError, TypeError):  # format version 1 had no scale
        return tuple(scale), tuple(shift)
    for t in transforms:
        values = t.get(t.get("type"), [])
        values = [v for i, v in enumerate(values) if i not in singletons]
        if t.get("type") == "scale" and len(values) == ndim:
            scale = [float(v) for v in values]
        if t.get("type") == "translation" and len(values) == ndim:
            shift = [float(v) for v in values]
    return tuple(scale), tuple(shift)
