"""Uploaded files on disk: copied once, deleted as soon as they are not needed.

The web page copies each upload to a private file (DuckDB reads paths, and an upload's
own name is never trusted), under ``uploads/`` beside the database. Nothing there
outlives its use: a session's file is deleted when it has been loaded, when another
file replaces it, when its uploader is cleared and when the session ends; whatever a
crash left behind is swept when the app starts (no session exists yet then).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("reclens.uploads")

PREFIX = "reclens-upload-"


def sweep(home: str | Path, prefix: str = PREFIX) -> int:
    """Delete every spooled upload (or other session file folder named ``prefix``...)
    under ``home``; returns how many. Call at start-up."""
    home = Path(home)
    if not home.is_dir():
        return 0
    removed = 0
    for folder in home.glob(prefix + "*"):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _remove(path: Path) -> None:
    """Delete one spooled file and its private folder (already gone is fine)."""
    shutil.rmtree(path.parent, ignore_errors=True)


def _remove_all(files: dict[str, tuple[str, Path]], lock: threading.Lock) -> None:
    with lock:
        for _, path in files.values():
            _remove(path)
        files.clear()


class Spool:
    """One browser session's uploads on disk: at most one file per uploader.

    Kept in the session's state: when Streamlit drops a closed session, the spool is
    garbage collected and its files deleted (and at the latest when the process exits).
    """

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self._files: dict[str, tuple[str, Path]] = {}  # uploader -> (upload id, file)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _remove_all, self._files, self._lock)

    def path(self, slot: str, upload_id: str, data: BinaryIO) -> Path:
        """The file holding upload ``upload_id`` of uploader ``slot``, copied on first use;
        a different upload in the same slot deletes the previous one's file."""
        with self._lock:
            held = self._files.get(slot)
            if held and held[0] == upload_id and held[1].exists():
                return held[1]
            if held:
                _remove(held[1])
            self.home.mkdir(parents=True, exist_ok=True)
            target = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.home)) / "upload.bin"
            data.seek(0)
            try:
                with open(target, "wb") as out:
                    shutil.copyfileobj(data, out, length=1 << 20)
            except BaseException:
                _remove(target)
                self._files.pop(slot, None)
                raise
            self._files[slot] = (upload_id, target)
            return target

    def discard(self, slot: str) -> None:
        """Delete the file of uploader ``slot`` (loaded, or the uploader was cleared)."""
        with self._lock:
            held = self._files.pop(slot, None)
        if held:
            _remove(held[1])

    def files(self) -> list[Path]:
        """The files this spool holds now."""
        with self._lock:
            return [path for _, path in self._files.values()]

    def close(self) -> None:
        """Delete every file of this spool."""
        self._finalizer()
