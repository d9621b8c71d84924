import subprocess
import sys

CORE = [
    "napari_unet",
    "napari_unet.model",
    "napari_unet.tiling",
    "napari_unet.modelfile",
    "napari_unet.postprocess",
    "napari_unet.cli",
]


def _modules_after(code):
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return set(out)


def test_package_import_is_light():
    mods = _modules_after("import napari_unet")
    assert "torch" not in mods
    assert not any(m.startswith(("qtpy", "PyQt", "napari.")) for m in mods)


def test_package_import_loads_no_engine_qt_or_napari():
    """napari imports the package for its manifest: nothing heavy may come with it."""
    mods = _modules_after("import napari_unet")
    engine = {"napari_unet." + m for m in ("bigimage", "training", "augment", "tiling", "model")}
    assert not mods & ({"torch", "qtpy", "napari", "dask", "zarr"} | engine)


def test_sample_data_and_bundled_path_stay_light():
    """napari opens the samples, and the docks look up the bundled file, without torch."""
    mods = _modules_after(
        "import napari_unet._sample_data, napari_unet.bundled as b; b.bundled_model_path()"
    )
    assert "torch" not in mods and "napari" not in mods


def test_core_never_imports_qt_or_napari():
    mods = _modules_after("import " + ", ".join(CORE) + "\nimport napari_unet as n; n.UNet")
    assert "torch" in mods
    bad = [m for m in mods if m.startswith(("qtpy", "PyQt", "PySide", "napari.", "magicgui"))]
    assert bad == [] and "napari" not in mods


def test_public_names_resolve():
    import napari_unet

    assert set(napari_unet.__all__) == set(napari_unet._LAZY)
    for name in napari_unet.__all__:
        assert getattr(napari_unet, name) is not None


def test_configs_load_without_the_engines():
    """The docks read TrainConfig and AugmentConfig on the GUI thread: no torch, numba, scipy."""
    mods = _modules_after(
        "from napari_unet.training import TrainConfig\n"
        "from napari_unet.augment import AugmentConfig\n"
        "TrainConfig.interactive(); AugmentConfig()"
    )
    assert not {"torch", "numba", "scipy"} & mods


def test_subpackage_public_names_resolve():
    import napari_unet.augment as augment
    import napari_unet.bigimage as bigimage
    import napari_unet.training as training

    for package in (augment, bigimage, training):
        assert set(package.__all__) == set(package._LAZY)
        for name in package.__all__:
            assert getattr(package, name) is not None


SHARING = ("bioimageio", "onnx", "onnxruntime", "onnxscript", "ome_zarr", "ome_zarr_models")


def _top_level(mods):
    return {m.split(".")[0] for m in mods}


def test_sharing_libraries_load_only_for_an_export():
    """bioimageio, onnx and ome-zarr come with an export, not with the CLI or a model load."""
    mods = _modules_after(
        "import napari_unet as n, napari_unet.cli, napari_unet.export, napari_unet.bigimage\n"
        "from napari_unet.bundled import bundled_model_path\n"
        "n.load_model(bundled_model_path())"
    )
    assert not _top_level(mods) & set(SHARING)


def test_napari_reader_loads_no_engine(tmp_path):
    """napari asks the reader about every .zarr it opens: that must not import torch."""
    import numpy as np

    from napari_unet import UNet
    from napari_unet.bigimage import predict_to_zarr

    net = UNet(base_channels=4, depth=2, dropout=0.0)
    predict_to_zarr(net, np.zeros((40, 40), np.float32), tmp_path / "ours.zarr", chunk=32)
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w").create_array(
        "0", shape=(4, 4), dtype="u1"
    )
    mods = _modules_after(
        "from napari_unet._reader import get_reader\n"
        f"assert get_reader({str(tmp_path / 'foreign.zarr')!r}) is None\n"
        f"layers = get_reader({str(tmp_path / 'ours.zarr')!r})({str(tmp_path / 'ours.zarr')!r})\n"
        "assert layers[-1][2] == 'labels'"
    )
    assert "torch" not in mods and "napari_unet.tiling" not in mods
    assert not _top_level(mods) & set(SHARING)
