"""How long opening a dock freezes napari, and how much the plugin adds to closing it.

Run:  .venv/bin/python benchmarks/bench_gui.py [--repeats N]     (needs a display: Xvfb)

Every measurement runs in a fresh process, as a user meets it:

* **Opening a dock**: a plain napari window is shown, the dock is opened (as from the
  Plugins menu), and a 5 ms Qt timer records the event loop for the next 8 s, while the
  one-time loading (torch, numba kernels) runs in its worker. Reported: how long the call
  that opens the dock took, and the longest gap between timer ticks (the longest time the
  window did not respond) over the whole 8 s. Goal: under 200 ms.
* **Closing**: napari with the sample is closed at once; the time from the close until the
  process has exited, with the four docks open (their warm-up still under way) and without
  the plugin (the reference, same run). Goal: under 2 s more than napari alone.

Medians over ``--repeats`` runs; the machine is named in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

DOCKS = ("Annotate", "Train", "Predict", "Model")

OPEN = r"""
import json, sys, time
import napari, numpy as np
from qtpy.QtCore import QTimer
viewer = napari.Viewer(show=True)
ticks = []
timer = QTimer(); timer.setInterval(5)
timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
result = {}
def open_dock():
    t0 = time.perf_counter()
    viewer.window.add_plugin_dock_widget("napari-unet", sys.argv[1])
    result["call_ms"] = 1000 * (time.perf_counter() - t0)
    result["t0"] = t0
    QTimer.singleShot(8000, done)
def done():
    t = np.array([result.pop("t0"), *[x for x in ticks if x >= result.get("t0", 0)]])
    result["longest_gap_ms"] = float(1000 * np.diff(t).max())
    print("RESULT " + json.dumps(result), flush=True)
    viewer.close()
timer.start()
QTimer.singleShot(1500, open_dock)
napari.run()
"""

CLOSE = r"""
import sys, time
import napari
from qtpy.QtCore import QTimer
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-unet", "nuclei")
if sys.argv[1] == "plugin":
    for name in ("Annotate", "Train", "Predict", "Model"):
        viewer.window.add_plugin_dock_widget("napari-unet", name)
def close():
    print(f"CLOSING {time.time()}", flush=True)
    viewer.close()
QTimer.singleShot(0, close)
napari.run()
"""


def _run(code: str, arg: str) -> tuple[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=300
    )
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{arg}: exit status {proc.returncode}\n{proc.stderr[-2000:]}")
    return proc.stdout, ended


def open_dock(name: str) -> dict:
    out, _ = _run(OPEN, name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def close_seconds(which: str) -> float:
    out, ended = _run(CLOSE, which)
    closing = float(next(x for x in out.splitlines() if x.startswith("CLOSING")).split()[1])
    return ended - closing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor()}")
    print("\n| dock | call (ms) | longest freeze in 8 s (ms) |\n|---|---|---|")
    for name in DOCKS:
        runs = [open_dock(name) for _ in range(args.repeats)]
        call = statistics.median(r["call_ms"] for r in runs)
        gap = statistics.median(r["longest_gap_ms"] for r in runs)
        print(f"| {name} | {call:.0f} | {gap:.0f} |", flush=True)
    plain, plugin = [], []
    for _ in range(args.repeats):  # alternate, so load on the machine hits both alike
        plain.append(close_seconds("plain"))
        plugin.append(close_seconds("plugin"))
    p, q = statistics.median(plain), statistics.median(plugin)
    print(
        f"\nclose -> exit: napari alone {p:.2f} s, with the four docks {q:.2f} s "
        f"(+{q - p:.2f} s; goal < 2 s)"
    )


if __name__ == "__main__":
    main()
