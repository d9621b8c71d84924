"""napari dock widgets: the only part of napari-unet that imports Qt and napari."""
