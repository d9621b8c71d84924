"""The GUI thread never waits on training or prediction (measured, not assumed)."""

import gc
import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_unet._qt.session import session_for, state_for
from napari_unet.training import TrainConfig

# Goal: 50 ms while training or predicting. The bound below fails on a real freeze but
# not on noise of a shared machine; the figures are printed and kept in docs/benchmarks.md.
# On a machine so loaded that any worker thread stalls the GUI thread (188-193 ms while
# training at load average 12-15 on 2 cores, against 20 ms for the idle loop: a thread
# that holds the GIL and is descheduled keeps the GUI waiting), the bound is the stall
# beside a plain worker thread of small torch steps, measured in the same test, plus the
# goal: the plugin may not add more than the goal to what any threaded worker costs there.
COMPUTE_FREEZE_MS = 150
GOAL_MS = 50
IDLE_WINDOW_MS = 3000
# Showing the result is napari's own layer creation and drawing (221-565 ms measured on a
# shared 2-core machine, so no fixed bound holds): it is compared with napari adding the
# same layers and a notification in the same test (SHOWINGS below), and may add this much
# of the plugin's own work (the status line, the layer selection kept), or, on a machine so
# loaded that napari's part takes more than 200 ms, half of napari's time (the plugin's part
# slows with it: 1036 ms against napari's 684 at load average 11 on 2 cores). Work that
# belongs in the worker (labels, a copy of the result) costs more than either.
DISPLAY_EXTRA_MS = 100
DISPLAY_EXTRA_SHARE = 0.5
# Either side now and then takes 120-150 ms more on an idle machine (napari alone: 209 ms,
# then 370; the plugin 203, then 361, in one process; no garbage collection in the window),
# so each side is the fastest of this many showings, the plugin's each adding its layers
# anew: work that is there every time (a copy, labels on the GUI thread) still counts.
SHOWINGS = 3

pytestmark = pytest.mark.timing  # `make test` runs these with nothing beside them
# Adding a training-set entry is one call on the GUI thread (no layer is added)
ADD_ENTRY_FREEZE_MS = 600


class TickRecorder:
    """Records Qt event-loop ticks of a 5 ms timer, with named marks."""

    def __init__(self):
        self.times, self.marks = [], {}
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def __enter__(self):
        self.timer.start()
        self.marks["start"] = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        self.marks["end"] = time.perf_counter()

    def mark(self, name):
        self.marks[name] = time.perf_counter()

    def longest_gap_ms(self, since="start", until="end"):
        t = np.array([self.marks[since], *self.times, self.marks[until]])
        t = t[(t >= self.marks[since]) & (t <= self.marks[until])]
        return 1000 * float(np.max(np.diff(t)))


def idle_gap_ms(qtbot, ms=IDLE_WINDOW_MS):
    """Longest gap of the idle event loop over ``ms``: this machine's own stalls, now."""
    with TickRecorder() as ticks:
        qtbot.wait(ms)
    return ticks.longest_gap_ms()


def worker_gap_ms(qtbot, ms=IDLE_WINDOW_MS):
    """Longest gap of the event loop beside a thread doing small torch steps for ``ms``."""
    import threading

    import torch

    stop = threading.Event()

    def work():
        x = torch.randn(64, 64)
        while not stop.is_set():
            x = torch.tanh(x @ x)

    thread = threading.Thread(target=work, daemon=True)
    with TickRecorder() as ticks:
        thread.start()
        qtbot.wait(ms)
        stop.set()
        thread.join()
    return ticks.longest_gap_ms()


def compute_bound_ms(idle_ms):
    """The freeze bound for work in a worker: fixed, or the machine's own stall + the goal."""
    return max(COMPUTE_FREEZE_MS, idle_ms + GOAL_MS)


def test_longest_event_loop_gap(make_napari_viewer, qtbot, cells, capsys):
    image, truth = cells
    big = np.tile(image, (6, 6))  # 576 x 768
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    viewer.add_image(big, name="big")
    viewer.add_labels(truth, name="truth")
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    predict = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]
    # the default path: fine-tune the bundled model (width 16, depth 5, 380-pixel tiles),
    # read in the worker, for a few steps
    train._defaults = TrainConfig(steps=4, time_limit=None, validate_every=2)
    train._steps.value = 4
    train._time.value = 0
    assert train._start.value == "bundled"
    train._refresh.value = False
    train._annotation.value = viewer.layers["truth"]
    # the docks load kernels and torch's optimizer stack when they open; let that finish
    qtbot.waitUntil(lambda: state_for(viewer).is_warm, timeout=60000)
    # choosing the annotation brings the overlay of the area trained on, once: napari
    # creating that layer (~200 ms, the cost the display bound below allows napari) is not
    # the training's stall, so it comes before the timing
    scope = train.scope
    qtbot.waitUntil(lambda: not scope._timer.isActive() and not scope._busy, timeout=30000)
    qtbot.wait(300)
    with TickRecorder() as ticks:
        train.runner.done.connect(lambda *_: ticks.mark("trained"))
        train.fine_tune()
        qtbot.waitUntil(lambda: not train.runner.running, timeout=120000)
    training_gap = ticks.longest_gap_ms(until="trained")
    assert session_for(viewer).model is not None
    predict._image.value = viewer.layers["big"]
    # napari's first magma layer costs it once (its shaders): neither side pays that below
    _napari_display_gap(
        viewer, qtbot, np.zeros(big.shape, np.float32), np.zeros(big.shape, np.int32)
    )
    prediction_gaps, display_gaps = [], []
    for k in range(SHOWINGS):  # each adds the result layers anew, as the first time
        with TickRecorder() as ticks:
            predict._runner.progressed.connect(
                lambda d, t, ticks=ticks: ticks.mark("computed") if d == t else 0
            )
            predict.segment()
            qtbot.waitUntil(lambda: predict.worker is None, timeout=120000)
        prediction_gaps.append(ticks.longest_gap_ms(until="computed"))
        display_gaps.append(ticks.longest_gap_ms(since="computed"))
        assert "big segmentation" in viewer.layers
        prob, seg = viewer.layers["big probability"].data, viewer.layers["big segmentation"].data
        if k < SHOWINGS - 1:
            for role in ("probability", "segmentation"):
                viewer.layers.remove(f"big {role}")
            qtbot.wait(100)
    napari_gaps = [_napari_display_gap(viewer, qtbot, prob, seg) for _ in range(SHOWINGS)]
    prediction_gap, display_gap, napari_gap = (
        max(prediction_gaps),
        min(display_gaps),
        min(napari_gaps),
    )
    idle = worker_gap_ms(qtbot)
    with capsys.disabled():
        print(
            f"\nlongest GUI gap: training {training_gap:.0f} ms, prediction {prediction_gap:.0f}"
            f" ms (beside a plain worker {idle:.0f} ms), showing the result"
            f" {', '.join(f'{g:.0f}' for g in display_gaps)} ms (fastest {display_gap:.0f});"
            f" napari adding the same layers {', '.join(f'{g:.0f}' for g in napari_gaps)} ms"
            f" (fastest {napari_gap:.0f})"
        )
    assert training_gap < compute_bound_ms(idle)
    assert prediction_gap < compute_bound_ms(idle)
    assert display_gap < napari_gap + max(DISPLAY_EXTRA_MS, DISPLAY_EXTRA_SHARE * napari_gap)


def _napari_display_gap(viewer, qtbot, prob, seg):
    """Longest gap while napari alone adds and draws layers like the result's and notifies."""
    from napari.utils.notifications import show_info

    with TickRecorder() as ticks:
        show_info("napari alone")  # the result's message is a notification too
        added = [
            viewer.add_image(
                prob, colormap="magma", blending="additive", opacity=0.6,
                contrast_limits=(0.0, 1.0),
            ),
            viewer.add_labels(seg, opacity=0.5),
        ]  # fmt: skip
        qtbot.wait(100)  # its drawing, as the result's falls in the result's window
    for layer in added:
        viewer.layers.remove(layer)
    qtbot.wait(100)
    return ticks.longest_gap_ms()


def test_model_dock_save_and_load_leave_the_gui_free(make_napari_viewer, qtbot, tmp_path, capsys):
    viewer = make_napari_viewer()
    model = viewer.window.add_plugin_dock_widget("napari-unet", "Model")[1]
    model.use_bundled()  # width 16, depth 5: 7.8 MB of weights
    qtbot.waitUntil(lambda: not model.busy and session_for(viewer).model is not None, timeout=30000)
    path = tmp_path / "copy.safetensors"
    model._save_path.value = path
    with TickRecorder() as save_ticks:
        model.save()
        qtbot.waitUntil(lambda: not model.busy, timeout=30000)
    model._load_path.value = path
    with TickRecorder() as load_ticks:
        model.load()
        qtbot.waitUntil(lambda: not model.busy, timeout=30000)
    assert path.is_file() and session_for(viewer).source == "copy.safetensors"
    save_gap, load_gap = save_ticks.longest_gap_ms(), load_ticks.longest_gap_ms()
    idle = worker_gap_ms(qtbot)
    with capsys.disabled():
        print(
            f"\nlongest GUI gap: model save {save_gap:.0f} ms, load {load_gap:.0f} ms"
            f" (beside a plain worker {idle:.0f} ms)"
        )
    assert save_gap < compute_bound_ms(idle) and load_gap < compute_bound_ms(idle)


def _paint_gap(viewer, qtbot, layer, strokes=20):
    """Longest event-loop gap while ``strokes`` brush strokes land, one per 30 ms."""
    with TickRecorder() as ticks:
        for i in range(strokes):
            QTimer.singleShot(30 * i, lambda i=i: layer.paint((200 + 150 * i, 300), i + 1))
        qtbot.wait(30 * strokes + 300)
    return ticks.longest_gap_ms()


def test_painting_a_big_annotation_stays_smooth(make_napari_viewer, qtbot, capsys):
    """4096 x 4096: the dock's part of a stroke (count, next id) must not scan the image."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4096, 4096), np.uint8), name="big")
    plain = viewer.add_labels(np.zeros((4096, 4096), np.uint32), name="napari alone")
    qtbot.wait(300)
    napari_gap = _paint_gap(viewer, qtbot, plain)
    viewer.layers.remove(plain)
    annotate = viewer.window.add_plugin_dock_widget("napari-unet", "Annotate")[1]
    qtbot.waitUntil(lambda: state_for(viewer).is_warm, timeout=60000)
    annotate.new_annotation()
    ann = viewer.layers["big annotation"]
    qtbot.waitUntil(lambda: not annotate.counter.busy, timeout=30000)
    qtbot.wait(300)
    ours_gap = _paint_gap(viewer, qtbot, ann)
    qtbot.waitUntil(lambda: annotate._count.value == "20", timeout=5000)
    with capsys.disabled():
        print(
            f"\nlongest GUI gap painting 4096^2: napari alone {napari_gap:.0f} ms, "
            f"with the Annotate dock {ours_gap:.0f} ms"
        )
    # napari's own redraw of a 4096^2 layer is the floor; the dock adds (almost) nothing
    assert ours_gap < max(50.0, napari_gap) + 50.0


# The goal for an autosave; the write itself (copy, compress, rename) runs in a worker.
# As above, on a machine whose idle loop stalls longer, that stall is the bound.
AUTOSAVE_FREEZE_MS = 50


def test_autosave_of_a_big_annotation_leaves_the_gui_free(
    make_napari_viewer, qtbot, tmp_path, capsys, monkeypatch
):
    """4096 x 4096 uint32 (64 MB): the GUI thread only hands references to the worker.

    The stall a copy on the GUI thread would add (14 ms idle, 30 ms loaded) is below what
    a timing bound on a shared machine can tell apart, so the mechanism is checked too:
    every write runs in a worker and receives the layer's own array, not a copy of it.
    """
    import threading

    import tifffile

    import napari_unet._qt.autosave as autosave
    from napari_unet._qt.project_session import project_for
    from napari_unet.project import load_annotation

    writes = []  # (on the GUI thread?, the layer's own array?) for every write

    def spy(project, lock, name, info, labels_ref, *rest):
        writes.append((threading.current_thread() is threading.main_thread(), labels_ref))
        return write_entry(project, lock, name, info, labels_ref, *rest)

    write_entry = autosave.write_entry
    monkeypatch.setattr(autosave, "write_entry", spy)

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((4096, 4096), np.uint8))
    viewer = make_napari_viewer(show=True)
    image = viewer.open(str(path))[0]
    labels = viewer.add_labels(np.zeros((4096, 4096), np.uint32), name="big annotation")
    session = project_for(viewer)
    session.track(None, image, labels)
    labels.paint((100, 100), 1)
    qtbot.waitUntil(lambda: session.last_saved is not None and not session.pending, timeout=30000)
    gaps = []
    for k in range(3):
        labels.paint((300 + 200 * k, 300), k + 2)
        qtbot.wait(300)  # napari's own redraw of the stroke is not the autosave's
        before = session.last_saved
        with TickRecorder() as ticks:  # the 2 s timer fires, the worker writes
            qtbot.waitUntil(
                lambda b=before: session.last_saved != b and not session.pending, timeout=30000
            )
        gaps.append(ticks.longest_gap_ms())
    saved = load_annotation(tmp_path / "big.napari-unet" / "entries" / "big" / "labels.tif")
    np.testing.assert_array_equal(saved, labels.data)
    assert len(writes) >= 4
    assert not any(on_gui for on_gui, _ in writes)
    assert all(ref is labels.data for _, ref in writes)  # handed over, never copied first
    copies = []
    for _ in range(5):  # what copying on the GUI thread would cost instead
        t = time.perf_counter()
        np.array(labels.data, copy=True)
        copies.append(1000 * (time.perf_counter() - t))
    idles = [idle_gap_ms(qtbot, 2000) for _ in range(3)]  # as long as an autosave's window
    with capsys.disabled():
        print(
            f"\nlongest GUI gap while autosaving 4096^2: {', '.join(f'{g:.0f}' for g in gaps)} ms"
            f" (median {np.median(gaps):.0f}); idle loop {', '.join(f'{g:.0f}' for g in idles)}"
            f" ms; a copy on the GUI thread would take {np.median(copies):.0f} ms"
        )
    assert np.median(gaps) < max(AUTOSAVE_FREEZE_MS, np.median(idles))
    assert max(gaps) < compute_bound_ms(max(idles))


def test_training_set_entries_of_4096_images_never_stall(make_napari_viewer, qtbot, capsys):
    """Adding a 4096 x 4096 entry with a region, and painting into it, stay off the GUI thread.

    (A region's mask and the annotated planes are counted in a worker: on the GUI
    thread they took seconds per stroke.)
    """
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4096, 4096), np.uint8), name="big")
    labels = viewer.add_labels(np.zeros((4096, 4096), np.int32), name="big annotation")
    region = viewer.add_shapes([np.array([[0, 0], [0, 3000], [3000, 3000], [3000, 0]])])
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._image.value, train._annotation.value, train._region.value = image, labels, region
    panel = train.training_set
    gc.collect()  # a collection of what earlier tests left is not this dock's stall
    t = time.perf_counter()
    train.add_to_set()
    add_ms = 1000 * (time.perf_counter() - t)
    qtbot.waitUntil(lambda: panel.entries[0].planes == (1, 1), timeout=30000)
    strokes = []
    for k in range(3):
        labels.paint((200 + 300 * k, 200), k + 1)  # napari's paint, then our handlers
        t = time.perf_counter()
        panel._on_count(panel.entries[0])  # what a stroke's count change runs
        strokes.append(1000 * (time.perf_counter() - t))
    with capsys.disabled():
        print(f"\nAdd of a 4096^2 entry {add_ms:.0f} ms; per stroke {max(strokes):.1f} ms")
    # the cell count reads the annotation in a worker (CellCounter); Add once copied it on
    # the GUI thread (tens of ms, hundreds when the pages were first touched)
    assert add_ms < ADD_ENTRY_FREEZE_MS and max(strokes) < 50


def test_painting_stays_fluent_while_live(
    make_napari_viewer, qtbot, cells, paint, fast_config, capsys
):
    """Live mode (issue 28): stroke latency and the event loop's longest gap.

    References in the same test: the same strokes with live mode off, and the longest
    gap beside a plain thread of small torch steps. Live training runs on all cores
    but one (the GUI's), so a stroke stays a box sent, never a copy or a wait.
    """
    image, truth = cells
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    ann = viewer.add_labels(np.zeros_like(truth), name="mine")
    paint(ann, truth, [1, 2, 3, 4])
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Train")[1]
    train._defaults = fast_config
    train._start.value = "scratch"
    train._refresh.value = False
    train.live.preview_every = 0.5  # previews (prediction + labels) inside the window too
    train._annotation.value = ann

    def steps():
        live = train.live.live
        return 0 if live is None else live.trainer.step

    def strokes(ids):
        times = []
        for i in ids:
            coords = np.argwhere(truth == i)
            t = time.perf_counter()
            ann.data_setitem(tuple(coords.T), int(i))
            times.append(time.perf_counter() - t)
            qtbot.wait(50)
        return 1000 * float(np.median(times))

    off_ms = strokes([5, 6, 7])
    reference = worker_gap_ms(qtbot)
    train.live.toggle.value = True
    qtbot.waitUntil(lambda: steps() >= 2, timeout=60000)
    before = steps()
    with TickRecorder() as ticks:
        on_ms = strokes([8, 9, 10, 11, 12, 13])
        qtbot.wait(1500)
    trained = steps() - before
    gap = ticks.longest_gap_ms()
    train.live.toggle.value = False
    qtbot.waitUntil(lambda: not train.live.running, timeout=60000)
    with capsys.disabled():
        print(
            f"\nlive: stroke {on_ms:.1f} ms (off {off_ms:.1f}); longest GUI gap {gap:.0f} ms "
            f"(a plain torch thread: {reference:.0f} ms); {trained} steps meanwhile"
        )
    assert trained > 0  # live training ran while the strokes were timed
    assert gap <= compute_bound_ms(reference)
    assert on_ms <= off_ms + GOAL_MS  # a stroke sends a box, never a copy of the layer
