"""Workers stop at their next yield; loading with no point to stop at does not hold a close."""

import threading
import time

import pytest

from napari_unet import loading
from napari_unet._qt.workers import WorkerGroup, _in_own_thread, warm_up_steps


def test_own_thread_step_yields_while_the_work_runs_and_raises_its_error():
    release = threading.Event()
    gen = _in_own_thread(lambda: release.wait(10), poll_s=0.01)
    next(gen)  # the work is under way, the generator is back at once
    loaders = [t for t in threading.enumerate() if t.name == "napari-unet loading"]
    assert loaders
    release.set()
    with pytest.raises(StopIteration):
        while True:
            next(gen)

    def broken() -> None:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        for _ in _in_own_thread(broken, poll_s=0.01):
            pass


def test_closing_during_the_torch_import_does_not_wait_for_it(qtbot, monkeypatch):
    # A stand-in for the import of torch's compiler stack: seconds with no yield.
    started, release = threading.Event(), threading.Event()

    def slow_import() -> None:
        started.set()
        release.wait(30)

    monkeypatch.setattr(loading, "load_torch", slow_import)
    group = WorkerGroup()
    group.start_generator(warm_up_steps())
    assert started.wait(60)  # the numba step is done, the import is running
    began = time.perf_counter()
    ended = group.stop_all(timeout=10)
    waited = time.perf_counter() - began
    still_importing = not release.is_set()
    release.set()
    assert ended
    assert still_importing
    assert waited < 1.0, f"the close waited {waited:.2f} s for the import"


def test_a_close_during_the_torch_import_skips_the_optimizer_imports(qtbot, monkeypatch):
    # The process exit waits for an import under way (not a daemon thread): a close during
    # torch's import must not start the second, longer one (torch's compiler stack).
    started, release = threading.Event(), threading.Event()
    second = []

    def slow_import() -> None:
        started.set()
        release.wait(30)

    monkeypatch.setattr(loading, "load_torch", slow_import)
    monkeypatch.setattr(loading, "load_optimizer_stack", lambda: second.append(1))
    group = WorkerGroup()
    group.start_generator(warm_up_steps())
    assert started.wait(60)
    assert group.stop_all(timeout=10)
    release.set()
    for thread in threading.enumerate():
        if thread.name == "napari-unet loading":
            thread.join(10)
    qtbot.wait(200)
    assert second == []
    # without a close, both run
    monkeypatch.setattr(loading, "load_torch", lambda: None)
    for _ in warm_up_steps():
        pass
    assert second == [1]
