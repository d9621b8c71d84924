"""The Model dock: save, load and inspect the model in use."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import FileEdit, LineEdit, PushButton, TextEdit
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from ..postprocess.describe import describe_model_rule
from .dock import ScrollingDock, StatusLine
from .model_choice import bundled_available, chosen_path
from .session import state_for
from .training_runner import recent_recovered_model
from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    import napari


def describe_model(model: Any) -> str:
    """A plain-text card: architecture, normalisation and training provenance."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"U-Net, depth {c['depth']}, base width {c['base_channels']}, "
        f"{c['in_channels']} input channel(s), {c['n_classes']} classes, "
        f"{n_params:,} parameters.",
        f"Context (halo): {model.halo} px per side; tiles start every {model.pooling_factor} px.",
    ]
    meta = dict(model.metadata)
    meta.pop("format", None)
    name = meta.pop("name", None)
    if name:
        lines.insert(0, f"{name}: {meta.pop('description', '')}".rstrip(": "))
    norm = meta.pop("normalization", None)
    if norm:
        lines.append(f"Normalisation: {norm.get('method')} {norm.get('low')}..{norm.get('high')}")
    size = meta.pop("object_diameter", None)
    if size:
        lines.append(
            f"Made for objects {size['min']:g} to {size['max']:g} px across; for others set "
            "'Object diameter' in Predict."
        )
    source = (meta.pop("training_data", None) or {}).get("source")
    if source:
        lines.append(f"Training data: {source}.")
    evaluation = meta.pop("evaluation", None)
    if evaluation:
        lines.append(
            f"Held-out test: AP50 {evaluation['ap50']:.2f}, mean IoU {evaluation['mean_iou']:.2f}"
            + (f" on {evaluation['images']} images." if "images" in evaluation else ".")
        )
    meta.pop("postprocess", None)  # said in plain words, the same for every entry point
    lines.append(f"{describe_model_rule(model)[0].upper()}{describe_model_rule(model)[1:]}.")
    training = meta.pop("training", None)
    if training:
        lines.append(
            f"Trained {training.get('steps')} steps in {training.get('seconds', 0):.0f} s "
            f"with napari-unet {training.get('napari_unet_version', '?')}."
        )
        origin = training.get("started_from")
        if origin:
            steps = f" ({origin['steps']} steps)" if origin.get("steps") else ""
            lines.append(f"Started from: {origin['model']}{steps}.")
        val = training.get("validation")
        if val:
            lines.append(
                f"Validation: AP50 {val['ap50']:.2f}, mean IoU {val['mean_iou']:.2f} "
                f"({val['n_true']} held-out cells)."
            )
        data = training.get("data") or []
        if len(data) > 3:
            cells = sum(d.get("cells", 0) for d in data)
            lines.append(f"Data: {len(data)} images, {cells} annotated cells.")
        for d in data if len(data) <= 3 else []:
            lines.append(f"Data: image {d['shape']}, {d['cells']} annotated cells.")
        cfg = training.get("config") or {}
        keys = ("optimizer", "learning_rate", "tile_size", "w0", "sigma", "seed")
        lines.append("Settings: " + ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg))
    if meta:
        lines.append("Other metadata: " + json.dumps(meta, indent=1, default=str)[:2000])
    return "\n".join(lines)


class ModelWidget(ScrollingDock):
    """Save and load the model in use, or switch to the bundled one; shows its card.

    Reading and writing model files happens in a worker; the last problem stays
    visible in the dock (a notification alone vanishes).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._state = state_for(viewer)
        self._session = self._state.model
        self._workers = WorkerGroup()
        self._in_use = StatusLine(2, label="In use", value=self._session.describe())
        self._save_path = FileEdit(label="Save to", mode="w", filter="*.safetensors")
        self._save = PushButton(text="Save model")
        self._load_path = FileEdit(
            label="Load from", mode="r", filter="Models (*.safetensors *.zip)"
        )
        self._load = PushButton(text="Load model")
        self._bundled = PushButton(text="Use the bundled model", visible=bundled_available())
        self._export_name = LineEdit(label="Export name")
        self._export_name.native.setToolTip(
            "The model's name on bioimage.io: letters, digits, spaces, _ + - ( ) "
            "(other characters become spaces)"
        )
        self._authors = LineEdit(label="Authors")
        self._authors.native.setPlaceholderText("Your Name, A Colleague")
        self._authors.native.setToolTip("Who made the model, separated by commas")
        self._export = PushButton(text="Export for bioimage.io…")
        self._export.native.setToolTip(
            "Write the model in use as a bioimage.io package (.zip) for deepImageJ/Fiji, "
            "ilastik, QuPath and the bioimage.io model zoo"
        )
        self._status = StatusLine(3, label="", value="")
        self._card = TextEdit(label="Model card", value="")
        self._card.native.setReadOnly(True)
        self._card.native.setMinimumHeight(160)
        self.form.extend(
            [
                self._in_use,
                self._save_path,
                self._save,
                self._load_path,
                self._load,
                self._bundled,
                self._export_name,
                self._authors,
                self._export,
                self._status,
                self._card,
            ]
        )
        self._save.changed.connect(self.save)
        self._load.changed.connect(self.load)
        self._bundled.changed.connect(self.use_bundled)
        self._export.changed.connect(self.export)
        self._session.changed.connect(self._refresh)
        self.finish(self._state)
        self._refresh(self._session)
        recovered = recent_recovered_model()
        if recovered is not None:  # napari closed mid-training: offer what was kept
            self._load_path.value = recovered
            self._status.value = (
                f"napari closed during a training run; the model trained so far is kept in "
                f"{recovered}. Press Load model to use it."
            )

    @property
    def busy(self) -> bool:
        """Whether a model file is being read or written."""
        return bool(self._workers.pending)

    def _shutdown(self) -> None:
        self._session.changed.disconnect(self._refresh)
        self._workers.stop_all()

    def _refresh(self, session: Any) -> None:
        self._in_use.value = session.describe()
        self._card.value = describe_model(session.model) if session.model is not None else ""
        meta = getattr(session.model, "metadata", None) or {}
        self._export_name.value = _default_export_name(meta)
        self._authors.value = ", ".join(str(a) for a in meta.get("authors") or [])

    def _report(self, message: str, error: bool = False) -> None:
        """A notification, and the same sentence kept in the dock."""
        (show_error if error else show_info)(message)
        self._status.value = f"Error: {message}" if error else message

    def _failed(self, what: str) -> Any:
        return lambda exc: self._report(f"{what}: {exc}", error=True)

    def save(self) -> None:
        """Save the model in use (atomically, in a worker) to the chosen file."""
        from ..modelfile import save_model

        if self._session.model is None:
            self._report("There is no model to save yet; train or load one first.", error=True)
            return
        path = chosen_path(self._save_path.value)
        if path is None or path.is_dir():
            self._report("Choose a file name to save the model to.", error=True)
            return
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        self._workers.start_function(
            save_model,
            self._session.model,
            path,
            returned=lambda saved: self._report(f"Model saved to {saved}."),
            errored=self._failed("The model could not be saved"),
        )

    def load(self) -> None:
        """Load a model file (in a worker) and make it the one in use."""
        from ..modelfile import load_model

        path = chosen_path(self._load_path.value)
        if path is None:
            self._report(
                "Choose a model file (.safetensors) or a bioimage.io package (.zip) to load.",
                error=True,
            )
            return
        self._workers.start_function(
            load_model,
            path,
            returned=lambda model: self._use(model, path.name),
            errored=self._failed(f"{path.name} could not be loaded"),
        )

    def _ask_export_path(self) -> Path | None:
        """The package to write, from a save dialog (which confirms replacing a file)."""
        start = chosen_path(self._save_path.value)
        start = start.with_suffix(".zip") if start is not None and not start.is_dir() else None
        path, _ = QFileDialog.getSaveFileName(
            self.native,
            "Export for bioimage.io",
            str(start or Path.home() / "model.zip"),
            "bioimage.io package (*.zip)",
            options=QFileDialog.Option.DontUseNativeDialog,
        )
        if not path:
            return None
        path = Path(path)
        return path if path.suffix.lower() == ".zip" else path.with_suffix(".zip")

    def export(self) -> None:
        """Write the model in use as a bioimage.io package (in a worker, with progress)."""
        if self._session.model is None:
            self._report("There is no model to export yet; train or load one first.", error=True)
            return
        name = self._export_name.value.strip() or None
        authors = [a.strip() for a in self._authors.value.split(",") if a.strip()] or None
        path = self._ask_export_path()
        if path is None:
            return
        self._status.value = "Exporting for bioimage.io…"
        self._workers.start_generator(
            _export_steps(self._session.model, path, name, authors),
            yielded=self._on_export_step,
            returned=self._on_exported,
            errored=self._failed("The model could not be exported"),
        )

    def _on_exported(self, result: Any) -> None:
        if isinstance(result, UserProblem):  # bad input, in one sentence
            self._report(f"The model could not be exported: {result.message}", error=True)
        else:
            self._report(f"bioimage.io package written to {result}.")

    def _on_export_step(self, event: Any) -> None:
        self._status.value = f"Exporting for bioimage.io: {event.step} ({event.done}/{event.total})"

    def use_bundled(self) -> None:
        """Make the bundled model the one in use (read in a worker)."""
        from ..bundled import load_bundled_model

        self._workers.start_function(
            load_bundled_model,
            returned=lambda model: self._use(model, "bundled model"),
            errored=self._failed("The bundled model could not be loaded"),
        )

    def _use(self, model: Any, source: str) -> None:
        self._session.set_model(model, source)
        self._report(f"Loaded {source}; it is now the model in use.")


def _default_export_name(metadata: dict) -> str:
    """The model's own name as bioimage.io takes it ("" when it has none that fits)."""
    from ..errors import NapariUnetError
    from ..export.naming import valid_model_name

    try:
        return valid_model_name(str(metadata.get("name") or ""))
    except NapariUnetError:  # no name, or too short: the export's default applies
        return ""


def _export_steps(
    model: Any, path: Path, name: str | None = None, authors: list[str] | None = None
) -> Generator[Any, None, Path]:
    """Export ``model``; the export works on a CPU copy, so training or prediction go on.

    The save dialog has already asked before replacing an existing file.
    """
    from ..export.bioimageio import iter_export_bioimageio

    return (
        yield from iter_export_bioimageio(model, path, name=name, authors=authors, overwrite=True)
    )
