"""Export a napari-unet model as a bioimage.io model package (model spec 0.5): the steps.

The package runs the network in every bioimage.io consumer (deepImageJ and Icy
through TorchScript, QuPath through TorchScript or ONNX, ilastik and
``bioimageio.core`` through any of the three weight formats). This module runs
the export as a generator of progress events; the parts live beside it:

- :mod:`.tensors`: the test input and output (computed by napari-unet) and the cover;
- :mod:`.conversions`: the shipped architecture, TorchScript and ONNX;
- :mod:`.model_card`: the documentation;
- :mod:`.description`: ``rdf.yaml``, built with ``bioimageio.spec``'s own model
  classes, so it is valid by construction.

The zip is written by ``save_bioimageio_package`` next to its target and lands
there with one rename.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._generators import run_to_end
from ..errors import NapariUnetError
from ..fileio import _file_mode, check_output_path
from ..model import halo, input_size_for_output
from .conversions import shipped_architecture, write_onnx, write_torchscript
from .description import PACKAGE_CONFIG_KEY, WEIGHTS_ATTACHMENT, describe
from .model_card import model_card
from .naming import valid_model_name
from .tensors import draw_cover, halo_of, make_test_input, predict_package_tile

if TYPE_CHECKING:
    from ..model import UNet

__all__ = [
    "ExportProgress",
    "export_bioimageio",
    "iter_export_bioimageio",
    "PACKAGE_CONFIG_KEY",
    "WEIGHTS_ATTACHMENT",
    "halo_of",
    "predict_package_tile",
]

_EXTRA = 'pip install "napari-unet[export]"'
_STEPS = (
    "checking the model",
    "computing the test tensors",
    "writing the weights",
    "converting to TorchScript",
    "converting to ONNX",
    "drawing the cover",
    "writing the package",
)


@dataclass(frozen=True)
class ExportProgress:
    """Progress of an export: step ``done`` of ``total``, ``step`` says what runs next."""

    done: int
    total: int
    step: str


def _require_extra() -> None:
    try:
        import bioimageio.spec  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        raise NapariUnetError(
            f"Exporting for bioimage.io needs the optional packages of napari-unet's export "
            f"extra; install them with {_EXTRA}."
        ) from None


def _check_model(model: Any) -> None:
    from ..model import UNet

    if not isinstance(model, UNet):
        raise NapariUnetError(
            f"Only napari-unet U-Nets can be exported, not a {type(model).__name__}."
        )
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or not config:
        raise NapariUnetError("The model has no architecture config, so it cannot be exported.")


def iter_export_bioimageio(
    model: UNet,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    authors: Sequence[str] | None = None,
    cover: str | os.PathLike | None = None,
    test_image: np.ndarray | None = None,
    overwrite: bool = False,
) -> Generator[ExportProgress, None, Path]:
    """Generator form of :func:`export_bioimageio`.

    Yields an :class:`ExportProgress` before every step (and one at the end) and
    returns the written path (``StopIteration.value``). Closing the generator
    between yields cancels the export and leaves no file behind.
    """
    total = len(_STEPS)
    yield ExportProgress(0, total, _STEPS[0])
    target, name, authors, meta = _checked_arguments(model, path, name, authors, cover, overwrite)

    import torch

    from ..modelfile import save_model

    # a CPU copy in eval mode: the caller's model keeps its device and mode, and may go on
    # training or predicting while the export runs
    model = copy.deepcopy(model).to("cpu").eval()
    depth = model.depth
    shape = {
        "context": halo(depth),
        "min_size": input_size_for_output(1, depth),
        "step": model.pooling_factor,
    }

    with tempfile.TemporaryDirectory(prefix=".napari-unet-export-") as tmp:
        work = Path(tmp)
        yield ExportProgress(1, total, _STEPS[1])
        raw = make_test_input(model, test_image)
        prob = predict_package_tile(model, raw)
        np.save(work / "test_input.npy", raw[None])
        np.save(work / "test_output.npy", prob[None])

        yield ExportProgress(2, total, _STEPS[2])
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(state, work / "weights.pt")
        save_model(model, work / WEIGHTS_ATTACHMENT)
        arch = shipped_architecture(model, state, work)

        yield ExportProgress(3, total, _STEPS[3])
        write_torchscript(arch, work / "weights.torchscript.pt")

        yield ExportProgress(4, total, _STEPS[4])
        write_onnx(arch, raw, work / "weights.onnx")

        yield ExportProgress(5, total, _STEPS[5])
        cover_path = _write_cover(work, raw, prob, cover)
        _write_documents(work, model, name, meta, shape)

        yield ExportProgress(6, total, _STEPS[6])
        descr = describe(
            model, work, name=name, authors=authors, cover=cover_path, meta=meta, **shape
        )
        _write_package(descr, target, overwrite=overwrite)
    yield ExportProgress(total, total, "done")
    return target


def _checked_arguments(
    model: Any,
    path: str | os.PathLike,
    name: str | None,
    authors: Sequence[str] | None,
    cover: str | os.PathLike | None,
    overwrite: bool,
) -> tuple[Path, str, list[str], dict]:
    """The target, name, authors and metadata of an export, or one plain error."""
    _check_model(model)
    _require_extra()
    target = check_output_path(path, overwrite=overwrite)
    if target.suffix.lower() != ".zip":
        raise NapariUnetError(f"A bioimage.io package is a .zip file; {target.name} is not.")
    if cover is not None and not Path(cover).is_file():
        raise NapariUnetError(f"The cover image {cover} does not exist.")
    meta = dict(model.metadata or {})
    name = valid_model_name(name or str(meta.get("name") or "napari-unet U-Net"))
    authors = [a.strip() for a in (authors or meta.get("authors") or []) if str(a).strip()]
    if not authors:
        authors = ["napari-unet user"]
    if any("/" in a for a in authors):
        raise NapariUnetError("Author names may not contain '/'.")
    return target, name, authors, meta


def _write_cover(
    work: Path, raw: np.ndarray, prob: np.ndarray, cover: str | os.PathLike | None
) -> Path:
    """The cover in ``work``: the user's image, or the test image beside its prediction."""
    if cover is None:
        draw_cover(raw, prob, work / "cover.png")
        return work / "cover.png"
    cover_path = work / f"cover{Path(cover).suffix.lower()}"
    shutil.copyfile(cover, cover_path)
    return cover_path


def _write_documents(work: Path, model: UNet, name: str, meta: dict, shape: dict) -> None:
    """The model card (README.md) and the provenance napari-unet reads back on import.

    ``shape`` holds the network's ``context``, ``min_size`` and ``step``.
    """
    from ..modelfile import _jsonable

    (work / "README.md").write_text(
        model_card(model, name, shape["context"], shape["min_size"], shape["step"]),
        encoding="utf-8",
    )
    provenance = {"config": model.config, "metadata": meta, **shape}
    (work / "napari_unet_provenance.json").write_text(
        json.dumps(_jsonable(provenance), indent=2), encoding="utf-8"
    )


def _write_package(descr: Any, target: Path, *, overwrite: bool) -> None:
    from bioimageio.spec import save_bioimageio_package

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        save_bioimageio_package(descr, output_path=Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(target))
        if overwrite:
            os.replace(tmp, target)
        else:
            _move_unless_taken(Path(tmp), target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _move_unless_taken(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` unless a file appeared there since the export started."""
    taken = NapariUnetError(
        f"The output {target} appeared while exporting (another program?); it was left alone "
        "and nothing was written."
    )
    try:
        os.link(tmp, target)  # fails if the target exists, unlike a rename
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if target.exists():
            raise taken from None
        os.replace(tmp, target)
    else:
        os.unlink(tmp)


def export_bioimageio(
    model: UNet,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    authors: Sequence[str] | None = None,
    cover: str | os.PathLike | None = None,
    test_image: np.ndarray | None = None,
    overwrite: bool = False,
    progress: Callable[[ExportProgress], Any] | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a ``.zip``), atomically.

    Parameters
    ----------
    model : UNet
        The network, with its metadata (normalisation, training provenance).
    path : path-like
        The ``.zip`` to write.
    name : str or None
        Name of the model on bioimage.io; defaults to ``model.metadata["name"]``.
    authors : sequence of str or None
        Author names; default ``model.metadata["authors"]`` or "napari-unet user".
    cover : path-like or None
        A cover image (PNG/JPEG); default: the test image beside napari-unet's
        prediction as an overlay.
    test_image : numpy.ndarray or None
        A 2D image ``(H, W)`` (``(C, H, W)`` for several channels) to compute the
        test tensors from; its centre is cropped to a valid size of at most about
        256 output pixels. Default: a synthetic nuclei image.
    overwrite : bool
        Replace an existing file.
    progress : callable or None
        Called with every :class:`ExportProgress`.

    Returns
    -------
    pathlib.Path
        The written package.

    Raises
    ------
    NapariUnetError
        If the export extra is missing, the model has no config, or the target
        exists (without ``overwrite``) or cannot be written.
    """
    gen = iter_export_bioimageio(
        model,
        path,
        name=name,
        authors=authors,
        cover=cover,
        test_image=test_image,
        overwrite=overwrite,
    )
    return run_to_end(gen, progress)
