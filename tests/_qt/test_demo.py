from napari_unet._qt.demo import DOCKS, open_viewer


def test_make_run_viewer_has_sample_and_all_docks(qtbot):
    viewer, docks = open_viewer(show=True)
    try:
        window = viewer.window._qt_window
        # shown by open_viewer already (qtbot.waitExposed is a context manager around a show)
        qtbot.waitUntil(lambda: window.windowHandle() is not None)
        qtbot.waitUntil(window.windowHandle().isExposed)
        free = window.screen().availableGeometry()
        assert free.contains(window.frameGeometry()), (free, window.frameGeometry())
        assert window.width() >= 0.9 * free.width()  # and uses it
        # the sample's hidden true labels are not what Train would train on
        assert docks["Train"][1]._annotation.value is None
        assert [layer.name for layer in viewer.layers] == [
            "synthetic nuclei",
            "synthetic nuclei labels",
        ]
        assert viewer.layers["synthetic nuclei"].data.shape == (512, 512)
        assert viewer.layers["synthetic nuclei labels"].data.max() > 50
        assert set(docks) == set(DOCKS)
    finally:
        viewer.close()


def test_sample_data_contributions_open(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "brightfield")
    kinds = sorted(type(layer).__name__ for layer in viewer.layers)
    assert kinds == ["Image", "Labels"]
