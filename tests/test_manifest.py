"""The npe2 manifest: one real file inside the package, a link to it at the top."""

import sys
from pathlib import Path

import pytest
from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_MANIFEST = ROOT / "src" / "napari_unet" / "napari.yaml"

# git for Windows checks a symbolic link out as a small text file (core.symlinks is off
# by default and links need developer mode): the top-level napari.yaml is then not a
# manifest. Both tests read it.
pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="Unix and macOS only: napari.yaml at the top is a symlink"
)


def test_top_level_manifest_is_a_link_to_the_package_one():
    top = ROOT / "napari.yaml"
    assert top.is_symlink()
    assert top.resolve() == PACKAGE_MANIFEST.resolve()
    assert not PACKAGE_MANIFEST.is_symlink()  # the real file ships in the wheel


def test_both_paths_and_the_installed_plugin_give_one_manifest():
    top = PluginManifest.from_file(ROOT / "napari.yaml")
    inner = PluginManifest.from_file(PACKAGE_MANIFEST)
    installed = PluginManifest._from_package_or_name("napari-unet")
    assert top.model_dump() == inner.model_dump() == installed.model_dump()
    assert top.name == "napari-unet"
    ids = {c.id for c in top.contributions.commands}
    assert all(i.startswith("napari-unet.") for i in ids)
