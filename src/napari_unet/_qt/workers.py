"""Thread workers: started by the docks, stopped and waited for when a dock or napari closes.

A :class:`WorkerGroup` starts the workers of one owner (a dock, a viewer's warm-up)
and can stop them all: generator workers stop at their next ``yield``, work that
has not started yet never starts, and the caller waits (bounded) for the rest.
Without that, a worker that finishes after napari closed emits on deleted Qt
objects and the process aborts.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from napari.qt.threading import FunctionWorker, GeneratorWorker

from ..errors import NapariUnetError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator


class ComputationError(Exception):
    """A RuntimeError raised in a worker, re-raised under another type.

    superqt takes a worker's RuntimeError for "the worker was deleted" and then
    emits neither ``errored`` nor ``finished``; torch reports real failures (out
    of memory, for one) as RuntimeError, so they must travel as something else.
    """


class UserProblem:
    """What a worker returns instead of raising when the input is at fault."""

    def __init__(self, error: Exception) -> None:
        self.message = str(error)


class Cancelled:
    """What a cooperatively cancelled worker returns."""


def report_problems(gen: Generator) -> Generator:
    """Run a core generator in a worker, passing on its events and its result.

    A :class:`~napari_unet.errors.NapariUnetError` (bad input, in plain words)
    comes back as a :class:`UserProblem` so the dock can show its sentence; any
    other exception is a bug and goes to napari's error reporting with its traceback.
    """
    try:
        return (yield from gen)
    except NapariUnetError as exc:
        return UserProblem(exc)
    except RuntimeError as exc:
        raise ComputationError(str(exc)) from exc


def until_cancelled(gen: Generator, flag: threading.Event) -> Generator:
    """Pass on ``gen``'s events until ``flag`` is set, then close it *in this thread*.

    For generators that run work in threads of their own (dask): closing them
    here waits for that work to stop, so the worker finishes only once nothing
    writes any more, and a new run cannot meet the old one's writes.
    """
    try:
        while True:
            if flag.is_set():
                return Cancelled()
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield event
    finally:
        gen.close()


def call_safely(func: Callable, *args: Any) -> Any:
    """Call ``func`` with RuntimeError re-raised as :class:`ComputationError`."""
    try:
        return func(*args)
    except RuntimeError as exc:
        raise ComputationError(str(exc)) from exc


class _Tracked:
    """Knows whether its work started and when it ended; can be called off before it starts."""

    def _init_tracking(self) -> None:
        self.ended = threading.Event()  # the work ended and the worker sent its last signal
        self._lock = threading.Lock()
        self._began = False
        self._called_off = False

    def run(self) -> None:  # in the pool's thread
        with self._lock:
            if self._called_off:  # stopped before it started: do nothing, say nothing
                self.ended.set()
                return
            self._began = True
        try:
            super().run()
        except RuntimeError:  # napari closed and deleted our signals: nobody listens any more
            pass
        finally:
            self.ended.set()

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            gen = getattr(self, "_gen", None)
            if gen is not None:
                gen.close()  # a generator stopped early cleans up here, in its thread

    def call_off(self, *, interrupt: bool = True) -> bool:
        """Ask the work to stop; True when it had not started (and now never will).

        ``interrupt=False`` leaves work that has started alone (it stops on its own).
        """
        with self._lock:
            if not self._began:
                self._called_off = True
                self.ended.set()
                discard = getattr(type(self), "_set_discard", None)
                if discard is not None:  # superqt keeps started workers until they finish
                    discard(self)
                return True
        if interrupt:
            self.quit()
        return False

    def wait_until_ended(self, timeout: float) -> bool:
        """Wait until the work has ended and the worker emitted its last signals."""
        return self.ended.wait(timeout)


class TrackedGeneratorWorker(_Tracked, GeneratorWorker):
    """A napari generator worker that :class:`WorkerGroup` can stop and wait for."""

    def __init__(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self._init_tracking()


class TrackedFunctionWorker(_Tracked, FunctionWorker):
    """A napari function worker that :class:`WorkerGroup` can call off before it starts."""

    def __init__(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self._init_tracking()


class WorkerGroup:
    """The workers one owner started; :meth:`stop_all` stops and waits for them.

    Workers report errors through ``errored`` (never re-raised); a generator
    runs under :func:`report_problems`, a function under :func:`call_safely`.
    """

    def __init__(self) -> None:
        self._workers: list[_Tracked] = []
        self.closed = False

    def start_generator(self, gen: Generator, **connections: Callable) -> TrackedGeneratorWorker:
        """Start a worker that runs the generator ``gen`` (see :func:`report_problems`)."""
        worker = TrackedGeneratorWorker(report_problems, gen)
        return self._start(worker, connections)

    def start_function(self, func: Callable, *args: Any, **connections: Callable):
        """Start a worker that calls ``func(*args)`` (see :func:`call_safely`)."""
        worker = TrackedFunctionWorker(call_safely, func, *args)
        return self._start(worker, connections)

    def _start(self, worker: _Tracked, connections: dict[str, Callable]) -> Any:
        for signal, slot in connections.items():
            getattr(worker, signal).connect(self._unless_closed(slot))
        worker.finished.connect(lambda: self._forget(worker))
        self._workers.append(worker)
        if self.closed:  # the owner is closing: nothing new starts
            worker.call_off()
        else:
            worker.start()
        return worker

    def _unless_closed(self, slot: Callable) -> Callable:
        """``slot``, dropped once the owner closed (its widgets may be gone by then)."""

        def call(*args: Any) -> None:
            if not self.closed:
                slot(*args)

        return call

    def _forget(self, worker: _Tracked) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    @property
    def pending(self) -> list[Any]:
        """Workers whose ``finished`` signal has not reached the GUI thread yet."""
        return list(self._workers)

    def stop_all(self, timeout: float = 5.0, *, interrupt: bool = True) -> bool:
        """Stop every worker and wait for them; True when all ended.

        Work not yet started never starts. ``interrupt`` stops started generator
        workers at their next ``yield``; without it they must end on their own
        (the caller has asked them to, e.g. a trainer that stops after its step).
        """
        self.closed = True
        for worker in list(self._workers):
            if worker.call_off(interrupt=interrupt):
                self._forget(worker)  # it never runs, so never says it finished
        deadline = time.monotonic() + timeout
        ended = True
        for worker in list(self._workers):
            ended &= worker.wait_until_ended(max(0.0, deadline - time.monotonic()))
        return ended


def warm_up_steps() -> Generator[None, None, None]:
    """The one-time loading (numba kernels, torch, its optimizer imports), in steps.

    Each ``yield`` is a point where closing napari stops it, so a quick close waits
    for one step, not all of them. The imports cannot be split into steps, so they
    run in a thread of their own that a close does not wait for (see
    :func:`_in_own_thread`).
    """
    from ..weightmap import warm_up

    yield
    warm_up()
    yield
    from .. import loading

    yield from _in_own_thread(loading.load_torch)
    yield  # closed during torch's import, the exit waits for it but not for the next one
    yield from _in_own_thread(loading.load_optimizer_stack)
    from ..device import select_device
    from ..precision import start_probe

    start_probe(select_device())  # "Fast" knows its answer by the first Segment (own thread)


def _in_own_thread(func: Callable[[], object], poll_s: float = 0.05) -> Generator[None, None, None]:
    """Run ``func`` in a thread of its own, yielding every ``poll_s`` until it ends.

    For work with no point to stop at (a module import takes seconds and cannot
    be interrupted): the worker running this generator stops at its next yield,
    so napari's window closes without waiting for the import; the interpreter's
    exit still waits for it (see :mod:`napari_unet.loading`). Its exception is
    raised here.
    """
    from ..loading import BackgroundTask

    task = BackgroundTask(func)
    while not task.wait(poll_s):
        yield
    task.raise_error()
