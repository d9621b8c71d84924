"""What a project session's workers do off the GUI thread: write one entry, read a project.

Nothing here touches a layer after the GUI thread handed over its references, and
nothing here imports Qt: the functions take plain values and return plain values (or a
:class:`~napari_unet._qt.workers.UserProblem` carrying the sentence for the user).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NapariUnetError
from .layers import layer_data, spatial_shape
from .workers import UserProblem

if TYPE_CHECKING:
    from ..project import Project, ProjectLock, RegionShapes

__all__ = [
    "ImageInfo",
    "Loaded",
    "Refused",
    "image_info",
    "load_project",
    "region_of",
    "store_images",
    "write_entry",
]


class Refused(UserProblem):
    """The annotation became empty and the saved one is not: kept until the user asks."""


@dataclass
class ImageInfo:
    path: str | None
    layer_name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Loaded:
    """What the worker read from a project folder, for the GUI thread to show."""

    project: Project
    items: list[tuple[Any, Any, np.ndarray, Any]]  # record, image or None, labels, region
    problems: list[str]
    moved: list[str]
    model: Any = None
    model_source: str = ""


def image_info(layer: Any) -> ImageInfo:
    """Where an image layer came from, and its shape: cheap, on the GUI thread."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if path is not None and not Path(path).exists():  # a URL or a plugin's own notion
        path = None
    data = layer_data(layer)
    return ImageInfo(
        str(Path(path).absolute()) if path else None,
        layer.name,
        spatial_shape(layer),
        str(np.dtype(data.dtype)),
    )


def region_of(layer: Any) -> RegionShapes | None:
    """The shapes of a region layer, copied (a few vertices: cheap)."""
    from ..project import RegionShapes

    if layer is None:
        return None
    return RegionShapes(
        ndim=int(layer.ndim),
        shape_types=[str(t) for t in layer.shape_type],
        data=[np.array(d, dtype=float) for d in layer.data],
    )


def write_entry(
    project: Project,
    lock: ProjectLock,
    name: str,
    info: ImageInfo,
    labels_ref: Any,
    region: RegionShapes | None,
    allow_empty: bool,
    image_copy: Any = None,
    notes: dict | None = None,
) -> float | None | UserProblem:
    """Write one entry (in a worker); the time written, None if nothing needed writing.

    ``image_copy``: the pixels of an image that came from no file, kept in the
    project with the first save (so that the project can open it again).
    ``notes``: what the layer's metadata says of the annotation (the cells copied
    from a prediction, whether the image is complete), kept beside it.
    """
    from ..project import EmptyAnnotationError, remember_project

    try:
        if name not in project.names:
            # nothing painted yet: no folder is made (and no 64 MB copy to find that out)
            if not np.asarray(labels_ref).any() and not (region and region.data):
                return None
            lock.acquire()  # the folder is made now: it becomes this window's
            project.add_entry(
                name, info.path, layer_name=info.layer_name, shape=info.shape, dtype=info.dtype
            )
        labels = np.array(labels_ref, copy=True)  # the snapshot; see the module docstring
        project.save_labels(name, labels, allow_empty=allow_empty)
        project.save_region(name, region)
        if image_copy is not None and not project.entry(name).stored_image:
            project.store_image(name, image_copy)
        if notes is not None:
            project.save_notes(name, notes)
        project.hash_images()
        remember_project(project.folder)
    except EmptyAnnotationError as exc:
        return Refused(exc)
    except NapariUnetError as exc:
        return UserProblem(exc)
    except OSError as exc:
        return UserProblem(
            NapariUnetError(f"The project folder {project.folder} could not be written ({exc}).")
        )
    return time.time()


def load_project(folder: Path) -> Loaded | UserProblem:
    """Read a project's annotations, regions, images and model in use (in a worker)."""
    from ..fileio import read_image
    from ..project import Project, load_annotation, load_region, remember_project

    try:
        project = Project.open(folder)
    except NapariUnetError as exc:
        return UserProblem(exc)
    remember_project(project.folder)
    loaded = Loaded(project, [], [], [])
    for record in project.entries:
        try:
            labels = load_annotation(project.path(record.labels))
            region = load_region(project.path(record.region)) if record.region else None
        except NapariUnetError as exc:
            loaded.problems.append(str(exc))
            continue
        image = None
        problem = project.image_problem(record)
        if problem is not None:
            loaded.problems.append(problem)
        source = record.image if record.image and Path(record.image).exists() else None
        if source is None and record.stored_image:
            source = str(project.path(record.stored_image))
        if source is not None:
            try:
                image = read_image(source)
            except NapariUnetError as exc:
                loaded.problems.append(str(exc))
        elif record.image is not None:
            loaded.moved.append(record.name)
        loaded.items.append((record, image, labels, region, project.load_notes(record.name)))
    if (project.folder / "history.json").is_file():
        history = project.history
        if history.current is not None:
            loaded.model = history.load_model(history.current)
            loaded.model_source = f"round {history.current} of project {project.folder.name}"
    return loaded


def store_images(project: Project, images: list[tuple[str, Any]]) -> tuple[int, int] | UserProblem:
    """Keep a copy of each ``(entry name, image data)`` in the project (in a worker).

    Returns
    -------
    tuple of int or UserProblem
        The number of images and the bytes the copies take, or the sentence of what failed
        (the copies written before it stay; each is written atomically).
    """
    total = 0
    try:
        for name, data in images:
            total += project.store_image(name, np.asarray(data)).stat().st_size
    except NapariUnetError as exc:
        return UserProblem(exc)
    except OSError as exc:
        return UserProblem(
            NapariUnetError(f"The project folder {project.folder} could not be written ({exc}).")
        )
    return len(images), total
