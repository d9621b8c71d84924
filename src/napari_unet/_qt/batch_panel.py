"""The Predict dock's batch section: every open image, or a folder of image files.

Both run in one thread worker around the core's :func:`napari_unet.batch.iter_batch`
generator: one image at a time, one progress bar over all of them, a Cancel that
takes effect within one batch of tiles, and a summary with each image's object
count and the failures (which also come as a notification).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, ProgressBar, PushButton
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QSizePolicy

from ..errors import NapariUnetError
from .layers import is_derived, is_lazy, layer_image
from .model_choice import chosen_path
from .prediction import _segment_job, show_segmentation
from .project_session import project_for
from .workers import UserProblem, WorkerGroup

if TYPE_CHECKING:
    import napari

    from ..batch import BatchEvent, BatchResult

NEXT_TO, CHOSEN, PROJECT = "next to the images", "in a folder I choose", "into the project"
# Where results go inside a project folder.
PROJECT_RESULTS = "predictions"
TIFF, ZARR = "TIFF", "zarr"
_STEPS = 1000  # progress bar resolution
_LISTED = 10  # per-image counts shown in the summary; the rest are counted


def _open_images_job(model: Any, items: list, diameter, tile, device, tta=False, precision="auto"):
    """In the worker: segment the open images in turn (``items``: name, pixels or None, rgb)."""
    from ..batch import Outcome, iter_batch
    from ..modelfile import resolve_model_arg

    model = resolve_model_arg(model)  # loaded once for all images
    pixels = {name: (data, rgb) for name, data, rgb in items}

    def segment_one(name: str, _index: int):
        data, rgb = pixels.pop(name)  # dropped once used: memory for one image at a time
        if data is None:
            raise NapariUnetError(
                f"{name} is not in memory; segment it on its own, into a zarr store."
            )
        foreground, labels, _, _ = yield from _segment_job(
            model, data, rgb, diameter, tile, device, tta=tta, precision=precision
        )
        return Outcome(int(labels.max()), data=(foreground, labels))

    return (yield from iter_batch([name for name, _, _ in items], segment_one))


def _folder_job(folder: Path, out_dir: Path | None, **options: Any):
    """In the worker: list the folder's images, then segment them into files."""
    from ..batch import image_files, segment_files

    paths = image_files(folder)
    if not paths:
        raise NapariUnetError(f"The folder {folder} holds no images (TIFF, PNG, JPEG or zarr).")
    return (yield from segment_files(paths, out_dir, **options))


def describe(result: BatchResult) -> str:
    """The summary line, each image's object count, then each failure with its reason."""
    from ..batch import display_name

    lines = [result.summary() + "."]
    for item in result.done[:_LISTED]:
        lines.append(f"{display_name(item.source)}: {item.n_objects:,} objects")
    if len(result.done) > _LISTED:
        lines.append(f"... and {len(result.done) - _LISTED} more images.")
    lines += [failure_line(source, message) for source, message in result.failures]
    return "\n".join(lines)


def failure_line(source: Path | str, message: str) -> str:
    """A failure as "bad.tif failed: ...": the file's name, not its whole path."""
    from ..batch import display_name

    name = display_name(source)  # the folder is in the dock's field already
    return f"{name} failed: {message.replace(str(source), name)}"


class BatchPanel:
    """The batch fields of the Predict dock and the worker behind them.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    settings : callable
        Returns the dock's prediction settings: a dict with ``model`` (a loader),
        ``tile``, ``device``, ``diameter`` and ``tta``; raises ``ValueError`` with a
        sentence when they are incomplete.
    busy : callable
        Whether the dock's single-image prediction is running.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        settings: Callable[[], dict],
        busy: Callable[[], bool],
    ) -> None:
        self._viewer = viewer
        self._settings = settings
        self._busy = busy
        self._workers = WorkerGroup()
        self.worker = None
        self._ended = 0  # images finished (done or failed) in the run under way
        self._total = 0
        heading = Label(label="", value="Batch")
        heading.native.setStyleSheet("font-weight: bold; margin-top: 8px;")
        self._all_open = PushButton(
            text="Segment all open images",
            tooltip="Every image layer (not the plugin's own results) gets its segmentation "
            "layer, as Segment gives one image.",
        )
        self._folder = FileEdit(label="Image folder", mode="d")
        self._where = ComboBox(
            label="Results",
            choices=self._destinations,
            value=NEXT_TO,
            tooltip="Into the project: the open project's 'predictions' folder.",
        )
        self._out_dir = FileEdit(label="Results folder", mode="d")
        self._format = ComboBox(
            label="Format",
            choices=[TIFF, ZARR],
            value=TIFF,
            tooltip="NAME_labels.tif, or a NAME_labels.zarr store written chunk by chunk "
            "(zarr images always give zarr). The names pair with NAME.tif for training.",
        )
        self._overwrite = CheckBox(text="Replace existing results", value=False)
        self._run_folder = PushButton(text="Segment folder")
        self._cancel = PushButton(text="Cancel batch", enabled=False)
        self._progress = ProgressBar(label="Batch", value=0, min=0, max=_STEPS)
        self._summary = Label(label="", value="")
        for label in (heading, self._summary):  # fill the row, so left-aligned text is left
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        # long lines (a failure's reason) wrap instead of widening the dock
        self._summary.native.setMinimumWidth(1)
        self.widgets = [
            heading,
            self._all_open,
            self._folder,
            self._where,
            self._out_dir,
            self._format,
            self._overwrite,
            self._run_folder,
            self._cancel,
            self._progress,
            self._summary,
        ]
        self._out_dir.visible = False
        self._project = project_for(viewer)
        self._project.changed.connect(self._on_project)
        self._where.changed.connect(
            lambda value: setattr(self._out_dir, "visible", value == CHOSEN)
        )
        self._all_open.changed.connect(self.segment_open_images)
        self._run_folder.changed.connect(self.segment_folder)
        self._cancel.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a batch is under way."""
        return self.worker is not None

    def _checked_settings(self) -> dict | None:
        """The dock's settings, or None (with a notification) when a run cannot start."""
        if self.running:
            return None
        if self._busy():
            show_warning("A prediction is under way; wait for it or cancel it first.")
            return None
        try:
            return self._settings()
        except ValueError as exc:
            show_error(str(exc))
            return None

    def segment_open_images(self) -> None:
        """Segment every open image layer in turn; each gets its segmentation layer."""
        settings = self._checked_settings()
        if settings is None:
            return
        from napari.layers import Image

        layers = [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_derived(layer)
        ]
        if not layers:
            show_error("There are no images open to segment.")
            return
        # pixels are taken here, on the GUI thread; lazy images are listed as failures
        items = [
            (layer.name, None if is_lazy(layer) else layer_image(layer), layer.rgb)
            for layer in layers
        ]
        gen = _open_images_job(
            settings["model"],
            items,
            settings["diameter"],
            settings["tile"],
            settings["device"],
            settings["tta"],
            settings.get("precision", "auto"),
        )
        self._start(gen, len(items))

    def _on_project(self, *_: Any) -> None:
        self._where.reset_choices()

    def _destinations(self, _widget: Any = None) -> list[str]:
        """Where results may go: "into the project" only while one is open."""
        has_project = project_for(self._viewer).project is not None
        return [NEXT_TO, CHOSEN, *([PROJECT] if has_project else [])]

    def segment_folder(self) -> None:
        """Segment every image file in the chosen folder into result files."""
        settings = self._checked_settings()
        if settings is None:
            return
        folder = chosen_path(self._folder.value)
        if folder is None:
            show_error("Choose a folder of images first.")
            return
        out_dir = None
        if self._where.value == PROJECT:
            project = project_for(self._viewer).project
            if project is None:
                show_error("No project is open; write the results next to the images instead.")
                return
            out_dir = project.folder / PROJECT_RESULTS
            out_dir.mkdir(parents=True, exist_ok=True)
        if self._where.value == CHOSEN:
            out_dir = chosen_path(self._out_dir.value)
            if out_dir is None:
                show_error("Choose a folder for the results, or write them next to the images.")
                return
        gen = _folder_job(
            folder,
            out_dir,
            model=settings["model"],
            output_format="zarr" if self._format.value == ZARR else "tiff",
            overwrite=self._overwrite.value,
            diameter=settings["diameter"],
            tile_shape=settings["tile"],
            device=settings["device"],
            tta=settings["tta"],
            precision=settings.get("precision", "auto"),
        )
        self._start(gen, 0)

    def _start(self, gen: Any, total: int) -> None:
        self._ended, self._total = 0, total
        self._progress.value = 0
        self._summary.value = "Starting..."
        self._set_running(True)
        self.worker = self._workers.start_generator(
            gen,
            yielded=self._on_event,
            returned=self._on_result,
            errored=lambda exc: self._end(f"The batch failed: {exc}", error=True),
            aborted=self._on_aborted,
            finished=self._on_finished,
        )

    def _set_running(self, running: bool) -> None:
        self._all_open.enabled = not running
        self._run_folder.enabled = not running
        self._cancel.enabled = running

    def cancel(self) -> None:
        """Stop after the current batch of tiles; finished images keep their results."""
        if self.worker is not None:
            self.worker.quit()

    def shutdown(self, timeout: float = 10.0) -> None:
        """The dock or viewer closes: stop the batch and wait for it to end."""
        self._project.changed.disconnect(self._on_project)
        self._workers.stop_all(timeout)
        self.worker = None

    def _on_event(self, event: BatchEvent) -> None:
        from ..batch import BatchState, display_name

        self._total = event.total
        self._progress.value = round(event.overall * _STEPS)
        if event.state is BatchState.STARTED:
            name = display_name(event.source)
            self._summary.value = f"Segmenting {event.index + 1} of {event.total}: {name}..."
        elif event.state in (BatchState.DONE, BatchState.FAILED):
            self._ended = event.index + 1
        if event.state is BatchState.DONE and event.data is not None:
            foreground, labels = event.data
            show_segmentation(self._viewer, str(event.source), foreground, labels)

    def _on_result(self, result: BatchResult | UserProblem) -> None:
        if isinstance(result, UserProblem):
            self._end(result.message, error=True)
            return
        self._summary.value = describe(result)
        if result.failures:
            reasons = " ".join(failure_line(s, m) for s, m in result.failures)
            show_warning(f"{len(result.failures)} of {self._total} images failed. {reasons}")
        else:
            show_info(result.summary() + ".")

    def _on_aborted(self) -> None:
        self._summary.value = (
            f"Cancelled after {self._ended} of {self._total} images; "
            "finished images keep their results."
        )

    def _end(self, message: str, error: bool = False) -> None:
        (show_error if error else show_info)(message)
        self._summary.value = message

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
