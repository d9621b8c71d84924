"""Export a napari-unet model as a bioimage.io model package (model spec 0.5).

The package runs the network in every bioimage.io consumer (deepImageJ and Icy
through TorchScript, QuPath through TorchScript or ONNX, ilastik and
``bioimageio.core`` through any of the three weight formats). Its description
(``rdf.yaml``) is built with ``bioimageio.spec``'s own model classes and
packaged with ``save_bioimageio_package``, so it is valid by construction; the
zip lands on its target with one ``os.replace``.

How napari-unet's prediction maps onto the spec:

- Pre-processing: ``scale_range`` over ``(y, x)`` per sample and channel with the
  model's percentiles, which is :class:`napari_unet.normalization.Normalization`
  (statistics over the whole input, never per tile).
- The network: the valid-convolution U-Net, shipped as a one-file architecture
  (:mod:`napari_unet.export.unet_architecture`) plus its state dict, and converted
  to TorchScript and ONNX.
- Post-processing: ``softmax`` over the channel axis, as in ``predict_tiled``.
- Sizes: an input is valid for ``min + k * 2**(depth-1)`` pixels; the output is
  smaller by the network's context on each side. The spec's ``halo`` means
  *extra* pixels a consumer should crop from a same-size output, so a network
  that already crops its context declares it as the output size's ``offset``
  (``-2 * context``), as the spec prescribes; the context itself is recorded in
  ``config.napari_unet.context``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._generators import run_to_end
from ..errors import NapariUnetError
from ..fileio import _file_mode, check_output_path
from ..model import halo, input_size_for_output

if TYPE_CHECKING:
    from ..model import UNet

__all__ = [
    "ExportProgress",
    "export_bioimageio",
    "iter_export_bioimageio",
    "PACKAGE_CONFIG_KEY",
    "WEIGHTS_ATTACHMENT",
]

#: Key under ``config`` in ``rdf.yaml`` that marks a package napari-unet exported.
PACKAGE_CONFIG_KEY = "napari_unet"
#: The attachment napari-unet imports a package from (never the pickle state dict).
WEIGHTS_ATTACHMENT = "napari_unet_model.safetensors"
_INPUT_ID = "raw"
_OUTPUT_ID = "probabilities"
_UNET_DOI = "10.1007/978-3-319-24574-4_28"
# The test output is kept near 128 x 128 pixels: big enough to show cells, small enough
# that bioimageio's model test stays quick.
_TEST_OUTPUT = 128
_MAX_TEST_OUTPUT = 256
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


def _test_input(model: UNet, image: np.ndarray | None) -> np.ndarray:
    """A ``(C, S, S)`` float32 input of a valid size ``S`` from ``image`` (or a synthetic one)."""
    from ..padding import mirror_pad

    depth = model.depth
    if image is None:
        from ..synthetic import make_cells

        size = input_size_for_output(_TEST_OUTPUT, depth)
        # the sample-data seed: the same cells napari's File > Open Sample shows
        plane, _ = make_cells((size, size), style="fluorescence", seed=2015)
        image = np.stack([plane] * model.in_channels)
    image = np.asarray(image)
    if model.in_channels == 1 and image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != model.in_channels:
        want = "(H, W)" if model.in_channels == 1 else f"({model.in_channels}, H, W)"
        raise NapariUnetError(
            f"The test image must be a single 2D plane {want} for this model; "
            f"got an array of shape {tuple(image.shape)}."
        )
    from ..normalization import as_float_image

    if not np.all(np.isfinite(as_float_image(image))):
        raise NapariUnetError("The test image contains NaN or infinite values.")
    longest = input_size_for_output(_MAX_TEST_OUTPUT, depth)
    side = min(image.shape[1], image.shape[2], longest)
    size = input_size_for_output(1, depth)
    while input_size_for_output(len_out := _out(size, depth) + 1, depth) <= side:
        size = input_size_for_output(len_out, depth)
    if min(image.shape[1:]) < size:
        # smaller than the smallest valid input: mirror it out, as predict_tiled would
        widths = [(0, 0)] + [(0, max(0, size - n)) for n in image.shape[1:]]
        image = mirror_pad(np.asarray(image, dtype=np.float32), widths)
    y0 = (image.shape[1] - size) // 2
    x0 = (image.shape[2] - size) // 2
    return np.ascontiguousarray(image[:, y0 : y0 + size, x0 : x0 + size], dtype=np.float32)


def _out(size: int, depth: int) -> int:
    from ..model import output_size

    return output_size(size, depth)


def predict_package_tile(model: UNet, raw: np.ndarray) -> np.ndarray:
    """napari-unet's probabilities for one valid-size input ``(C, S, S)``, as the package gives.

    The input is normalised with the model's normalisation (statistics over the
    whole input) and run as one tile through
    :func:`napari_unet.tiling.predict_padded`, the routine that
    :func:`napari_unet.predict_tiled` runs on every tile. The result covers the
    centre of the input, ``(K, S - 2 * context, S - 2 * context)``.
    """
    import torch

    from ..tiling import TileGrid, predict_padded, resolve_normalization

    norm = resolve_normalization(model, None)
    stats = norm.statistics(raw, channel_axis=0)
    x = norm.apply(raw, stats, channel_axis=0)
    out_hw = model.output_shape(raw.shape[1:])
    grid = TileGrid(
        image_shape=out_hw, step=out_hw, input_shape=tuple(raw.shape[1:]), counts=(1, 1), halo=0
    )
    out = np.empty((model.n_classes, *out_hw), dtype=np.float32)
    device = next(model.parameters()).device
    for _ in predict_padded(model, x, grid, 1, device if device.type != "meta" else "cpu", out):
        pass
    del torch
    return out


def _cover(raw: np.ndarray, prob: np.ndarray, path: Path) -> None:
    """Image and prediction side by side (2:1), the prediction as a green overlay."""
    import skimage.io

    c = halo_of(raw.shape[-1], prob.shape[-1])
    plane = raw[0, c : raw.shape[1] - c, c : raw.shape[2] - c].astype(np.float64)
    lo, hi = np.percentile(plane, [1, 99.8])
    gray = np.clip((plane - lo) / max(hi - lo, 1e-12), 0, 1)
    fg = 1.0 - prob[0] if prob.shape[0] == 2 else 1.0 - prob[0]
    left = np.stack([gray] * 3, axis=-1)
    right = left * (1 - 0.5 * fg[..., None]) + 0.5 * fg[..., None] * np.array([0.1, 1.0, 0.3])
    img = (np.concatenate([left, right], axis=1) * 255).round().astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skimage.io.imsave(str(path), img, check_contrast=False)


def halo_of(size_in: int, size_out: int) -> int:
    """Context on each side given an input and an output size."""
    return (size_in - size_out) // 2


def _model_card(model: UNet, name: str, context: int, min_size: int, step: int) -> str:
    meta = model.metadata or {}
    norm = meta.get("normalization") or {"method": "percentile", "low": 1.0, "high": 99.8}
    training = meta.get("training") or {}
    data = meta.get("training_data") or {}
    lines = [
        f"# {name}",
        "",
        str(meta.get("description") or "A U-Net trained with napari-unet."),
        "",
        "## Model",
        "",
        "The original U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) with valid "
        "(unpadded) convolutions, exported by napari-unet.",
        "",
        f"- Architecture: {json.dumps(model.config)}",
        f"- Parameters: {sum(p.numel() for p in model.parameters()):,}",
        f"- Valid input sizes: {min_size} + k * {step} pixels along y and x.",
        f"- The output is {context} pixels smaller than the input on every side (the "
        "network's context). To segment a large image, cut it into tiles that overlap by "
        f"{2 * context} pixels, start every tile at a multiple of {step} pixels, and "
        "mirror the image at its borders; the tiles' outputs then abut without seams.",
        "",
        "## Pre- and post-processing",
        "",
        f"- Input: raw intensities, scaled per image and channel so that the "
        f"{norm.get('low')}th percentile maps to 0 and the {norm.get('high')}th to 1 "
        "(`scale_range`).",
        "- Output: softmax over the classes (`softmax`); channel 1 is the foreground "
        "(cell) probability for a two-class model.",
        "",
        "## Training",
        "",
    ]
    if training:
        origin = training.get("started_from") or {}
        start = origin.get("model") if isinstance(origin, dict) else None
        lines += [
            f"- Start model: {start or 'trained from scratch'}",
            f"- Steps: {training.get('steps', 'not recorded')}",
            f"- Recipe: {training.get('recipe', 'napari-unet training')}",
        ]
    else:
        lines.append("- Training provenance was not recorded in the model file.")
    if data:
        lines.append(f"- Data: {data.get('source', data.get('description', 'not recorded'))}")
    lines += [
        "",
        "The full provenance is in `napari_unet_provenance.json` and in "
        "`config.napari_unet.metadata` of `rdf.yaml`.",
        "",
        "## Validation",
        "",
    ]
    evaluation = meta.get("evaluation")
    if evaluation:
        lines.append(
            f"On {evaluation.get('images', '?')} held-out images: AP50 "
            f"{evaluation.get('ap50', '?')}, mean IoU {evaluation.get('mean_iou', '?')}."
        )
    else:
        lines.append(
            "No evaluation was recorded. Check the model on annotated images of your own "
            "before relying on it."
        )
    lines += [
        "",
        "The package's test tensors were computed by napari-unet itself; all three weight "
        "formats reproduce them.",
        "",
        "## Citation",
        "",
        "Ronneberger O., Fischer P., Brox T. (2015) U-Net: Convolutional Networks for "
        f"Biomedical Image Segmentation. MICCAI 2015. doi:{_UNET_DOI}",
        "",
    ]
    return "\n".join(lines)


def _safe_name(name: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-()+.,")
    cleaned = "".join(ch if ch in allowed else " " for ch in name).strip()
    cleaned = " ".join(cleaned.split())[:120]
    if len(cleaned) < 5:
        raise NapariUnetError(
            f"The model name {name!r} is too short for bioimage.io; use at least 5 letters."
        )
    return cleaned


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
    _check_model(model)
    _require_extra()
    target = check_output_path(path, overwrite=overwrite)
    if target.suffix.lower() != ".zip":
        raise NapariUnetError(f"A bioimage.io package is a .zip file; {target.name} is not.")
    if cover is not None and not Path(cover).is_file():
        raise NapariUnetError(f"The cover image {cover} does not exist.")
    meta = dict(model.metadata or {})
    name = _safe_name(name or str(meta.get("name") or "napari-unet U-Net"))
    authors = [a.strip() for a in (authors or meta.get("authors") or []) if str(a).strip()]
    if not authors:
        authors = ["napari-unet user"]
    if any("/" in a for a in authors):
        raise NapariUnetError("Author names may not contain '/'.")

    import torch

    from ..modelfile import save_model
    from . import unet_architecture

    # a CPU copy in eval mode: the caller's model keeps its device and mode, and may go on
    # training or predicting while the export runs
    model = copy.deepcopy(model).to("cpu").eval()
    depth = model.depth
    context = halo(depth)
    step = model.pooling_factor
    min_size = input_size_for_output(1, depth)

    with tempfile.TemporaryDirectory(prefix=".napari-unet-export-") as tmp:
        work = Path(tmp)
        yield ExportProgress(1, total, _STEPS[1])
        raw = _test_input(model, test_image)
        prob = predict_package_tile(model, raw)
        np.save(work / "test_input.npy", raw[None])
        np.save(work / "test_output.npy", prob[None])

        yield ExportProgress(2, total, _STEPS[2])
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(state, work / "weights.pt")
        save_model(model, work / WEIGHTS_ATTACHMENT)
        arch_src = files(unet_architecture.__package__).joinpath("unet_architecture.py")
        (work / "unet_architecture.py").write_text(arch_src.read_text(encoding="utf-8"))
        arch = unet_architecture.UNet(**model.config)
        arch.load_state_dict(state)
        arch.eval()

        yield ExportProgress(3, total, _STEPS[3])
        with warnings.catch_warnings():
            # deprecated in favour of torch.export, but what deepImageJ and QuPath read
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(arch)
            scripted.save(str(work / "weights.torchscript.pt"))

        yield ExportProgress(4, total, _STEPS[4])
        _export_onnx(arch, raw, work / "weights.onnx")

        yield ExportProgress(5, total, _STEPS[5])
        if cover is None:
            _cover(raw, prob, work / "cover.png")
            cover_path = work / "cover.png"
        else:
            cover_path = work / f"cover{Path(cover).suffix.lower()}"
            shutil.copyfile(cover, cover_path)
        (work / "README.md").write_text(
            _model_card(model, name, context, min_size, step), encoding="utf-8"
        )
        provenance = {
            "config": model.config,
            "metadata": meta,
            "context": context,
            "min_size": min_size,
            "step": step,
        }
        from ..modelfile import _jsonable

        (work / "napari_unet_provenance.json").write_text(
            json.dumps(_jsonable(provenance), indent=2), encoding="utf-8"
        )

        yield ExportProgress(6, total, _STEPS[6])
        descr = _describe(
            model,
            work,
            name=name,
            authors=authors,
            cover=cover_path,
            meta=meta,
            context=context,
            min_size=min_size,
            step=step,
        )
        _write_package(descr, target, overwrite=overwrite)
    yield ExportProgress(total, total, "done")
    return target


def _export_onnx(arch: Any, raw: np.ndarray, path: Path) -> None:
    import torch

    x = torch.from_numpy(raw[None])
    dims = {0: "batch", 2: "y", 3: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript-based exporter: it keeps the size-dependent crops symbolic
        # without needing onnxscript
        torch.onnx.export(
            arch,
            (x,),
            str(path),
            input_names=[_INPUT_ID],
            output_names=[_OUTPUT_ID],
            dynamic_axes={_INPUT_ID: dims, _OUTPUT_ID: dims},
            opset_version=_ONNX_OPSET,
            dynamo=False,
        )


_ONNX_OPSET = 17


def _describe(
    model: UNet,
    work: Path,
    *,
    name: str,
    authors: list[str],
    cover: Path,
    meta: dict,
    context: int,
    min_size: int,
    step: int,
):
    import torch
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5 as v

    from .. import __version__
    from ..modelfile import _jsonable

    norm = meta.get("normalization") or {"method": "percentile", "low": 1.0, "high": 99.8}
    preprocessing = []
    if norm.get("method", "percentile") == "percentile":
        preprocessing.append(
            v.ScaleRangeDescr(
                kwargs=v.ScaleRangeKwargs(
                    axes=[v.AxisId("y"), v.AxisId("x")],
                    min_percentile=float(norm.get("low", 1.0)),
                    max_percentile=float(norm.get("high", 99.8)),
                    # napari-unet divides by the range itself; the smallest eps the spec allows
                    # keeps the two within float rounding
                    eps=1e-12,
                )
            )
        )
    if model.n_classes == 2:
        classes = ["background", "foreground"]
    else:
        classes = [f"class{k}" for k in range(model.n_classes)]
    in_channels = [f"channel{c}" for c in range(model.in_channels)]
    spatial_in = [
        v.SpaceInputAxis(id=v.AxisId(a), size=v.ParameterizedSize(min=min_size, step=step))
        for a in ("y", "x")
    ]
    spatial_out = [
        v.SpaceOutputAxis(
            id=v.AxisId(a),
            size=v.SizeReference(
                tensor_id=v.TensorId(_INPUT_ID), axis_id=v.AxisId(a), offset=-2 * context
            ),
        )
        for a in ("y", "x")
    ]
    inputs = [
        v.InputTensorDescr(
            id=v.TensorId(_INPUT_ID),
            description="image, raw intensities (scaled by the pre-processing)",
            axes=[
                v.BatchAxis(),
                v.ChannelAxis(channel_names=[v.Identifier(c) for c in in_channels]),
                *spatial_in,
            ],
            test_tensor=v.FileDescr(source=work / "test_input.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing,
        )
    ]
    outputs = [
        v.OutputTensorDescr(
            id=v.TensorId(_OUTPUT_ID),
            description=(
                f"class probabilities of the input's centre ({context} pixels of context "
                "are cropped on every side)"
            ),
            axes=[
                v.BatchAxis(),
                v.ChannelAxis(channel_names=[v.Identifier(c) for c in classes]),
                *spatial_out,
            ],
            test_tensor=v.FileDescr(source=work / "test_output.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            postprocessing=[v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))],
        )
    ]
    torch_version = v.Version(torch.__version__.split("+")[0])
    weights = v.WeightsDescr(
        pytorch_state_dict=v.PytorchStateDictWeightsDescr(
            source=work / "weights.pt",
            architecture=v.ArchitectureFromFileDescr(
                source=work / "unet_architecture.py",
                callable=v.Identifier("UNet"),
                kwargs=_jsonable(model.config),
            ),
            pytorch_version=torch_version,
        ),
        torchscript=v.TorchscriptWeightsDescr(
            source=work / "weights.torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
        onnx=v.OnnxWeightsDescr(
            source=work / "weights.onnx",
            opset_version=_ONNX_OPSET,
            parent="pytorch_state_dict",
        ),
    )
    training = meta.get("training") or {}
    tconf = training.get("config") or {}
    config = {
        "bioimageio": {
            "architecture_type": "U-Net (valid convolutions)",
            "architecture_description": (
                f"Ronneberger et al. 2015 U-Net, depth {model.depth}, "
                f"{model.base_channels} base channels, valid convolutions"
            ),
            "task": "semantic segmentation (class probabilities)",
            "model_parameter_count": int(sum(p.numel() for p in model.parameters())),
            "reproducibility_tolerance": [
                {
                    "relative_tolerance": 1e-4,
                    "absolute_tolerance": 1e-4,
                    "mismatched_elements_per_million": 0,
                }
            ],
            "training": {
                k: val
                for k, val in {
                    "training_preprocessing": (
                        f"percentile normalisation ({norm.get('low')}, {norm.get('high')}) "
                        "per image; elastic deformation and intensity augmentation"
                    ),
                    "optimizer": tconf.get("optimizer"),
                    "initial_learning_rate": tconf.get("learning_rate"),
                    "learning_rate_schedule": tconf.get("schedule"),
                    "training_batch_size": tconf.get("batch_size"),
                    "loss_function": "pixel-weighted cross-entropy (Ronneberger et al. 2015)",
                }.items()
                if val is not None
            },
        },
        PACKAGE_CONFIG_KEY: _jsonable(
            {
                "napari_unet_version": __version__,
                "weights": WEIGHTS_ATTACHMENT,
                "config": model.config,
                "metadata": meta,
                "context": context,
                "min_size": min_size,
                "step": step,
            }
        ),
    }
    cite = [
        v.CiteEntry(
            text="Ronneberger O., Fischer P., Brox T. (2015) U-Net: Convolutional Networks "
            "for Biomedical Image Segmentation. MICCAI 2015.",
            doi=v.Doi(_UNET_DOI),
        ),
        v.CiteEntry(
            text="napari-unet: the original U-Net for biologists in napari.",
            url="https://napari-hub.org/plugins/napari-unet",
        ),
    ]
    with ValidationContext(root=work, perform_io_checks=True):
        try:
            return v.ModelDescr(
                name=name,
                description=str(meta.get("description") or "A U-Net trained with napari-unet.")[
                    :1024
                ],
                authors=[v.Author(name=a) for a in authors],
                cite=cite,
                license=v.LicenseId(str(meta.get("licence") or meta.get("license") or "MIT")),
                covers=[v.FileDescr(source=cover)],
                documentation=v.FileDescr(source=work / "README.md"),
                attachments=[
                    v.FileDescr(source=work / WEIGHTS_ATTACHMENT),
                    v.FileDescr(source=work / "napari_unet_provenance.json"),
                ],
                tags=["unet", "segmentation", "napari-unet", "2d", "pytorch"],
                inputs=inputs,
                outputs=outputs,
                weights=weights,
                config=config,
            )
        except Exception as exc:  # pydantic's ValidationError lists every field
            raise NapariUnetError(
                f"The bioimage.io description could not be built: {_first_error(exc)}"
            ) from None


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


def _first_error(exc: Exception) -> str:
    """The first problem pydantic reports, in one line."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(exc).splitlines()[0]
