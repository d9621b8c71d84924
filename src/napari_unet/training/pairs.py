"""A training set on disk: ``NAME.tif`` with ``NAME_labels.tif`` (and ``NAME_region.tif``).

The same names the batch prediction writes (``NAME_labels.tif``), so a folder
segmented in a batch, then corrected, is a training set as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import NapariUnetError

__all__ = ["IMAGE_SUFFIXES", "TrainingFiles", "find_pairs"]

# Files read as training images (and their labels and regions).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
# Name endings of the files that go with an image.
LABELS, REGION = "_labels", "_region"
# Other outputs of napari-unet found next to images; not training images.
IGNORED = ("_probabilities", "_weightmap", "_weights")


@dataclass
class TrainingFiles:
    """The files of a training set, one entry per image."""

    images: list[Path]
    labels: list[Path]
    regions: list[Path | None]
    names: list[str]


def find_pairs(folder: str | Path) -> TrainingFiles:
    """Pair every image in ``folder`` with its labels (and region, when there is one).

    Parameters
    ----------
    folder : path-like
        Holds ``NAME.tif`` and ``NAME_labels.tif`` for each training image, and
        optionally ``NAME_region.tif`` (True where the annotation is complete).
        ``.tiff`` and ``.png`` work too; napari-unet's other outputs
        (``*_probabilities``, ``*_weightmap``) are skipped.

    Returns
    -------
    TrainingFiles
        Sorted by name.

    Raises
    ------
    NapariUnetError
        When the folder is missing or holds no pair, or when a file has no
        partner (all such files are listed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NapariUnetError(f"The training folder {folder} does not exist.")
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    regions: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = path.stem
        if stem.endswith(IGNORED):
            continue
        if stem.endswith(LABELS):
            _put(labels, stem[: -len(LABELS)], path)
        elif stem.endswith(REGION):
            _put(regions, stem[: -len(REGION)], path)
        else:
            _put(images, stem, path)
    unpaired = sorted(
        [p.name for n, p in images.items() if n not in labels]
        + [p.name for n, p in labels.items() if n not in images]
        + [p.name for n, p in regions.items() if n not in images]
    )
    if unpaired:
        listed = ", ".join(unpaired[:10]) + (
            f" and {len(unpaired) - 10} more" if len(unpaired) > 10 else ""
        )
        raise NapariUnetError(
            f"These files in {folder} have no partner: {listed} "
            "(each NAME.tif needs NAME_labels.tif; NAME_region.tif is optional)."
        )
    if not images:
        raise NapariUnetError(
            f"No training pair was found in {folder}: put NAME.tif next to NAME_labels.tif."
        )
    names = sorted(images)
    return TrainingFiles(
        images=[images[n] for n in names],
        labels=[labels[n] for n in names],
        regions=[regions.get(n) for n in names],
        names=names,
    )


def _put(found: dict[str, Path], name: str, path: Path) -> None:
    if name in found:
        raise NapariUnetError(
            f"Both {found[name].name} and {path.name} are in the training folder; keep one."
        )
    found[name] = path
