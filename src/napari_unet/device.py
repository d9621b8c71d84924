"""Choice of the torch device: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import NapariUnetError

__all__ = ["select_device", "available_devices"]


def available_devices() -> list[str]:
    """Names of the devices torch can use here, best first (``"cpu"`` always last)."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks CUDA, then MPS, then CPU. Anything else must
        name a device torch can use here (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Returns
    -------
    torch.device
    """
    if device is None or device == "auto":
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise NapariUnetError(
            f"{device!r} is not a device name; use auto, cpu, cuda or mps."
        ) from None
    if dev.type not in available_devices():
        raise NapariUnetError(
            f"Device {device!r} is not available here; available: {', '.join(available_devices())}."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NapariUnetError(f"There is no GPU number {dev.index} on this machine.")
    return dev
