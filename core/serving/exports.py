"""Every user's top-K: ranked in batches, written to a file, in the background for the app.

:func:`top_k_all` ranks every user of a dataset in batches (histories sorted by length so
each batch only pays for its longest row); :func:`export_top_k` writes the result to
Parquet or CSV (the CLI's ``export``).

The web page starts an :class:`ExportJob` instead of ranking every user inside a page
run: the page stays responsive, shows the progress, and offers the finished file as a
download that is read from disk only when clicked. Files live under ``exports/``
beside the database; a job's file is deleted when the job is replaced or its session
ends, and leftovers are swept at start-up (:func:`core.data.uploads.sweep`).
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from core.common.columns import Columns
from core.common.progress import ProgressFn
from core.serving.model_data import ModelData, batched_states, logits_from_states

log = logging.getLogger("reclens.exports")

PREFIX = "reclens-export-"


@torch.no_grad()
def top_k_all(
    data: ModelData,
    k: int = 20,
    exclude_seen: bool = True,
    batch: int = 512,
    progress: ProgressFn | None = None,
    keep_states: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Top-``k`` of every user of ``data`` in batches.

    Returns:
        (user numbers (n,), item indices (n, k), scores (n, k) softmax probabilities,
        head states (n, hidden) when ``keep_states`` else None), rows in user order.
        A user with fewer than ``k`` items left to recommend (seen items excluded) has
        item 0 and score 0 in the remaining places.
    """
    saved, hist = data.saved, data.histories
    n = hist.n_users
    k = max(1, min(int(k), saved.config.n_items))
    items = np.zeros((n, k), dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float32)
    states_out = np.zeros((n, saved.config.hidden), dtype=np.float32) if keep_states else None
    done = 0
    last_items = np.zeros(n, dtype=np.int64)  # each user's last item (0 = none)
    has = hist.lengths > 0
    last_items[has] = hist.items[hist.offsets[1:][has] - 1]
    for users, states, table in batched_states(saved, hist, batch=batch):
        logits = logits_from_states(saved, states, table, torch.from_numpy(last_items[users]))
        # With a transition memory the logits are already log-probabilities.
        lse = 0.0 if saved.config.transitions else torch.logsumexp(logits, -1, keepdim=True)
        if exclude_seen:
            lens = hist.lengths[users]
            rows = np.repeat(np.arange(len(users)), lens)
            within = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
            cols = hist.items[np.repeat(hist.offsets[users], lens) + within]
            logits[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = float("-inf")
        top_logits, top = torch.topk(logits, k, dim=-1)
        # a user with fewer than k unseen items: the rest of the row is empty (item 0)
        top = top.masked_fill(torch.isinf(top_logits), 0)
        items[users] = top.numpy()
        scores[users] = torch.exp(top_logits - lse).numpy()
        if states_out is not None:
            states_out[users] = states.numpy()
        done += len(users)
        if progress:
            progress(done / max(1, n), f"ranked {done:,} of {n:,} users")
    return np.arange(n), items, scores, states_out


def top_k_table(data: ModelData, k: int = 20, exclude_seen: bool = True, **kw) -> pa.Table:
    """Every user's top-``k`` as an Arrow table: user_id, rank, item_id, score (a user
    with fewer than ``k`` unseen items has fewer rows)."""
    users, items, scores, _ = top_k_all(data, k, exclude_seen, **kw)
    k = items.shape[1]
    keep = items.reshape(-1) > 0
    return pa.table(
        {
            Columns.USER: pa.array(np.repeat(data.histories.user_ids[users], k)[keep], pa.string()),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))[keep]),
            Columns.ITEM: pa.array(data.saved.item_ids[items.reshape(-1)[keep]], pa.string()),
            "score": pa.array(scores.reshape(-1)[keep]),
        }
    )


def write_table(table: pa.Table, out: str | Path | io.BytesIO, fmt: str) -> None:
    """Write an Arrow table as ``parquet`` or ``csv``."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    else:
        raise ValueError(f"unknown export format {fmt!r}: choose parquet or csv")


def export_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"{path}: the export file must end in .parquet or .csv")


def export_top_k(
    data: ModelData,
    out: str | Path,
    k: int = 20,
    exclude_seen: bool = True,
    progress: ProgressFn | None = None,
) -> dict:
    """Write every user's top-``k`` (user_id, rank, item_id, score) to Parquet or CSV."""
    fmt = export_format(out)
    started = time.perf_counter()
    table = top_k_table(data, k, exclude_seen, progress=progress)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_table(table, str(out), fmt)
    return {
        "path": str(out),
        "format": fmt,
        "users": data.histories.n_users,
        "rows": table.num_rows,
        "k": int(k),
        "seconds": round(time.perf_counter() - started, 2),
    }


class ExportJob:
    """One export of every user's top-``k`` running in a thread.

    Attributes:
        key: what was asked for (the page compares it with its current settings).
        path: the file being written.
        fraction, message: the latest progress.
        result: :func:`export_top_k`'s summary once done.
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
