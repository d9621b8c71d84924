"""Closing napari at any moment ends the process cleanly and keeps the work done.

Each scenario runs in a fresh process (a crash at close would kill pytest itself):
exit status 0, no traceback, no abort, no error on the way out.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_unet import load_model

SCRIPT = Path(__file__).with_name("close_scenario.py")
# napari alone exits in about 1-2 s here; the goal is under 2 s more with the
# plugin (measured in benchmarks/bench_gui.py). This bound catches a real hang (the
# old warm-up made it 5-6 s more), not the noise of a shared machine: each side is the
# faster of its runs (two per scenario; napari alone once before the first scenario and
# once within each; load only ever adds time, a hang is there every run; one run of the
# batch case ranged 2.1-2.9 s extra). The plugin's part of an exit is CPU
# work (finishing a step, joining workers) that a loaded machine slows as much as napari's
# own. The idle bound, 4 s, is 2-4 times napari's own 1-2 s; on a machine so loaded that
# napari alone takes longer (2.3-4.5 s at load average 11 on 2 cores, where the plugin's
# part took 3.9-4.6 s), it keeps that proportion: 3 times napari's time.
EXTRA_EXIT_S = 4.0
LOAD_SCALED = 3.0
RUNS = 2


def _run(scenario, tmp_path):
    env = {**os.environ, "NAPARI_UNET_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), scenario],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    ended = time.time()
    out = proc.stdout + proc.stderr
    closing = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("closing")]
    return proc, out, (ended - closing[0]) if closing else None


def _clean(proc, out):
    assert proc.returncode == 0, out[-3000:]
    for bad in ("Traceback", "Aborted", "ERROR", "has been deleted", "Fatal"):
        assert bad not in out, out[-3000:]


@pytest.fixture(scope="module")
def plain_exits(tmp_path_factory):
    """napari alone, closed the same way: its exit times, shared by the scenarios below.

    Each scenario compares with the fastest of these runs, so a run added here can only
    make the check stricter. One more is added after each scenario's first run, so
    the reference keeps being measured between scenario runs (a burst of load falls on
    both sides alike)."""
    folder = tmp_path_factory.mktemp("plain")
    exits = []

    def run_plain() -> None:
        plain, plain_out, plain_s = _run("plain", folder / f"plain{len(exits)}")
        assert plain.returncode == 0 and plain_s is not None, plain_out[-3000:]
        exits.append(plain_s)

    run_plain()
    return exits, run_plain


@pytest.mark.timing
@pytest.mark.parametrize("scenario", ["docked", "weightmap", "prediction", "batch"])
def test_close_while_working(scenario, tmp_path, plain_exits):
    plains, run_plain = plain_exits
    exits = []
    for k in range(RUNS):
        proc, out, exit_s = _run(scenario, tmp_path / f"{scenario}{k}")
        _clean(proc, out)
        assert exit_s is not None, out[-3000:]
        exits.append(exit_s)
        if k == 0:
            run_plain()  # interleaved: the reference is measured between the two runs
    exit_s, plain_s = min(exits), min(plains)
    print(
        f"{scenario}: exit {', '.join(f'{e:.2f}' for e in exits)} s after close;"
        f" napari alone {', '.join(f'{p:.2f}' for p in plains)} s"
    )
    bound = max(EXTRA_EXIT_S, LOAD_SCALED * plain_s)
    assert exit_s - plain_s < bound, f"exit {exit_s:.1f} s vs {plain_s:.1f} s alone"


def test_close_during_training_keeps_the_model(tmp_path):
    proc, out, _ = _run("training", tmp_path)
    _clean(proc, out)
    saved = sorted((tmp_path / "interrupted").glob("*.safetensors"))
    assert len(saved) == 1, out[-3000:]
    assert f"is saved to {saved[0]}" in out  # and the user is told where
    model = load_model(saved[0])
    assert model.metadata["training"]["steps"] >= 2
