"""What each process that predicts chunks keeps: the model, one inference thread, its heap.

The model travels to dask workers once (:class:`SharedModel`), forward passes run
on one inference thread per process (:func:`run_forward`), and freed heap memory
goes back to the system after each task (:func:`release_memory`).
"""

from __future__ import annotations

import copy
import ctypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..device import select_device
from ..model import UNet

__all__ = ["SharedModel", "release_memory", "run_forward"]


class SharedModel:
    """The network as shipped to dask workers: weights once per worker, never per task.

    On the threaded scheduler it is one private copy, in eval mode, shared by the
    tasks (the caller's model is neither moved nor switched to eval). Pickled, it
    carries the architecture and the weights as numpy arrays; each worker rebuilds
    the network on first use and keeps it.
    """

    def __init__(self, model: UNet | None = None, payload: tuple | None = None) -> None:
        self._source = model
        self._payload = payload
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __reduce__(self):
        if self._payload is None:
            m = self._source
            state = {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
            self._payload = (m.config, state, dict(getattr(m, "metadata", {})))
        return (receive_model, self._payload)

    def get(self, device: Any) -> tuple[UNet, torch.device]:
        """The network on ``device`` (resolved on this worker), built once per process."""
        dev = select_device(device)
        with self._lock:
            model = self._models.get(str(dev))
            if model is None:
                model = self._build()
                model.eval()
                # channels-last lets oneDNN run the narrow convolutions about twice as fast
                model.to(dev, memory_format=torch.channels_last)
                self._models[str(dev)] = model
        return model, dev

    def _build(self) -> UNet:
        if self._source is not None:
            return copy.deepcopy(self._source)
        config, state, metadata = self._payload
        model = UNet.from_config(config)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        model.metadata = metadata
        return model


def receive_model(config: dict, state: dict, metadata: dict) -> SharedModel:
    """Unpickle a :class:`SharedModel` (once per worker: the weights are broadcast once)."""
    return SharedModel(payload=(config, state, metadata))


_malloc_trim: Any = None


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc only; elsewhere a no-op).

    glibc keeps what a thread freed in that thread's arena, so a process whose
    threads took turns with large arrays would hold the sum of their peaks.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_INFERENCE_LOCK = threading.Lock()
_inference_thread: ThreadPoolExecutor | None = None


def run_forward(device: torch.device, work: Callable[[], None]) -> None:
    """Run ``work`` (the forward passes of one chunk) on this process's inference thread.

    torch runs each CPU pass on all its intra-op threads, so two passes at once only
    fight for the cores; and each thread's allocator arena keeps the activations it
    once held, so passes spread over threads multiply the peak memory. One inference
    thread per process avoids both while the task threads keep reading, normalising
    and writing. A GPU is one device too. Dask workers started with one thread per
    core (``OMP_NUM_THREADS=1``) run their passes side by side instead.
    """
    global _inference_thread
    if device.type == "cpu" and torch.get_num_threads() == 1:
        work()
        return
    with _INFERENCE_LOCK:
        if _inference_thread is None:
            _inference_thread = ThreadPoolExecutor(1, thread_name_prefix="napari-unet-inference")
    _inference_thread.submit(work).result()
