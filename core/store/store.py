"""The :class:`Store`, assembled from one part per module, and :func:`open_store`, which
keeps one store per database file per process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from core.store.connection import DEFAULT_DB
from core.store.registry import Registry
from core.store.sources import Sources
from core.store.staging import Staging
from core.store.stats import Stats
from core.store.vectors import Vectors


class Store(Sources, Staging, Stats, Registry, Vectors):
    """A DuckDB database file holding every dataset, model and evaluation.

    Args:
        path (str | Path): database file; created with its folder when missing.
            ``":memory:"`` gives a private in-memory store (tests).
        read_only (bool, default False): open without the write lock, for a
            second process that only reads.
    """


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(path: str | Path | None = None) -> Store:
    """The process-wide :class:`Store` for ``path`` (default: ``$RECLENS_DB``, else data/)."""
    path = path or os.environ.get("RECLENS_DB") or DEFAULT_DB
    key = str(path) if str(path) == ":memory:" else str(Path(path).resolve())
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = Store(path)
            _STORES[key] = store
        return store
