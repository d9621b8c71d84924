"""Where the chunk tasks run: dask's local threads, or a dask.distributed cluster.

A runner shares the model with its workers, runs a list of tasks while yielding
how many have finished, and stops the tasks under way when its generator is closed;
:func:`run_phase` turns that count into progress events.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Generator
from typing import Any

import dask

from ..errors import NapariUnetError
from ..events import ChunkProgress

__all__ = ["DistributedRunner", "RunCancelled", "ThreadRunner", "make_runner", "run_phase"]


class RunCancelled(Exception):
    """Raised inside dask's threaded scheduler before each task once the run was cancelled."""


class ThreadRunner:
    """dask's local threaded scheduler, with progress and cancellation."""

    def __init__(self, num_workers: int | None) -> None:
        self.num_workers = num_workers

    def share(self, obj: Any) -> Any:
        """``obj`` as the tasks receive it (the object itself: threads share memory)."""
        return obj

    def statistics_scheduler(self) -> Any:
        """The dask scheduler for the image statistics."""
        return "threads"

    def run(self, tasks: list, serial: bool = False) -> Generator[int, None, list]:
        """Compute ``tasks`` on a background thread; yields the count done after each one."""
        keys = {t.key for t in tasks}
        events: queue.SimpleQueue = queue.SimpleQueue()
        cancel = threading.Event()
        box: dict[str, Any] = {}

        def pretask(key, dsk, state):
            if cancel.is_set():
                raise RunCancelled

        def posttask(key, result, dsk, state, worker_id):
            if key in keys:
                events.put(1)

        def work():
            try:
                box["result"] = dask.compute(
                    *tasks,
                    scheduler="threads",
                    num_workers=1 if serial else self.num_workers,
                    callbacks=[(None, None, pretask, posttask, None)],
                )
            except BaseException as exc:  # handed to the generator's thread
                box["error"] = exc
            finally:
                events.put(None)

        thread = threading.Thread(target=work, name="napari-unet-dask", daemon=True)
        thread.start()
        done = 0
        try:
            while events.get() is not None:
                done += 1
                yield done
        finally:
            cancel.set()  # a no-op once finished; stops a closed generator's run
            thread.join()
        if "error" in box:
            raise box["error"]
        return list(box["result"])

    def close(self) -> None:
        """Nothing to release."""


class DistributedRunner:
    """A dask.distributed cluster: the model is installed on every worker once."""

    def __init__(self, client: Any, owned: bool, retries: int) -> None:
        self.client, self.owned, self.retries = client, owned, retries
        self._plugins: list[str] = []

    def share(self, obj: Any) -> Any:
        """``obj`` (a SharedModel) sent once to every worker; tasks get a handle to it."""
        from .cluster_model import ClusterModel, ModelPlugin  # needs distributed

        name = f"napari-unet-model-{uuid.uuid4().hex[:12]}"
        try:
            self.client.register_plugin(ModelPlugin(obj), name=name)
        except Exception as exc:  # a worker could not unpickle or keep it
            raise NapariUnetError(
                f"The dask workers could not receive the model ({exc})."
            ) from None
        self._plugins.append(name)
        return ClusterModel(name)

    def statistics_scheduler(self) -> Any:
        """The dask scheduler for the image statistics: the cluster."""
        return self.client

    def run(self, tasks: list, serial: bool = False) -> Generator[int, None, list]:
        """Compute ``tasks`` on the cluster; yields the count done after each one."""
        from distributed import as_completed  # optional dependency

        futures = self.client.compute(tasks, retries=self.retries)
        try:
            done = 0
            for fut in as_completed(futures):
                if fut.status == "error":
                    fut.result()  # raises the task's exception here
                done += 1
                yield done
            return self.client.gather(futures)
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        """Take the model off the workers; close the client if this run opened it."""
        try:
            for name in self._plugins:
                self.client.unregister_worker_plugin(name)
        except Exception:  # noqa: BLE001 - a lost cluster has nothing left to free
            pass
        finally:
            self._plugins.clear()
            if self.owned:
                self.client.close()


def make_runner(
    scheduler: Any, num_workers: int | None, retries: int
) -> ThreadRunner | DistributedRunner:
    """The runner for ``scheduler``: None/"threads", a Client, or a scheduler address."""
    if scheduler is None or scheduler == "threads":
        return ThreadRunner(num_workers)
    try:
        import distributed  # optional dependency
    except ImportError:
        raise NapariUnetError(
            "Running on a dask cluster needs the 'distributed' package (pip install distributed)."
        ) from None
    if isinstance(scheduler, distributed.Client):
        return DistributedRunner(scheduler, owned=False, retries=retries)
    if isinstance(scheduler, str):
        try:
            client = distributed.Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise NapariUnetError(
                f"Could not reach the dask scheduler at {scheduler} ({exc})."
            ) from None
        return DistributedRunner(client, owned=True, retries=retries)
    raise NapariUnetError(
        f"The scheduler must be None, 'threads', a dask.distributed Client or a scheduler "
        f"address; got {scheduler!r}."
    )


def run_phase(
    runner: ThreadRunner | DistributedRunner,
    tasks: list,
    name: str,
    done: int,
    total: int,
    serial: bool = False,
) -> Generator[ChunkProgress, None, list]:
    """Run one pass: an event as it starts, then one per finished chunk; returns the results."""
    yield ChunkProgress(name, done, total)
    gen = runner.run(tasks, serial=serial)
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            yield ChunkProgress(name, done + step, total)
    finally:
        gen.close()  # a closed caller cancels the pass
