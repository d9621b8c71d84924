"""``make run``: napari with the plugin docked and a sample image."""

from __future__ import annotations


def main() -> None:
    """Open a viewer with the synthetic nuclei sample and the U-Net docks."""
    import napari

    viewer = napari.Viewer(title="napari-unet")
    viewer.open_sample("napari-unet", "nuclei")
    for name in ("Predict",):
        viewer.window.add_plugin_dock_widget("napari-unet", name)
    napari.run()


if __name__ == "__main__":
    main()
