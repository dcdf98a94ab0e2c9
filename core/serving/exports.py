"""Every user's top-K written in the background: progress while it ranks, then a file.

The web page starts an :class:`ExportJob` instead of ranking every user inside a page
run: the page stays responsive, shows the progress, and offers the finished file as a
download that is read from disk only when clicked. Files live under ``exports/``
beside the database; a job's file is deleted when the job is replaced or its session
ends, and leftovers are swept at start-up (:func:`core.data.uploads.sweep`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import torch

from core.serving.recommend import ModelData, export_top_k

log = logging.getLogger("reclens.exports")

PREFIX = "reclens-export-"


class ExportJob:
    """One export of every user's top-``k`` running in a thread.

    Attributes:
        key: what was asked for (the page compares it with its current settings).
        path: the file being written.
        fraction, message: the latest progress.
        result: :func:`core.serving.recommend.export_top_k`'s summary once done.
        error: a message when it failed.
    """

    def __init__(
        self,
        data: ModelData,
        home: str | Path,
        file_name: str,
        k: int,
        fmt: str,
        exclude_seen: bool,
        key: Any = None,
    ) -> None:
        Path(home).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=home))
        self.key = key
        self.path = folder / f"{Path(file_name).stem}.{fmt}"
        self.fraction, self.message = 0.0, "starting"
        self.result: dict | None = None
        self.error: str | None = None
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, True)
        self._thread = threading.Thread(
            target=self._run, args=(data, k, exclude_seen), name="reclens-export", daemon=True
        )
        self._thread.start()

    def _run(self, data: ModelData, k: int, exclude_seen: bool) -> None:
        try:
            with torch.inference_mode():  # grad mode is per thread: off here too
                self.result = export_top_k(
                    data, self.path, k, exclude_seen, progress=self._progress
                )
            self.fraction, self.message = 1.0, "done"
        except Exception as exc:  # reported on the page; the traceback goes to the log
            log.exception("export failed")
            self.error = f"the export failed: {exc}"
        if not self._finalizer.alive:  # discarded while it ran: leave nothing behind
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = min(1.0, float(fraction)), message

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the export ends (or ``timeout`` seconds pass); True when done."""
        self._thread.join(timeout)
        return self.done

    def read(self) -> bytes:
        """The finished file's bytes (for a download, when it is clicked)."""
        return self.path.read_bytes()

    def discard(self) -> None:
        """Delete the file (the job keeps running to its end if it has not finished)."""
        self._finalizer()
