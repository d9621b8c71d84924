"""Numeric precision of forward and backward passes: float32, or bfloat16/float16 autocast.

Whether bfloat16 helps depends on the machine: on a CPU with AMX a tile's forward runs
about 3x faster, on a CPU without native bfloat16 it runs many times slower. So
``"auto"`` decides by measurement: a short probe per machine and device (:func:`probe`)
times a few passes each way and picks the mixed precision only where it is at least
:data:`MIN_SPEEDUP` faster (an x86 CPU whose flags show no bfloat16 instructions, neither
AVX512-BF16 nor AMX, is answered float32 from its flags alone). The result is cached in
the data folder (``precision.json``), keyed by the CPU or GPU name and the torch version, so a new
machine (or torch) probes again and every later run reuses it.

The probe never delays a run by more than :data:`PROBE_WAIT` seconds: it runs in a
background thread, and a run that cannot wait for it uses float32 (the next run uses
the result). ``$NAPARI_UNET_PRECISION`` (``fp32``, ``bf16`` or ``fp16``) pins what
``"auto"`` means, e.g. for reproducible runs.

Every overlap-tile prediction runs its forward inside :func:`autocast` (see
:func:`napari_unet.tiling.tile_probabilities`); softmax and the training loss stay
float32, and weights stay float32 (autocast casts per operation).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NapariUnetError

if TYPE_CHECKING:
    import torch

# torch, the model and the file helpers are imported where they are used: the docks and
# TrainConfig check a precision's name on the GUI thread, where torch must not load.

__all__ = [
    "PRECISIONS",
    "MIN_SPEEDUP",
    "Precision",
    "ProbeResult",
    "check_precision",
    "resolve_precision",
    "autocast",
    "probe",
    "machine_key",
    "start_probe",
]

#: What a caller may ask for. ``"fp16"`` runs only on CUDA.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The mixed precision must be at least this much faster for ``"auto"`` to pick it.
MIN_SPEEDUP = 1.3
#: Seconds a run waits for a probe in progress before going on in float32.
PROBE_WAIT = 1.0
#: The probe's own time limit; what it could not show faster by then stays float32.
PROBE_BUDGET = 4.0
CACHE_FILE = "precision.json"
_MIXED = ("bf16", "fp16")
_WORDS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class Precision:
    """The precision a run uses, and why.

    Attributes
    ----------
    name : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    requested : str
        What the caller asked for (``"auto"`` or a name).
    reason : str
        One sentence: the measurement behind ``"auto"``, or "as asked".
    """

    name: str
    requested: str = "fp32"
    reason: str = "as asked"

    @property
    def mixed(self) -> bool:
        """Whether the forward runs under autocast."""
        return self.name != "fp32"

    def describe(self) -> str:
        """E.g. "Precision: bfloat16 (auto: measured 3.1x faster than float32 here)"."""
        how = "auto: " if self.requested == "auto" else ""
        return f"Precision: {_WORDS[self.name]} ({how}{self.reason})"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` measured on one machine and device.

    Attributes
    ----------
    key : str
        :func:`machine_key` of the device.
    mixed : str
        The mixed precision tried (``"bf16"``, or ``"fp16"`` on a GPU without bf16).
    predict_speedup, train_speedup : float or None
        float32 time over mixed time for a tile forward and a training step (medians);
        None when not measured (the cheap first check already showed no gain).
    seconds : float
        What the probe cost.
    note : str
        Why nothing was timed, when the CPU's flags already answered ("" otherwise).
    """

    key: str
    mixed: str
    predict_speedup: float | None
    train_speedup: float | None
    seconds: float
    note: str = ""

    def choice(self, purpose: str) -> Precision:
        """The precision ``"auto"`` means for ``"predict"`` or ``"train"``, with the reason."""
        s = self.predict_speedup if purpose == "predict" else self.train_speedup
        word = _WORDS[self.mixed]
        if s is not None and s >= MIN_SPEEDUP:
            return Precision(self.mixed, "auto", f"{word} measured {s:.1f}x faster here")
        if self.note:
            why = self.note
        elif s is None:
            why = f"{word} was measured slower than float32 here"
        else:
            why = f"{word} measured only {s:.2f}x of float32's speed here"
        return Precision("fp32", "auto", why)


def _mixed_dtype_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return "bf16"


def check_precision(precision: Any, device: torch.device | str | None = None) -> str:
    """``precision`` checked for ``device`` (None: the name only): one of :data:`PRECISIONS`.

    Raises
    ------
    NapariUnetError
        In one sentence: an unknown name, fp16 off CUDA, bf16 on a GPU without it,
        mixed precision on Apple's MPS.
    """
    if precision is None:
        return "auto"
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise NapariUnetError(
            f"Precision {precision!r} is not one of {', '.join(PRECISIONS)} (fp16 only on CUDA)."
        )
    name = precision.lower()
    if device is None:
        return name
    import torch

    dev = torch.device(device)
    if name == "fp16" and dev.type != "cuda":
        raise NapariUnetError(f"fp16 runs only on a CUDA GPU, not on {dev.type}; use bf16 or fp32.")
    if name == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise NapariUnetError("This GPU has no bfloat16; use fp16 or fp32.")
    if name in _MIXED and dev.type == "mps":
        raise NapariUnetError("Mixed precision on Apple GPUs (mps) is not supported; use fp32.")
    return name


def autocast(precision: str | Precision, device: torch.device | str):
    """The context a forward pass runs in: none for fp32, else ``torch.autocast``."""
    name = str(precision)
    if name == "fp32":
        return nullcontext()
    import torch

    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


# -- the machine and its cache


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key(device: torch.device | str) -> str:
    """What a probe result holds for: device kind and name, and the torch version."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = _cpu_name()
    return f"{dev.type}: {name} | torch {torch.__version__}"


def cache_path() -> Path:
    """The probe cache: ``precision.json`` in :func:`napari_unet.project.folder.data_folder`."""
    from .project.folder import data_folder

    return data_folder() / CACHE_FILE


def _read_cache() -> dict[str, dict]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        return dict(data.get("machines", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _cached(key: str) -> ProbeResult | None:
    entry = _read_cache().get(key)
    try:
        return ProbeResult(**entry) if entry else None
    except TypeError:  # an older or damaged entry: probe again
        return None


def _store(result: ProbeResult) -> None:
    """Add ``result`` to the cache (atomically); an unwritable folder only costs a new probe."""
    from .fileio import atomic_write

    machines = _read_cache()
    machines[result.key] = asdict(result)
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_path(), "w") as f:
            json.dump({"version": 1, "machines": machines}, f, indent=1)
    except (OSError, NapariUnetError):
        pass


# -- the probe


def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    import torch

    def timed(fn: Callable[[], Any]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    return timed


def _compare(
    run: Callable[[str], Any], mixed: str, timed, pairs: int, deadline: float
) -> float | None:
    """float32 time over mixed time: medians of ``pairs`` interleaved passes, after a warm-up.

    None as soon as the mixed precision is clearly slower, or at the deadline when it is
    slower so far.
    """
    timed(lambda: run("fp32"))
    timed(lambda: run(mixed))
    t32, tmx = [], []
    for _ in range(pairs):
        t32.append(timed(lambda: run("fp32")))
        tmx.append(timed(lambda: run(mixed)))
        if tmx[-1] > 1.5 * t32[-1] or time.perf_counter() > deadline:
            return None if tmx[-1] > t32[-1] else min(t32) / min(tmx)
    return statistics.median(t32) / statistics.median(tmx)


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _without_bf16_instructions(device: torch.device) -> bool:
    """Whether ``device`` is an x86 CPU that lists neither AVX512-BF16 nor AMX among its flags.

    There bfloat16 is emulated through float32 and only slower (5x to 13x measured), so
    nothing needs timing.
    """
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = _cpu_flags()
    return flags is not None and not flags & {"avx512_bf16", "amx_bf16"}


def probe(
    device: torch.device | str = "cpu", *, budget: float = PROBE_BUDGET, flags: bool = True
) -> ProbeResult:
    """Measure whether mixed precision is faster than float32 on ``device``.

    On an x86 CPU whose flags show no bfloat16 instructions (neither AVX512-BF16 nor
    AMX) the answer is float32 without timing anything (``flags=False`` times anyway).
    Elsewhere, first a cheap check: two convolutions of U-Net size, a few passes each way; when
    the mixed precision is not faster there the probe stops (a fraction of a second).
    Otherwise a few tile forwards of a U-Net with the bundled model's architecture
    (depth 5, 16 base channels, 252 px input) and, if they are :data:`MIN_SPEEDUP`
    faster, a few training steps (forward, weighted loss in float32, backward).

    Parameters
    ----------
    device : torch.device or str
        Where to measure.
    budget : float
        Seconds after which the probe stops; what it has not shown faster is not.
    flags : bool
        Let the CPU's flags answer where they can.

    Returns
    -------
    ProbeResult
    """
    import torch

    dev = torch.device(device)
    mixed = _mixed_dtype_name(dev)
    timed = _timer(dev)
    start = time.perf_counter()
    if flags and _without_bf16_instructions(dev):
        note = "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)"
        seconds = round(time.perf_counter() - start, 3)
        return ProbeResult(machine_key(dev), mixed, None, None, seconds, note)
    deadline = start + budget
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3)
    ).to(dev, memory_format=torch.channels_last)
    x = torch.randn(1, 32, 48, 48, generator=g).to(dev, memory_format=torch.channels_last)

    def conv(p: str) -> None:
        with torch.inference_mode(), autocast(p, dev):
            net(x)

    predict = train = None
    # a GPU's launch overhead hides the gain on so small a layer: there, go straight on
    gate = _compare(conv, mixed, timed, 3, deadline) if dev.type == "cpu" else 1.0
    if gate is not None and gate >= 1.0:
        predict, train = _probe_unet(dev, mixed, timed, g, deadline)
    seconds = time.perf_counter() - start
    return ProbeResult(machine_key(dev), mixed, predict, train, round(seconds, 3))


def _probe_unet(dev, mixed, timed, g, deadline) -> tuple[float | None, float | None]:
    import torch

    from .model import UNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(base_channels=16, depth=5, dropout=0.0)
    net.to(dev, memory_format=torch.channels_last)
    x = torch.randn(1, 1, 252, 252, generator=g).to(dev, memory_format=torch.channels_last)

    def forward(p: str) -> None:
        net.eval()
        with torch.inference_mode(), autocast(p, dev):
            net(x)

    predict = _compare(forward, mixed, timed, 3, deadline)
    if predict is None or predict < MIN_SPEEDUP or time.perf_counter() > deadline:
        return predict, None
    net.train()

    def step(p: str) -> None:
        with autocast(p, dev):
            logits = net(x)
        loss = torch.log_softmax(logits.float(), dim=1)[:, 0].mean()  # float32 loss
        loss.backward()
        net.zero_grad(set_to_none=True)

    return predict, _compare(step, mixed, timed, 2, deadline)


_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_results: dict[str, ProbeResult] = {}  # this process's results, also when the cache is unwritable


def _run_probe(dev: torch.device, key: str) -> None:
    try:
        result = probe(dev)
    except Exception:  # noqa: BLE001 - a probe that fails means float32, never a failed run
        with _lock:  # for this process only: the next one tries again
            _results[key] = ProbeResult(key, _mixed_dtype_name(dev), None, None, 0.0)
        return
    with _lock:
        _results[key] = result
    _store(result)


def start_probe(device: torch.device | str = "cpu") -> threading.Thread | None:
    """Start the probe for ``device`` in a background thread unless it is known or running.

    Returns the thread (to join), or None when a result is already known or
    ``$NAPARI_UNET_PRECISION`` pins what "auto" means (nothing to measure).
    """
    if os.environ.get("NAPARI_UNET_PRECISION", "auto").strip().lower() not in ("", "auto"):
        return None
    import torch

    dev = torch.device(device)
    key = machine_key(dev)
    with _lock:
        if key in _results:
            return None
        cached = _cached(key)
        if cached is not None:
            _results[key] = cached
            return None
        thread = _threads.get(key)
        if thread is None or not thread.is_alive():
            thread = threading.Thread(
                target=_run_probe, args=(dev, key), name="napari-unet precision probe", daemon=True
            )
            _threads[key] = thread
            thread.start()
        return thread


def resolve_precision(
    precision: str | Precision | None,
    device: torch.device | str = "cpu",
    *,
    purpose: str = "predict",
    wait: float = PROBE_WAIT,
) -> Precision:
    """The precision a run on ``device`` uses for ``precision``, with the reason.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}, Precision or None
        None means ``"auto"``. A :class:`Precision` is taken as it is.
    device : torch.device or str
        Where the run happens.
    purpose : {"predict", "train"}
        Which measurement ``"auto"`` follows.
    wait : float
        Seconds to wait for a probe in progress (started here on first use);
        after that the run uses float32 and a later run uses the result.

    Returns
    -------
    Precision
    """
    if isinstance(precision, Precision):
        return precision
    import torch

    dev = torch.device(device)
    name = check_precision(precision, dev)
    if name != "auto":
        return Precision(name, name)
    pinned = os.environ.get("NAPARI_UNET_PRECISION", "").strip()
    if pinned and pinned.lower() != "auto":
        return Precision(check_precision(pinned, dev), "auto", "set by $NAPARI_UNET_PRECISION")
    if dev.type == "mps":
        return Precision("fp32", "auto", "mixed precision is not used on Apple GPUs")
    thread = start_probe(dev)
    if thread is not None:
        thread.join(wait)
    with _lock:
        result = _results.get(machine_key(dev))
    if result is None:
        return Precision("fp32", "auto", "still measuring whether bfloat16 is faster here")
    return result.choice(purpose)
