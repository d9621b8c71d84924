"""What a batch may write: never over an input, twice in a run, or over a file not its own."""

from __future__ import annotations

from pathlib import Path

from ..errors import NapariUnetError

__all__ = ["SOFTWARE", "check_batch_output", "written_by_batch"]

# The TIFF Software tag of batch results: only files carrying it are ever replaced.
SOFTWARE = "napari-unet batch"


def check_batch_output(out: Path, inputs: set[Path], written: set[Path], overwrite: bool) -> None:
    """Refuse, for this image only, an output that would replace data."""
    target = out.resolve()
    if target in inputs or any(i in target.parents or target in i.parents for i in inputs):
        raise NapariUnetError(f"The result {out} would overwrite an input image; it was skipped.")
    if target in written:
        raise NapariUnetError(
            f"Another image of this batch already wrote {out.name} (two images with one name); "
            "this one was skipped."
        )
    if out.exists() and not overwrite:
        raise NapariUnetError(
            f"{out} already exists and was kept; allow overwriting to replace it."
        )
    if out.is_file() and not written_by_batch(out):
        # NAME_labels.tif is also what a hand-made annotation is called (train --data)
        raise NapariUnetError(
            f"{out} was not written by napari-unet (it may be your own annotation); "
            "it was kept. Write the results into another folder."
        )


def written_by_batch(path: Path) -> bool:
    """Whether the TIFF at ``path`` is a result napari-unet's batch wrote (its Software tag)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get("Software")
            return tag is not None and str(tag.value).startswith(SOFTWARE)
    except Exception:  # not a TIFF, or unreadable: not ours
        return False
