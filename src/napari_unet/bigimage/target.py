"""Where a run writes: :class:`OutputTarget`, the store and the label image in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zarr

__all__ = ["OutputTarget"]


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
