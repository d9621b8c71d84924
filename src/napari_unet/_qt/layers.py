"""Layer helpers: pixels of a layer, the plugin's own layers, and which layers a dock offers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NapariUnetError

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    from napari.layers import Layer

# Marker in layer.metadata: only layers carrying it are ever updated in place.
OWNER_KEY = "napari_unet"
# Roles of layers the plugin computes (never an image or annotation to train on by default).
DERIVED_ROLES = frozenset(
    {
        "probability",
        "segmentation",
        "weight map",
        "preview image",
        "preview labels",
        "preview weights",
        "review",
        "training area",
    }
)


def role_of(layer: Any) -> str | None:
    """The role the plugin gave ``layer`` ("annotation", "segmentation", ...), or None."""
    tag = getattr(layer, "metadata", {}).get(OWNER_KEY)
    return tag.get("role") if isinstance(tag, dict) else None


def is_derived(layer: Any) -> bool:
    """Whether ``layer`` is a result the plugin computed (probability, weight map, ...)."""
    return role_of(layer) in DERIVED_ROLES


def layer_choices(
    viewer: napari.viewer.Viewer,
    kind: str,
    *,
    derived: Callable[[], bool] = lambda: False,
    fits: Callable[[], Any] | None = None,
) -> Callable[[Any], list[tuple[str, Any]]]:
    """A ``choices`` callable for a ComboBox: the viewer's layers of ``kind``.

    Layers the plugin derived are left out unless ``derived()`` says to offer them.
    With ``fits``, only layers of the shape of the image ``fits()`` returns are
    offered (a 3D stack's labels are no annotation of a 2D image).
    """
    from napari import layers

    cls = getattr(layers, kind)

    def choices(_widget: Any = None) -> list[tuple[str, Any]]:
        offer_derived = derived()
        image = fits() if fits is not None else None
        shape = spatial_shape(image) if image is not None else None
        return [
            (layer.name, layer)
            for layer in viewer.layers
            if isinstance(layer, cls)
            and (offer_derived or not is_derived(layer))
            and (shape is None or tuple(layer_data(layer).shape) == shape)
        ]

    return choices


def image_of(viewer: napari.viewer.Viewer, annotation: Any) -> Any:
    """The image layer an annotation was made for (recorded by the plugin), if open."""
    tag = annotation.metadata.get(OWNER_KEY)
    source = tag.get("source") if isinstance(tag, dict) else None
    return next((layer for layer in viewer.layers if layer.name == source), None)


def spatial_shape(layer: Any) -> tuple[int, ...]:
    """Shape of an image layer without its colour axis."""
    shape = layer.data[0].shape if getattr(layer, "multiscale", False) else layer.data.shape
    return tuple(shape[:-1]) if layer.rgb else tuple(shape)


def layer_data(layer: Any) -> Any:
    """The full-resolution array of a layer, as it is (numpy, dask, zarr...)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def history_lengths(layer: Any) -> tuple[int, int] | None:
    """Lengths of napari's undo and redo queues of ``layer``: they change on undo and redo.

    None where napari keeps no such queues (another version): callers then treat
    every refresh as a change.
    """
    try:
        return len(layer._undo_history), len(layer._redo_history)
    except (AttributeError, TypeError):
        return None


def layer_image(layer: Any) -> np.ndarray:
    """The pixels of an image layer (the full-resolution level of a multiscale one)."""
    return np.asarray(layer_data(layer))


def is_lazy(layer: Any) -> bool:
    """Whether the layer's pixels are not in memory (dask, zarr): predict chunk by chunk."""
    return not isinstance(layer_data(layer), np.ndarray)


def find_own_layer(viewer: napari.viewer.Viewer, role: str, source: str) -> Layer | None:
    """The layer this plugin made for ``role`` (e.g. "segmentation") of layer ``source``."""
    for layer in viewer.layers:
        tag = layer.metadata.get(OWNER_KEY)
        if isinstance(tag, dict) and tag.get("role") == role and tag.get("source") == source:
            return layer
    return None


def upsert_layer(
    viewer: napari.viewer.Viewer,
    data: Any,
    *,
    kind: str,
    role: str,
    source: str,
    name: str,
    **kwargs: Any,
) -> Layer:
    """Update the plugin's layer for (``role``, ``source``) in place, or add it.

    A layer of the user's with the same name is never touched: napari then
    gives the new layer a unique name. Adding a layer does not change which
    layer is active: the user keeps painting where they were.
    """
    layer = find_own_layer(viewer, role, source)
    if layer is not None and layer._type_string == kind:
        layer.data = data
        for key, value in kwargs.items():
            if key in ("contrast_limits", "visible", "scale", "translate"):
                setattr(layer, key, value)
        return layer
    active = viewer.layers.selection.active
    selected = set(viewer.layers.selection)
    if layer is not None:  # same role, other kind: replace our own layer
        viewer.layers.remove(layer)
    add = getattr(viewer, f"add_{kind}")
    layer = add(data, name=name, metadata={OWNER_KEY: {"role": role, "source": source}}, **kwargs)
    if active is not None and active in viewer.layers:
        viewer.layers.selection = {s for s in selected if s in viewer.layers} or {active}
        viewer.layers.selection.active = active
    return layer


def remove_own_layer(viewer: napari.viewer.Viewer, role: str, source: str) -> None:
    """Remove the plugin's layer for (``role``, ``source``), if there is one."""
    layer = find_own_layer(viewer, role, source)
    if layer is not None:
        viewer.layers.remove(layer)


def region_mask(shapes_layer: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Pixels inside any shape of ``shapes_layer`` (None when there is no layer)."""
    if shapes_layer is None:
        return None
    if len(shapes_layer.data) == 0:
        raise NapariUnetError(
            f"The region layer '{shapes_layer.name}' has no shapes; draw one or choose none."
        )
    masks = shapes_layer.to_masks(mask_shape=shape[-2:])
    mask = np.asarray(masks).any(axis=0)
    return np.broadcast_to(mask, shape).copy() if len(shape) == 3 else mask


def free_id(labels: np.ndarray) -> int:
    """The id a new cell gets in ``labels``: the largest id + 1 (1 when it is empty).

    When the dtype holds no larger id, the largest one (napari refuses more).
    """
    top = int(labels.max()) if labels.size else 0
    dtype = np.dtype(labels.dtype)
    if np.issubdtype(dtype, np.integer) and top >= np.iinfo(dtype).max:
        return top
    return top + 1
