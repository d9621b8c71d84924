"""Our zarr output: how it is laid out, opened for writing and marked complete.

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

Its display levels are made in :mod:`.levels`; a finished result is read back by
:mod:`.result` (whose names this module re-exports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from ..errors import NapariUnetError
from .levels import (
    create_label_levels,
    create_placeholder_levels,
    create_probability_levels,
    pyramid_levels,
)
from .ngff import SourceImage, Spatial, image_label, multiscales, ome_attrs
from .result import ATTR, FORMAT_VERSION, ZarrPrediction, open_prediction, read_result
from .target import OutputTarget

if TYPE_CHECKING:
    from .chunks import ImageAxes

# with the names of .levels, .result and .target that lived here before
__all__ = [
    "ATTR",
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

#: Default name of the label image under ``labels/``.
LABEL_NAME = "segmentation"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


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
        create_placeholder_levels(target, axes, chunk, n_levels)
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
