"""Reading back the bioimage.io packages napari-unet exported.

Only two members of a package are ever read: its description (``rdf.yaml``) and
the safetensors copy of the weights that napari-unet ships as an attachment.
The pickle state dict (``weights.pt``) is never loaded, so a package cannot run
code. Sizes are checked from the zip's directory before anything is unpacked,
and reads stop at the declared size, so a zip bomb costs nothing. Needs neither
``bioimageio.spec`` nor torch: a plain install can load a package.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import NapariUnetError

__all__ = ["is_package", "package_weights"]

_RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
_CONFIG_KEY = "napari_unet"  # = bioimageio.PACKAGE_CONFIG_KEY, without importing the exporter
_MAX_RDF = 16 << 20
# Larger than any U-Net napari-unet trains (the paper's network is 124 MB in float32).
_MAX_WEIGHTS = 4 << 30
_MAX_TOTAL = 16 << 30
# Weights barely compress; a member this much smaller packed than unpacked is a bomb.
_MAX_RATIO = 200
_CHUNK = 1 << 20
_SUPPORTED = (
    "napari-unet loads only bioimage.io packages that napari-unet exported "
    "(they carry config.napari_unet and a .safetensors copy of the weights)"
)


def is_package(path: Path) -> bool:
    """Whether ``path`` looks like a bioimage.io package: a zip file, or a folder with an rdf."""
    if path.is_dir():
        return any((path / n).is_file() for n in _RDF_NAMES)
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


@contextmanager
def package_weights(path: Path) -> Iterator[Path]:
    """The safetensors model file inside a package napari-unet exported.

    Parameters
    ----------
    path : pathlib.Path
        A package ``.zip`` or its unpacked folder.

    Yields
    ------
    pathlib.Path
        A napari-unet model file (unpacked into a temporary folder for a zip,
        removed afterwards).

    Raises
    ------
    NapariUnetError
        For a truncated or oversized zip, a missing description, a foreign package
        or one without napari-unet's safetensors weights.
    """
    if path.is_dir():
        rdf = _parse_rdf(path, _read_folder_member(path, _rdf_name(path, os.listdir(path))))
        name = _weights_name(path, rdf)
        if not (path / name).is_file():
            raise NapariUnetError(f"The package {path.name} lacks its weights file {name}.")
        member = _folder_member(path, name)
        _check_sha(path, rdf, name, member)
        yield member
        return
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise NapariUnetError(
            f"{path.name} is not a complete zip file (it may be truncated); it was not loaded."
        ) from None
    except OSError as exc:
        raise NapariUnetError(f"{path.name} could not be read ({exc.strerror}).") from None
    with archive, tempfile.TemporaryDirectory(prefix=".napari-unet-package-") as tmp:
        infos = {info.filename: info for info in archive.infolist()}
        _check_sizes(path, infos.values())
        rdf_name = _rdf_name(path, infos)
        rdf = _parse_rdf(path, _read_zip_member(path, archive, infos[rdf_name], _MAX_RDF))
        name = _weights_name(path, rdf)
        if name not in infos:
            raise NapariUnetError(f"The package {path.name} lacks its weights file {name}.")
        target = Path(tmp) / name
        _extract(path, archive, infos[name], target)
        _check_sha(path, rdf, name, target)
        yield target


def _rdf_name(path: Path, names: Any) -> str:
    for n in _RDF_NAMES:
        if n in names:
            return n
    if any(str(n).endswith("data.pkl") for n in names):
        raise NapariUnetError(
            f"{path.name} cannot be loaded as a model: it is a zip archive, as PyTorch .pt files "
            "are, holding a pickle, which napari-unet never loads because it can run code."
        )
    raise NapariUnetError(
        f"{path.name} is a zip archive but not a bioimage.io model package (it has no "
        f"rdf.yaml); {_SUPPORTED}."
    )


def _check_sizes(path: Path, infos: Any) -> None:
    total = 0
    for info in infos:
        total += info.file_size
        packed = max(info.compress_size, 1)
        if info.file_size > _MAX_WEIGHTS or (
            info.file_size > _CHUNK and info.file_size / packed > _MAX_RATIO
        ):
            raise NapariUnetError(
                f"{path.name} was not unpacked: its member {info.filename} claims "
                f"{info.file_size:,} bytes, more than a napari-unet package holds (a zip bomb?)."
            )
    if total > _MAX_TOTAL:
        raise NapariUnetError(
            f"{path.name} was not unpacked: it claims {total:,} bytes unpacked, more than a "
            "napari-unet package holds (a zip bomb?)."
        )


def _read_zip_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int):
    if info.file_size > limit:
        raise NapariUnetError(f"The description {info.filename} in {path.name} is too large.")
    try:
        with archive.open(info) as fh:
            data = fh.read(limit + 1)
    except _READ_ERRORS as exc:
        raise _read_error(path, info, exc) from None
    if len(data) > limit:
        raise NapariUnetError(f"The description {info.filename} in {path.name} is too large.")
    return data


def _folder_member(path: Path, name: str) -> Path:
    """``path / name`` if it is a regular file inside the folder (a link may not lead out)."""
    member = (path / name).resolve()
    if not member.is_relative_to(path.resolve()):
        raise NapariUnetError(
            f"{name} in {path.name} is a link to a file outside the package folder; "
            "napari-unet reads only the package's own files."
        )
    if not member.is_file():
        raise NapariUnetError(f"{name} in {path.name} is not a regular file.")
    return member


def _read_folder_member(path: Path, name: str) -> bytes:
    member = _folder_member(path, name)
    too_large = NapariUnetError(f"The description {name} in {path.name} is too large.")
    if member.stat().st_size > _MAX_RDF:
        raise too_large
    with open(member, "rb") as fh:  # the size may change after the check: read at most the limit
        data = fh.read(_MAX_RDF + 1)
    if len(data) > _MAX_RDF:
        raise too_large
    return data


def _extract(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    written = 0
    try:
        with archive.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:  # the directory lied about the size
                    raise NapariUnetError(
                        f"{path.name} was not unpacked: {info.filename} is larger than it claims."
                    )
                dst.write(chunk)
    except NapariUnetError:
        raise
    except _READ_ERRORS as exc:
        raise _read_error(path, info, exc) from None


# zipfile lets zlib's, bz2's and lzma's own errors through for a damaged stream, and raises
# RuntimeError for an encrypted member and NotImplementedError for an unknown compression
_READ_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


def _read_error(path: Path, info: zipfile.ZipInfo, exc: BaseException) -> NapariUnetError:
    """One sentence for a member that cannot be unpacked."""
    if info.flag_bits & 0x1:
        return NapariUnetError(
            f"{path.name} was not unpacked: its member {info.filename} is encrypted."
        )
    if isinstance(exc, NotImplementedError):
        return NapariUnetError(
            f"{path.name} was not unpacked: {info.filename} uses a compression that Python's "
            "zipfile does not read."
        )
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return NapariUnetError(f"{path.name} is damaged or truncated ({reason}).")


def _parse_rdf(path: Path, data: bytes) -> dict:
    import yaml

    try:
        rdf = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise NapariUnetError(
            f"The description (rdf.yaml) of {path.name} is not valid YAML."
        ) from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise NapariUnetError(f"{path.name} is not a bioimage.io model package; {_SUPPORTED}.")
    return rdf


def _weights_name(path: Path, rdf: dict) -> str:
    config = rdf.get("config") if isinstance(rdf.get("config"), dict) else {}
    ours = config.get(_CONFIG_KEY)
    weights = rdf.get("weights") if isinstance(rdf.get("weights"), dict) else {}
    if not isinstance(ours, dict):
        if set(weights) == {"pytorch_state_dict"}:
            raise NapariUnetError(
                f"{path.name} carries only pickle weights (pytorch_state_dict), which napari-unet "
                f"never loads because unpickling can run code; {_SUPPORTED}."
            )
        raise NapariUnetError(f"{path.name} is a bioimage.io model of another tool; {_SUPPORTED}.")
    name = ours.get("weights")
    if not isinstance(name, str) or not name.endswith(".safetensors") or Path(name).name != name:
        raise NapariUnetError(
            f"{path.name} has no .safetensors weights for napari-unet; its pickle weights are "
            "never loaded, because unpickling can run code."
        )
    return name


def _check_sha(path: Path, rdf: dict, name: str, member: Path) -> None:
    """Compare with the checksum the description lists for the attachment, if any."""
    for att in rdf.get("attachments") or []:
        if isinstance(att, dict) and att.get("source") == name and att.get("sha256"):
            digest = hashlib.sha256()
            with open(member, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != att["sha256"]:
                raise NapariUnetError(
                    f"The weights in {path.name} do not match the checksum in its description; "
                    "the package is damaged."
                )
