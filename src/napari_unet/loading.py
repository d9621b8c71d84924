"""One-time loading that has no point to stop at (module imports), in a thread of its own.

Importing torch and the compiler stack it loads on an optimizer's first use takes
seconds and cannot be interrupted or split into steps. Run in a thread of its own,
a caller (napari's window closing) can stop waiting for it at any moment.

The thread is not a daemon: the interpreter's exit waits for it. Stopped in the
middle of an import (torch's holds a copy of ``sys.modules`` while it inspects
modules), it would keep every module alive into the interpreter's teardown, where
napari's finalizers then run after the modules they use were cleared ("Exception
ignored" at exit). So the window closes at once and the process ends when the
import has.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundTask:
    """``func`` running in a thread of its own (not a daemon) until it returns or raises.

    Parameters
    ----------
    func : callable
        Called with no arguments in the thread; its return value is dropped.
    name : str
        The thread's name (seen in profilers and tracebacks).
    """

    def __init__(self, func: Callable[[], object], name: str = "napari-unet loading") -> None:
        self._failed: list[BaseException] = []
        self.thread = threading.Thread(
            target=_run, args=(func, self._failed), name=name, daemon=False
        )
        self.thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once ``func`` has returned or raised."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def raise_error(self) -> None:
        """Raise the exception ``func`` raised, if any (call once it is done)."""
        if self._failed:
            raise self._failed[0]


def _run(func: Callable[[], object], failed: list[BaseException]) -> None:
    try:
        func()
    except BaseException as exc:  # noqa: BLE001 (handed to the waiting side)
        failed.append(exc)


def load_torch() -> None:
    """Import torch and the network: the first of the warm-up's two imports (1-2 s)."""
    import torch  # noqa: F401

    from .model import UNet  # noqa: F401


def load_optimizer_stack() -> None:
    """What torch imports on an optimizer's first step: the second import.

    torch imports ``torch._dynamo`` (with sympy: about 2-3 s on two cores) the first
    time an optimizer is made; doing it here spares the first training that wait.
    Apart from :func:`load_torch` so that a close during torch's import skips it.
    """
    import torch

    from .model import UNet

    tiny = UNet(base_channels=1, depth=1)
    opt = torch.optim.Adam(tiny.parameters())
    tiny(torch.zeros(1, 1, 5, 5)).sum().backward()
    opt.step()
