"""``make run``: napari with the plugin docked and a sample image."""

from __future__ import annotations

DOCKS = ("Annotate", "Train", "Predict", "Model")


def open_viewer(show: bool = True):
    """A viewer with the synthetic nuclei sample and the four U-Net docks (tabbed).

    Returns
    -------
    (viewer, docks)
        ``docks`` maps each dock's name to its ``(QDockWidget, widget)``.
    """
    import napari

    viewer = napari.Viewer(title="napari-unet", show=show)
    viewer.open_sample("napari-unet", "nuclei")
    # the sample's true labels stay available but hidden: the user annotates their own
    for layer in viewer.layers:
        if layer.name.endswith("labels"):
            layer.visible = False
    docks = {name: viewer.window.add_plugin_dock_widget("napari-unet", name) for name in DOCKS}
    first = docks[DOCKS[0]][0]
    for name in DOCKS[1:]:
        viewer.window._qt_window.tabifyDockWidget(first, docks[name][0])
    first.raise_()
    return viewer, docks


def main() -> None:
    """Open the viewer and run napari's event loop."""
    import napari

    open_viewer()
    napari.run()


if __name__ == "__main__":
    main()
