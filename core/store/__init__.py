"""The DuckDB behaviour store: schema, migrations and every SQL statement of RecLens.

One :class:`Store` per database file per process (:func:`open_store`), one DuckDB
cursor per thread (:meth:`Store.cursor`), and every write inside an explicit
transaction (:meth:`Store.transaction`) serialised by a process-wide lock, so the
store has exactly one writer and any number of readers.

User input never becomes SQL text: values travel as parameters and column names
that come from an uploaded file pass through :func:`quote_ident`, the only place
that turns a string into an identifier. Dataset names are validated slugs and are
stored as values; internally a dataset is addressed by an integer id.

This file is the package's face: the rest of RecLens imports from ``core.store``. Where
each part lives:

* ``store.py``: :class:`Store`, assembled from the parts below, and :func:`open_store`.
* ``connection.py``: opening a file (DuckDB settings and caps, the lock), cursors,
  transactions, migrating; ``schema.py``: the tables and their migrations.
* ``sources.py``: a file to read (:class:`SourceSpec`) and its preview before a load.
* ``staging.py``: a load's steps on temporary tables (read, clean, de-duplicate, items).
* ``catalogue.py``: the datasets, committing a load, reading a dataset's events and items.
* ``stats.py``: a dataset's headline figures and the Data page's chart frames.
* ``registry.py``: trained models and stored evaluations.
* ``vectors.py``: cached vectors (text embeddings, interest vectors).
* ``records.py``: :class:`DatasetInfo`, :class:`ModelInfo`; ``errors.py``: :class:`StoreError`;
  ``names.py``: identifiers and dataset names.
"""

from __future__ import annotations

from core.store.connection import DEFAULT_DB, connection_settings
from core.store.errors import DatabaseLockedError, StoreError
from core.store.names import quote_ident, slugify, validate_dataset_name
from core.store.records import DatasetInfo, ModelInfo
from core.store.schema import SCHEMA_VERSION
from core.store.sources import SourceSpec
from core.store.store import Store, open_store

__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "DatabaseLockedError",
    "DatasetInfo",
    "ModelInfo",
    "SourceSpec",
    "Store",
    "StoreError",
    "connection_settings",
    "open_store",
    "quote_ident",
    "slugify",
    "validate_dataset_name",
]
