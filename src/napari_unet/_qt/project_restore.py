"""Opening a project in a viewer: its layers, regions, order and model come back.

Reading the project runs in a worker; the layers are made on the GUI thread,
and what is opened is tracked (and autosaved) from then on. An image that moved
can be pointed at afterwards (:meth:`ProjectRestore.relocate`).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import NapariUnetError
from ..training.provenance import COPIED_KEY
from .layers import OWNER_KEY, free_id, spatial_shape
from .project_io import Loaded, load_project
from .training_scope import COMPLETE_KEY
from .workers import UserProblem

__all__ = ["ProjectRestore", "RestoredEntry"]


class RestoredEntry(NamedTuple):
    """One entry of an opened project, as layers (the image is None when it cannot be found)."""

    name: str
    image: Any
    labels: Any
    region: Any


class ProjectRestore:
    """Opening a project: the restore part of the viewer's project session.

    A mixin of :class:`~napari_unet._qt.project_session.ProjectSession`: the
    session sets up the viewer, state, lock and entries it uses.
    """

    def open(self, folder: str | os.PathLike) -> Any:
        """Open the project in ``folder``: its layers, regions and model in use come back.

        Reading runs in a worker; the :attr:`opened` signal then carries the list of
        :class:`RestoredEntry`. An image that moved or changed is one sentence
        (:attr:`problems`), and the rest opens.
        """
        return self._workers.start_function(
            load_project,
            Path(folder),
            returned=self._restore,
            errored=lambda exc: self._say(f"The project could not be opened: {exc}", "error"),
        )

    def _restore(self, loaded: Loaded | UserProblem) -> list[RestoredEntry]:
        if isinstance(loaded, UserProblem):
            self._tell(loaded.message, error=True)
            return []
        lock = self._lock_for(loaded.project.folder)
        try:
            lock.acquire()
        except NapariUnetError as exc:
            self._tell(str(exc), error=True)
            return []
        # the previous project keeps what was painted: written there now, before switching
        self.flush()
        unsaved = [e.labels.name for e in self._entries if e.dirty and not e.refused]
        if unsaved:
            if lock is not self._lock:
                lock.release()
            self._tell(
                f"The project was not opened: '{unsaved[0]}' could not be saved first "
                f"in {self.project.folder}.",
                error=True,
            )
            return []
        previous = self.project.folder if self.project is not None else None
        for entry in list(self._entries):
            if previous is not None and entry.name is not None:
                self._left.append((weakref.ref(entry.labels), previous))
            self._forget(entry)
        self._set_project(loaded.project, lock)
        viewer = self._viewer
        restored = []
        for record, image, labels, region, notes in loaded.items:
            image_layer = self._image_layer(record, image)
            if image_layer is None and record.image is None:
                loaded.problems.append(
                    f"The image of '{record.name}' was not read from a file, so the project "
                    "cannot open it; its annotation opens alone (Keep copies of the images, "
                    "in the Train dock's project, stores such images)."
                )
            place = {}
            if image_layer is not None:
                place = {"scale": image_layer.scale[-labels.ndim :]}
            labels_layer = viewer.add_labels(
                labels,
                name=f"{record.layer_name} annotation",
                metadata={
                    OWNER_KEY: {"role": "annotation", "source": record.layer_name},
                    COPIED_KEY: dict(notes.get("copied") or {}),
                    COMPLETE_KEY: bool(notes.get("complete")),
                },
                **place,
            )
            labels_layer.selected_label = free_id(labels)  # the first stroke is a new cell
            region_layer = None
            if region is not None:
                region_layer = self._region_layer(record.layer_name, region, place)
            self._track(record.name, image_layer, labels_layer, region_layer, clean=True)
            restored.append(RestoredEntry(record.name, image_layer, labels_layer, region_layer))
        if loaded.model is not None:
            self._state.model.set_model(loaded.model, loaded.model_source)
        self.moved = list(loaded.moved)
        self.problems = list(loaded.problems)
        saved = [r.saved_at for r in loaded.project.entries if r.saved_at]
        self.last_saved = max(saved) if saved else None
        for sentence in loaded.problems:
            self.problem.emit(sentence)
            self._say(sentence, "warning")
        self._restore_order(loaded.project.view.get("order") or [], restored)
        last = next((r for r in reversed(restored) if r.image is not None), None)
        current = loaded.project.view.get("current")
        last = next((r for r in restored if r.name == current and r.image), last)
        if last is not None:
            self._state.annotation.set(image=last.image, labels=last.labels, region=last.region)
        else:  # the current annotation stays current: it is saved in this project from now on
            self._follow(self._state.annotation)
        self.opened.emit(restored)
        return restored

    def _restore_order(self, order: list, restored: list[RestoredEntry]) -> None:
        """Stack the restored layers as they were saved (an annotation above its image).

        Without a saved order each annotation and region goes just above its image.
        """
        by_part = {
            (r.name, part): getattr(r, part)
            for r in restored
            for part in ("image", "labels", "region")
            if getattr(r, part) is not None
        }
        wanted = [by_part.pop(tuple(item)) for item in order if tuple(item) in by_part]
        for r in restored:  # the rest, in the natural order
            for part in ("image", "labels", "region"):
                if (r.name, part) in by_part:
                    wanted.append(by_part.pop((r.name, part)))
        layers = self._viewer.layers
        slots = sorted(layers.index(layer) for layer in wanted)
        for slot, layer in zip(slots, wanted):  # bottom to top, each into its slot
            src = layers.index(layer)
            layers.move(src, slot + 1 if src < slot else slot)  # (move inserts before dest)

    def _image_layer(self, record: Any, image: np.ndarray | None) -> Any:
        """The image layer of ``record``: one already open with its name and shape, or a new one."""
        from napari.layers import Image

        for layer in self._viewer.layers:
            if (
                isinstance(layer, Image)
                and layer.name == record.layer_name
                and tuple(spatial_shape(layer)) == tuple(record.shape)
            ):
                return layer
        if image is None:
            return None
        return self._viewer.add_image(image, name=record.layer_name)

    def _region_layer(self, source: str, region: Any, place: dict) -> Any:
        from ..project import RegionShapes, mask_to_shapes

        shapes = region if isinstance(region, RegionShapes) else mask_to_shapes(region)
        return self._viewer.add_shapes(
            [np.asarray(d) for d in shapes.data],
            shape_type=list(shapes.shape_types),
            ndim=shapes.ndim,
            name=f"{source} annotated region",
            face_color="transparent",
            edge_color="yellow",
            edge_width=2,
            metadata={OWNER_KEY: {"role": "region", "source": source}},
            **{k: v[-shapes.ndim :] for k, v in place.items()},
        )

    def relocate(self, name: str, image_path: str | os.PathLike) -> Any:
        """Point entry ``name`` at its moved image: the manifest is updated, the image opens."""
        from ..fileio import read_image

        if self.project is None:
            return None
        project = self.project

        def work() -> tuple | UserProblem:
            try:
                record = project.relocate(name, image_path)
                return record, read_image(record.image)
            except NapariUnetError as exc:
                return UserProblem(exc)

        return self._workers.start_function(work, returned=self._relocated)

    def _relocated(self, result: Any) -> None:
        if isinstance(result, UserProblem):
            self._tell(result.message, error=True)
            return
        record, image = result
        layer = self._image_layer(record, image)
        layers = self._viewer.layers
        for entry in self._entries:  # the image goes under its annotation, not over it
            if entry.name == record.name and entry.labels in layers:
                below = layers.index(entry.labels)
                if layers.index(layer) > below:
                    layers.move(layers.index(layer), below)
        self.moved = [n for n in self.moved if n != record.name]
        self.problems = [p for p in self.problems if f"'{record.name}'" not in p]
        for entry in self._entries:
            if entry.name == record.name:
                entry.image = layer
                self._state.annotation.set(image=layer, labels=entry.labels, region=entry.region)
        self.changed.emit(self.project)
