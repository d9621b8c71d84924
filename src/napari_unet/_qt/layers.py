"""Adding or updating the plugin's own layers without touching the user's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

# Marker in layer.metadata: only layers carrying it are ever updated in place.
OWNER_KEY = "napari_unet"


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
    gives the new layer a unique name.
    """
    layer = find_own_layer(viewer, role, source)
    if layer is not None and layer._type_string == kind:
        layer.data = data
        return layer
    if layer is not None:  # same role, other kind: replace our own layer
        viewer.layers.remove(layer)
    add = getattr(viewer, f"add_{kind}")
    layer = add(data, name=name, metadata={OWNER_KEY: {"role": role, "source": source}}, **kwargs)
    return layer
