"""Model files: safetensors weights with the architecture and metadata in the header.

Loading never unpickles anything, so a model file from a stranger cannot run code.
Saving is atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import NapariUnetError
from .fileio import atomic_write
from .model import UNet

__all__ = [
    "save_model",
    "load_model",
    "read_model_info",
    "save_checkpoint",
    "load_training_state",
    "MODEL_SUFFIX",
    "resolve_model_arg",
]

MODEL_SUFFIX = ".safetensors"
_FORMAT = "napari-unet"
_FORMAT_VERSION = 1
_PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"}
# Tensors of a checkpoint that are not weights (optimizer moments, random state) carry
# this prefix; load_model ignores them.
_STATE_PREFIX = "training_state."
# A safetensors header is JSON; anything claiming more than this is not one of ours.
_MAX_HEADER = 100 * 1024 * 1024


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise NapariUnetError(
        f"Model metadata must be plain data; cannot store a {type(value).__name__}."
    )


def save_model(model: UNet, path: str | os.PathLike, **metadata: Any) -> Path:
    """Save ``model`` as a safetensors file, atomically.

    Parameters
    ----------
    model : UNet
        The network. Its ``config`` (architecture) and ``metadata`` are stored in
        the file header.
    path : path-like
        Target file, conventionally ending in ``.safetensors``.
    **metadata
        Extra plain-JSON metadata (normalisation, training provenance, ...),
        merged over ``model.metadata``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    return _write(model, path, metadata, {})


def save_checkpoint(
    model: UNet,
    path: str | os.PathLike,
    state: dict[str, Any],
    **metadata: Any,
) -> Path:
    """Save ``model`` plus the training state needed to resume exactly.

    The file is an ordinary model file (:func:`load_model` reads it); the extra
    tensors in ``state`` (optimizer moments, random-number state) are stored
    beside the weights under a reserved prefix.
    """
    return _write(model, path, metadata, state)


def _write(model: UNet, path: str | os.PathLike, metadata: dict, state: dict) -> Path:
    meta = _jsonable({**getattr(model, "metadata", {}), **metadata})
    header = {
        "format": _FORMAT,
        "format_version": str(_FORMAT_VERSION),
        "config": json.dumps(model.config),
        "metadata": json.dumps(meta),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for k, v in state.items():
        tensors[_STATE_PREFIX + k] = v.detach().to("cpu").contiguous()
    data = save(tensors, metadata=header)
    target = Path(path)
    with atomic_write(target) as fh:
        fh.write(data)
    return target


def _check_file(path: Path) -> None:
    if not path.exists():
        raise NapariUnetError(f"The model file {path} does not exist.")
    if path.is_dir():
        raise NapariUnetError(
            f"{path} is a folder, not a model file or a bioimage.io package napari-unet exported."
        )
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise NapariUnetError(
            f"{path.name} looks like a PyTorch pickle checkpoint; napari-unet only loads "
            f".safetensors model files, because pickles can run code when loaded."
        )


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and validate the safetensors header without touching the weights."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
            if len(head) < 8:
                raise NapariUnetError(f"{path.name} is not a model file (it is too short).")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                if head[:1] == b"\x80":
                    what = "it is a Python pickle"
                elif head[:2] == b"PK":
                    what = "it is a zip archive, as PyTorch .pt files are"
                elif n <= _MAX_HEADER and head[:8] != b"\x00" * 8:
                    what = "it is truncated"
                else:
                    what = "it is not a safetensors file"
                raise NapariUnetError(f"{path.name} cannot be loaded as a model: {what}.")
            raw = fh.read(n)
    except PermissionError:
        raise NapariUnetError(
            f"The model file {path} is not readable (permission denied)."
        ) from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NapariUnetError(
            f"{path.name} is not a safetensors model file; it was not loaded."
        ) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise NapariUnetError(f"{path.name} is a safetensors file but not a napari-unet model.")
    if int(meta.get("format_version", "0")) > _FORMAT_VERSION:
        raise NapariUnetError(
            f"{path.name} was written by a newer napari-unet; update napari-unet to load it."
        )
    try:
        return {"config": json.loads(meta["config"]), "metadata": json.loads(meta["metadata"])}
    except (KeyError, json.JSONDecodeError):
        raise NapariUnetError(f"{path.name} has a damaged header; it was not loaded.") from None


@contextmanager
def _model_file(path: str | os.PathLike) -> Iterator[Path]:
    """The safetensors file behind ``path``: itself, or the one inside a bioimage.io package."""
    p = Path(path)
    if p.exists() and p.suffix.lower() not in _PICKLE_SUFFIXES:
        from .export.package import is_package, package_weights

        if is_package(p):
            with package_weights(p) as inner:
                yield inner
            return
    _check_file(p)
    yield p


def read_model_info(path: str | os.PathLike) -> dict[str, Any]:
    """Architecture and metadata of a model file, without loading its weights.

    ``path`` may also be a bioimage.io package (zip or folder) that napari-unet
    exported.

    Returns
    -------
    dict
        ``{"config": {...}, "metadata": {...}}``.
    """
    with _model_file(path) as p:
        return _read_header(p)


def _load_tensors(path: Path, device: str | None) -> dict:
    try:
        return load_file(str(path), device=device or "cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise NapariUnetError(f"{path.name} is corrupt or truncated ({exc}).") from None


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The extra tensors :func:`save_checkpoint` stored (empty for a plain model file)."""
    n = len(_STATE_PREFIX)
    with _model_file(path) as p:
        _read_header(p)
        tensors = _load_tensors(p, None)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(_STATE_PREFIX)}


def load_model(path: str | os.PathLike, *, device: str | None = None) -> UNet:
    """Load a model saved with :func:`save_model`.

    Parameters
    ----------
    path : path-like
        A ``.safetensors`` file written by napari-unet, or a bioimage.io package
        (``.zip`` or its folder) that napari-unet exported: its safetensors copy
        of the weights is loaded, never its pickle weights.
    device : str or None
        Where to put the weights (``"cpu"`` when None).

    Returns
    -------
    UNet
        The network in eval mode, with ``metadata`` restored.

    Raises
    ------
    NapariUnetError
        For a missing, pickle-based, corrupt, truncated or mismatched file, or a
        package napari-unet did not export.
    """
    with _model_file(path) as p:
        info = _read_header(p)
        try:
            model = UNet.from_config(info["config"])
        except (TypeError, NapariUnetError) as exc:
            raise NapariUnetError(f"{p.name} describes an invalid network ({exc}).") from None
        state = _load_tensors(p, device)
    weights = {k: v for k, v in state.items() if not k.startswith(_STATE_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise NapariUnetError(
            f"The weights in {p.name} do not match the network it describes; the file is damaged."
        ) from None
    model.metadata = dict(info["metadata"])
    model.eval()
    return model


def resolve_model_arg(model: UNet | Callable[[], UNet]) -> UNet:
    """The network itself, or what a loader (a zero-argument callable) returns.

    Lets a caller hand over either a model or the work of making one, so that
    loading a file or copying a model can happen where the work runs (a worker
    thread), not where the request is made.
    """
    if isinstance(model, torch.nn.Module):
        return model
    return model()
