"""What every benchmark script reports besides its figures: machine, load, code measured.

Imported by the scripts in this folder (run as ``python bench/NAME.py``); importing it
also puts the repository root on ``sys.path`` so the scripts can import ``core``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    """Progress on stderr (stdout carries the one JSON object)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def loadavg(all_three: bool = False) -> float | list[float] | None:
    """1-minute load average (or the 1, 5 and 15-minute ones): other work makes figures noisy."""
    try:
        values = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None
    return values if all_three else values[0]


def machine(**extra) -> dict:
    """Facts about the machine the figures come from, plus the script's own ``extra``."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "ram_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **extra,
    }


def code_state(files: Sequence[str]) -> dict:
    """Which RecLens code was measured: git HEAD, local changes and a hash of ``files`` (a
    folder stands for the Python files under it)."""
    digest = hashlib.sha256()
    for name in files:
        path = ROOT / name
        for one in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            body = one.read_bytes() if one.exists() else b""
            digest.update(str(one.relative_to(ROOT)).encode() + b"\0" + body)
    state: dict = {"files": list(files), "sha256": digest.hexdigest()[:16]}
    try:
        state["git_head"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        state["modified_since_head"] = bool(changed.strip())
    except OSError:
        pass
    return state


def ingest_movielens(store, folder: str | Path):
    """Load MovieLens ml-latest-small (``ratings.csv`` + ``movies.csv`` in ``folder``) into
    ``store`` as dataset ``movielens``, every rating an event; returns the IngestResult."""
    from core.data.ingest import ingest
    from core.data.mapping import EventMapping, ItemMapping

    folder = Path(folder)
    return ingest(
        store,
        "movielens",
        folder / "ratings.csv",
        EventMapping(user="userId", item="movieId", time="timestamp", value="rating"),
        items_path=folder / "movies.csv",
        item_mapping=ItemMapping(item="movieId", title="title", categories="genres"),
    )


def ingest_beauty(store, path: str | Path):
    """Load Amazon Beauty's ``beauty.txt`` (``user item``, space-delimited, no header,
    file order = time) into ``store`` as dataset ``beauty``; returns the IngestResult."""
    from core.data.ingest import ingest
    from core.data.mapping import EventMapping
    from core.data.sources import ReadOptions

    return ingest(
        store,
        "beauty",
        path,
        EventMapping(user=1, item=2),
        read=ReadOptions(delimiter=" ", header=False),
    )
