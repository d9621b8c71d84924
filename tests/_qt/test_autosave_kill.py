"""A napari killed with SIGKILL loses no stroke that an autosave had written.

Both napari processes run under the test's display; the first paints through the
Labels layer API and is killed right after its last strokes, the second opens the
project from its folder.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

SCRIPT = Path(__file__).with_name("autosave_scenario.py")


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="Unix only: kills napari with SIGKILL (Windows has no uncatchable kill signal to send)",
)
def test_sigkill_keeps_every_autosaved_stroke(tmp_path):
    image = tmp_path / "field.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 255, (256, 256), np.uint8))
    env = {**os.environ, "NAPARI_UNET_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "paint", str(image)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    saved, unsaved, log = [], [], []
    watchdog = threading.Timer(240, proc.kill)  # a hang ends the read below, and the test fails
    watchdog.start()
    try:
        for line in proc.stdout:  # the process keeps running: read until its last strokes
            log.append(line)
            if line.startswith("SAVED "):
                saved += json.loads(line[6:])
            elif line.startswith("PAINTED "):
                unsaved = json.loads(line[8:])
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGKILL)  # no close, no atexit: only what is on disk counts
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert len(saved) == 8 and len(unsaved) == 4, "".join(log)[-3000:]

    out = tmp_path / "restored.npy"
    folder = tmp_path / "field.napari-unet"
    opened = subprocess.run(
        [sys.executable, str(SCRIPT), "open", str(folder), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert "OPENED " in opened.stdout, (opened.stdout + opened.stderr)[-3000:]
    assert json.loads(opened.stdout.split("OPENED ")[1].splitlines()[0]) == ["field"]
    restored = np.load(out)
    assert restored.shape == (256, 256)
    # every stroke before the last autosave is there, with its pixels
    for y, x, label in saved:
        assert restored[y, x] == label, (y, x, label)
    assert set(np.unique(restored)) - {0} >= {label for _, _, label in saved}
