"""The rounds of a project: every Fine-tune, its scores and its model, comparable and undoable.

``history.json`` in the project folder lists the rounds; each round's model is
``rounds/round-NNN.safetensors``. Both are written atomically, the model first,
so the history never names a model that is not on disk.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NapariUnetError
from ..fileio import atomic_write

if TYPE_CHECKING:
    from ..model import UNet

__all__ = ["HISTORY_FILE", "ROUNDS_FOLDER", "RoundHistory", "RoundRecord"]

HISTORY_FILE = "history.json"
ROUNDS_FOLDER = "rounds"
_FORMAT = 1

# One lock per project folder, shared by every RoundHistory of it in this process: a
# round added by a worker and "use this round" from the GUI must not write stale copies.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(folder: Path) -> threading.Lock:
    key = str(folder.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@dataclass
class RoundRecord:
    """One Fine-tune of a project.

    Attributes
    ----------
    round : int
        1 for the first Fine-tune.
    time : str
        When it ended (local time, ISO 8601).
    start_model : str
        What it started from ("bundled", "round 2", a file name, "scratch").
    cells, new_cells : int
        Annotated cells trained and validated on, and how many more than the
        round before.
    steps : int
    seconds : float
    ap50, mean_iou : float or None
        Validation scores (None without validation cells).
    val_cells : int
        How many held-out cells the scores rest on (human cells only: cells copied
        from a prediction and not edited are never held out).
    model_file : str
        The round's model, relative to the project folder.
    entries : list of str
        The training set's entries.
    start_ap50, start_mean_iou : float or None
        The start model's scores on the same held-out cells (the guard's reference).
    put_in_use : bool
        False when the round scored worse than its start model, so the earlier
        model stayed in use (the round is kept; it can still be chosen).
    objects : str
        The instance rule the round's model applies, in plain words (with its
        calibration on the user's cells); "" in histories written before it.
    """

    round: int
    time: str
    start_model: str
    cells: int
    new_cells: int
    steps: int
    seconds: float
    ap50: float | None
    mean_iou: float | None
    val_cells: int
    model_file: str
    entries: list[str] = field(default_factory=list)
    start_ap50: float | None = None
    start_mean_iou: float | None = None
    put_in_use: bool = True
    objects: str = ""


class RoundHistory:
    """The rounds stored in a project folder.

    Parameters
    ----------
    folder : path-like
        The project folder (created when the first round is added).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.rounds: list[RoundRecord] = []
        self.current: int | None = None
        self._read()

    @property
    def path(self) -> Path:
        """The history file."""
        return self.folder / HISTORY_FILE

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            known = {f.name for f in fields(RoundRecord)}
            self.rounds = [
                RoundRecord(**{k: v for k, v in r.items() if k in known}) for r in data["rounds"]
            ]
            self.current = data.get("current")
        except (ValueError, KeyError, TypeError) as exc:
            raise NapariUnetError(
                f"The round history {self.path} is damaged and cannot be read ({exc})."
            ) from None

    def _write(self) -> None:
        data = {
            "format": _FORMAT,
            "current": self.current,
            "rounds": [asdict(r) for r in self.rounds],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, "w") as fh:
            json.dump(data, fh, indent=1)

    def add_round(self, model: UNet, *, make_current: bool = True, **info: Any) -> RoundRecord:
        """Save ``model`` as the next round and (unless told otherwise) make it the round in use.

        Parameters
        ----------
        model : UNet
            The trained model.
        make_current : bool
            False: keep it in the history but leave the round in use as it is
            (the guard found it worse than its start model).
        **info
            The other :class:`RoundRecord` fields (``start_model``, ``cells``,
            ``steps``, ``seconds``, ``ap50``, ``mean_iou``, ``val_cells``,
            ``entries``, ``objects``); ``round``, ``time``, ``model_file`` and ``new_cells``
            are filled in.

        Returns
        -------
        RoundRecord
        """
        from ..modelfile import save_model

        with _lock_for(self.folder):
            self._read()  # another writer may have changed it since
            return self._add_round(model, save_model, info, make_current)

    def _add_round(
        self, model: UNet, save_model: Any, info: dict[str, Any], make_current: bool = True
    ) -> RoundRecord:
        k = (self.rounds[-1].round if self.rounds else 0) + 1
        rel = f"{ROUNDS_FOLDER}/round-{k:03d}.safetensors"
        (self.folder / ROUNDS_FOLDER).mkdir(parents=True, exist_ok=True)
        save_model(model, self.folder / rel)
        previous = self.rounds[-1].cells if self.rounds else 0
        info.setdefault("new_cells", max(0, int(info.get("cells", 0)) - previous))
        record = RoundRecord(
            round=k,
            time=time.strftime("%Y-%m-%dT%H:%M:%S"),
            model_file=rel,
            put_in_use=make_current,
            **info,
        )
        self.rounds.append(record)
        if make_current:
            self.current = k
        self._write()
        return record

    def get(self, k: int) -> RoundRecord:
        """Round ``k``."""
        for r in self.rounds:
            if r.round == k:
                return r
        raise NapariUnetError(f"This project has no round {k}.")

    def model_path(self, k: int) -> Path:
        """The model file of round ``k``."""
        return self.folder / self.get(k).model_file

    def load_model(self, k: int) -> UNet:
        """Round ``k``'s model, as it was saved."""
        from ..modelfile import load_model

        path = self.model_path(k)
        if not path.exists():
            raise NapariUnetError(f"The model of round {k} ({path.name}) is missing.")
        return load_model(path)

    def set_current(self, k: int | None) -> None:
        """Record that round ``k``'s model is in use (None: a model from elsewhere)."""
        with _lock_for(self.folder):
            self._read()  # another writer may have added a round since
            if k is not None:
                self.get(k)
            self.current = k
            self._write()
