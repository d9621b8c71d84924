"""Segmenting many images in one run: a folder or a list of files, one image at a time.

:func:`segment_files` is a generator, like the other long runs of the core: it
yields a :class:`BatchEvent` as each image starts, as its prediction progresses
and as it ends (with its object count, or with the one sentence that says why it
failed) and returns a :class:`BatchResult`. One image that fails (not an image,
too big, an output already there) is listed and the run goes on with the next.
Closing the generator (the GUI's Cancel) stops within one batch of tiles.

Results are named ``NAME_labels.tif`` (or ``NAME_labels.zarr``), in ``out_dir``
or next to each image: the names a training folder pairs with ``NAME.tif``, so a
corrected batch result can be trained on. :func:`image_files` skips these
names, so segmenting a folder twice never segments its own results.

Modules: ``events`` (what a run reports), ``naming`` (which files, what results
are called), ``runner`` (:func:`iter_batch`, one item at a time),
``output_checks`` (what may be written), ``files`` (:func:`segment_files`).
"""

from ..fileio import is_zarr_store
from .events import BatchEvent, BatchItem, BatchResult, BatchState, Outcome, display_name
from .files import segment_files, segment_folder
from .naming import OWN_OUTPUTS, image_files, output_path
from .output_checks import SOFTWARE, written_by_batch
from .runner import iter_batch, problem_sentence

__all__ = [
    "BatchEvent",
    "BatchItem",
    "BatchResult",
    "BatchState",
    "OWN_OUTPUTS",
    "Outcome",
    "SOFTWARE",
    "display_name",
    "image_files",
    "is_zarr_store",
    "iter_batch",
    "output_path",
    "problem_sentence",
    "segment_files",
    "segment_folder",
    "written_by_batch",
]
