"""Faults: a process killed while saving never leaves a broken model file."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from napari_unet import load_model

SAVE_LOOP = """
import sys, torch
from napari_unet import UNet, save_model
torch.manual_seed(0)
model = UNet(base_channels=8, depth=4)
i = 0
while True:
    i += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    save_model(model, sys.argv[1], version=i)
    print(i, flush=True)
"""


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="Unix only: kills with SIGKILL (Windows has no uncatchable kill signal to send)",
)
@pytest.mark.parametrize("delay", [0.3, 0.55, 0.8, 1.1])
def test_killed_during_a_save_loop_leaves_the_last_good_model(tmp_path, delay):
    path = tmp_path / "model.safetensors"
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVE_LOOP, str(path)], stdout=subprocess.PIPE, text=True
    )
    first = proc.stdout.readline()  # the first save has completed
    assert first.strip() == "1"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model = load_model(path)  # never half-written: it loads, whole
    version = model.metadata["version"]
    assert version >= 1
    for p in model.parameters():
        assert torch.all(p == float(version))  # weights and metadata of the same save
    # a killed save can leave its hidden temporary file, never the target itself broken
    leftovers = [f.name for f in tmp_path.iterdir() if f.name != path.name]
    assert all(name.startswith(".model.safetensors.") for name in leftovers)
