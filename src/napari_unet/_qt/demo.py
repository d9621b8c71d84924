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
    viewer.layers.selection.active = viewer.layers[0]  # the image, not the hidden truth
    docks = {name: viewer.window.add_plugin_dock_widget("napari-unet", name) for name in DOCKS}
    window = viewer.window._qt_window
    first = docks[DOCKS[0]][0]
    for name in DOCKS[1:]:
        window.tabifyDockWidget(first, docks[name][0])
    first.raise_()
    fit_to_screen(window)
    return viewer, docks


def fit_to_screen(window) -> None:
    """Fill the screen the window is on, and no more (a 1366x768 laptop included)."""
    screen = window.screen()
    if screen is None:
        return
    free = screen.availableGeometry()
    frame = window.frameGeometry().size() - window.geometry().size()  # title bar, borders
    window.resize(free.width() - frame.width(), free.height() - frame.height())
    window.move(free.topLeft())


def main() -> None:
    """Open the viewer and run napari's event loop."""
    import napari

    open_viewer()
    napari.run()


if __name__ == "__main__":
    main()
