"""Project folders: a training set's annotations, regions, rounds and their models (no Qt).

Public names are imported lazily (see :mod:`napari_unet._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = {
    "Project": "folder",
    "EntryRecord": "folder",
    "default_project_folder": "folder",
    "data_folder": "folder",
    "file_sha256": "folder",
    "safe_name": "folder",
    "RegionShapes": "annotations",
    "EmptyAnnotationError": "annotations",
    "save_annotation": "annotations",
    "load_annotation": "annotations",
    "annotation_versions": "annotations",
    "save_region": "annotations",
    "load_region": "annotations",
    "mask_to_shapes": "annotations",
    "RoundHistory": "history",
    "RoundRecord": "history",
    "ProjectLock": "lock",
    "ProjectInUseError": "lock",
    "recent_projects": "recent",
    "remember_project": "recent",
}

__all__ = [
    "EmptyAnnotationError",
    "EntryRecord",
    "Project",
    "ProjectInUseError",
    "ProjectLock",
    "RegionShapes",
    "RoundHistory",
    "RoundRecord",
    "annotation_versions",
    "data_folder",
    "default_project_folder",
    "file_sha256",
    "load_annotation",
    "load_region",
    "mask_to_shapes",
    "recent_projects",
    "remember_project",
    "safe_name",
    "save_annotation",
    "save_region",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .annotations import (
        EmptyAnnotationError,
        RegionShapes,
        annotation_versions,
        load_annotation,
        load_region,
        mask_to_shapes,
        save_annotation,
        save_region,
    )
    from .folder import (
        EntryRecord,
        Project,
        data_folder,
        default_project_folder,
        file_sha256,
        safe_name,
    )
    from .history import RoundHistory, RoundRecord
    from .lock import ProjectInUseError, ProjectLock
    from .recent import recent_projects, remember_project
