import os
import sys

import numpy as np
import pytest
import torch


@pytest.fixture
def tiny_model():
    """A small, fast network with the paper's architecture rules (valid convs, depth 3)."""
    torch.manual_seed(0)
    from napari_unet import UNet

    return UNet(base_channels=4, depth=3, dropout=0.0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _exact_precision(monkeypatch):
    """precision="auto" means float32 in tests: results do not depend on the machine's bf16
    speed, and no test probes it in the user's data folder (tests/test_precision.py does
    its own, in a temporary one). Subprocesses inherit it."""
    monkeypatch.setenv("NAPARI_UNET_PRECISION", "fp32")


def pytest_collection_modifyitems(session, config, items):
    """Without a display Qt aborts the whole run with a C-level dump: say what is missing."""
    # pytest-xvfb has set DISPLAY by now when Xvfb is installed
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    gui = [item for item in items if "_qt" in item.path.parts]
    if gui and sys.platform.startswith("linux") and not has_display:
        pytest.exit(
            f"{len(gui)} GUI tests need a display and there is none (is Xvfb installed?). "
            "'make test' installs what is missing where it may; "
            "'bash scripts/system-deps.sh test' names the packages.",
            returncode=4,
        )
