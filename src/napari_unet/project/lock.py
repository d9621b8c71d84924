"""One napari window per project folder: a ``.lock`` file naming the session that owns it.

Two windows writing one manifest (or one ``history.json``) would overwrite each
other's entries. A session that makes a project its own takes its lock; another
session (a viewer of this process, or a napari whose process is alive on this
host, or one on another host) is refused in one sentence. A lock left by a
process that is no longer running on this host is stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from pathlib import Path

from ..errors import NapariUnetError

__all__ = ["LOCK_FILE", "ProjectInUseError", "ProjectLock"]

LOCK_FILE = ".lock"

# Folders held by sessions of this process: resolved path -> the holder's token.
_HELD: dict[str, str] = {}
_GUARD = threading.Lock()


class ProjectInUseError(NapariUnetError):
    """The project folder is open in another napari window."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


class ProjectLock:
    """The lock of one project folder for one session.

    Parameters
    ----------
    folder : path-like
        The project folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).absolute()
        self.token = uuid.uuid4().hex
        self._key = str(self.folder.resolve())

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.folder / LOCK_FILE

    def _refuse(self) -> ProjectInUseError:
        return ProjectInUseError(
            f"The project {self.folder} is open in another napari window; "
            "close it there or choose another folder."
        )

    def _holder(self) -> dict | None:
        """The lock file's content when another live session holds it, else None."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # half-written or damaged: nobody can be identified, take it over
        if not isinstance(doc, dict) or doc.get("token") == self.token:
            return None
        if doc.get("host") != socket.gethostname():
            return doc  # another machine's process cannot be checked: assume it is alive
        pid = doc.get("pid")
        if not isinstance(pid, int):
            return None
        if pid == os.getpid():
            # this process: held only while a session of it has the folder
            return doc if _HELD.get(self._key) == doc.get("token") else None
        return doc if _pid_alive(pid) else None

    def acquire(self, *, create: bool = True) -> None:
        """Make the folder this session's, or raise :class:`ProjectInUseError`.

        Parameters
        ----------
        create : bool
            Write the lock file (making the folder) now; when False it is written
            only if the folder exists (a default project is made at its first save),
            and :meth:`acquire` is called again then.
        """
        with _GUARD:
            holder = _HELD.get(self._key)
            if holder is not None and holder != self.token:
                raise self._refuse()
            if self._holder() is not None:
                raise self._refuse()
            _HELD[self._key] = self.token
            if not create and not self.folder.is_dir():
                return
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._write()
            except ProjectInUseError:
                del _HELD[self._key]
                raise
            except OSError as exc:
                if _HELD.get(self._key) == self.token:
                    del _HELD[self._key]
                raise NapariUnetError(
                    f"The project folder {self.folder} could not be written ({exc.strerror})."
                ) from None

    def _write(self) -> None:
        doc = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": self.token})
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                return
        except (OSError, ValueError, AttributeError):
            pass
        try:  # no lock file: create it exclusively, so two processes cannot both win
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if self._holder() is not None:  # another process was quicker
                raise self._refuse() from None
            # a stale lock is replaced whole: written aside, then renamed over it
            tmp = self.path.with_name(f"{LOCK_FILE}.{self.token}")
            tmp.write_text(doc)
            os.replace(tmp, self.path)
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(doc)

    def release(self) -> None:
        """Give the folder up: the lock file goes (if it is still this session's)."""
        with _GUARD:
            if _HELD.get(self._key) == self.token:
                del _HELD[self._key]
            try:
                if json.loads(self.path.read_text()).get("token") == self.token:
                    self.path.unlink()
            except (OSError, ValueError, AttributeError):
                pass
