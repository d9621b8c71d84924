from napari_unet._qt.demo import DOCKS, open_viewer


def test_make_run_viewer_has_sample_and_all_docks(qtbot):
    viewer, docks = open_viewer(show=False)
    try:
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
