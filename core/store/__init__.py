"""The DuckDB behaviour store: schema, migrations and every SQL statement of RecLens.

One :class:`Store` per database file per process (:func:`open_store`), one DuckDB
cursor per thread (:meth:`Store.cursor`), and every write inside an explicit
transaction (:meth:`Store.transaction`) serialised by a process-wide lock, so the
store has exactly one writer and any number of readers.

User input never becomes SQL text: values travel as parameters and column names
that come from an uploaded file pass through :func:`quote_ident`, the only place
that turns a string into an identifier. Dataset names are validated slugs and are
stored as values; internally a dataset is addressed by an integer id.

Schema (version :data:`SCHEMA_VERSION`):

* ``meta(key, value)`` holds ``schema_version``.
* ``datasets`` is the catalogue: name, source file names, created, counts, the
  column mapping used, the cleaning report and a content fingerprint.
* ``events(dataset_id, user_id, item_id, ts, pos, event_type, value)``: ``pos`` is
  the 0-based order of the event within its user (time, then file order).
* ``items(dataset_id, item_id, title, categories, text)``.
* ``planted_interests``: ground truth of the generated demo dataset.
* ``models``, ``evaluations``, ``vectors``: the registry of trained models,
  stored evaluation results and cached vectors used by later features.

Migrations are a list of SQL scripts; the database records the version reached
and :meth:`Store.migrate` applies the rest inside one transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

DEFAULT_DB = Path("data") / "reclens.duckdb"


def connection_settings(path: str | Path) -> dict[str, object]:
    """DuckDB settings of every store: no extension is installed or loaded behind our
    back (the built-in ones, parquet, json and icu, are all RecLens reads), and caps on
    memory and spill space suited to the machine, so one huge query fails with a message
    instead of starving the app (training shares the process) or filling the disk.

    ``RECLENS_DUCKDB_MEMORY`` (default: half the machine's memory) and
    ``RECLENS_DUCKDB_TEMP`` (default: half the free space beside the database, at most
    100 GB) take DuckDB sizes such as ``4GB`` or ``512MiB``.
    """
    folder = Path(path).parent if str(path) != ":memory:" else Path(".")
    memory, temp = _machine_caps(str(folder.resolve()))
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": os.environ.get("RECLENS_DUCKDB_MEMORY") or f"{memory >> 20}MiB",
        "max_temp_directory_size": os.environ.get("RECLENS_DUCKDB_TEMP") or f"{temp >> 20}MiB",
    }


@functools.lru_cache(maxsize=64)
def _machine_caps(folder: str) -> tuple[int, int]:
    """(memory, spill) caps in bytes for stores in ``folder``, fixed once per process:
    DuckDB refuses a second connection to an open file with other settings, and the
    free disk space moves."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # not a POSIX machine
        memory = 4 * 2**30
    try:
        stat = os.statvfs(folder)
        temp = min(stat.f_bavail * stat.f_frsize // 2, 100 * 10**9)
    except (OSError, AttributeError):
        temp = 10 * 10**9
    return max(memory, 2**30), max(temp, 2**30)


SCHEMA_VERSION = 1

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class StoreError(Exception):
    """A problem a user can act on (bad name, missing dataset, locked file...)."""


class DatabaseLockedError(StoreError):
    """The database file is held for writing by another process."""


def quote_ident(name: str) -> str:
    """Quote ``name`` as a SQL identifier; the only way file-provided names reach SQL.

    >>> quote_ident('we"ird; DROP TABLE x')
    '"we""ird; DROP TABLE x"'
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise StoreError(f"invalid column name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a safe slug, else raise :class:`StoreError`.

    A slug is 1-63 characters of lower-case letters, digits, ``_`` and ``-``,
    starting with a letter or digit (so never ``..``, a path or a quote).
    """
    if not isinstance(name, str) or not _SLUG.match(name):
        raise StoreError(
            f"invalid dataset name {name!r}: use 1-63 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit (for example 'movielens-small')"
        )
    return name


def slugify(text: str) -> str:
    """Turn a file name or free text into a valid dataset name suggestion."""
    stem = re.sub(r"\.(csv|tsv|txt|parquet|gz|dat)$", "", text.lower().strip(), flags=re.I)
    stem = re.sub(r"\.(csv|tsv|txt|parquet|dat)$", "", stem, flags=re.I)
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-_")[:63]
    return slug or "dataset"


# --------------------------------------------------------------------------- schema

_MIGRATIONS: list[str] = [
    # 1: the behaviour store and room for models, evaluations and cached vectors.
    """
    CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE SEQUENCE IF NOT EXISTS dataset_ids START 1;
    CREATE TABLE datasets (
        dataset_id   INTEGER PRIMARY KEY,
        name         VARCHAR NOT NULL UNIQUE,
        sources      VARCHAR[] NOT NULL,
        created      TIMESTAMP NOT NULL,
        n_events     BIGINT NOT NULL,
        n_users      BIGINT NOT NULL,
        n_items      BIGINT NOT NULL,
        n_item_rows  BIGINT NOT NULL,
        has_time     BOOLEAN NOT NULL,
        mapping      JSON NOT NULL,
        report       JSON NOT NULL,
        fingerprint  VARCHAR NOT NULL
    );
    CREATE TABLE events (
        dataset_id  INTEGER NOT NULL,
        user_id     VARCHAR NOT NULL,
        item_id     VARCHAR NOT NULL,
        ts          TIMESTAMP,
        pos         INTEGER NOT NULL,
        event_type  VARCHAR,
        value       DOUBLE
    );
    CREATE TABLE items (
        dataset_id  INTEGER NOT NULL,
        item_id     VARCHAR NOT NULL,
        title       VARCHAR,
        categories  VARCHAR[],
        text        VARCHAR
    );
    CREATE TABLE planted_interests (
        dataset_id       INTEGER NOT NULL,
        user_id          VARCHAR NOT NULL,
        interests        VARCHAR[] NOT NULL,
        initial_interest VARCHAR NOT NULL,
        final_interest   VARCHAR NOT NULL,
        shift_at         INTEGER NOT NULL
    );
    CREATE TABLE models (
        name        VARCHAR PRIMARY KEY,
        dataset_id  INTEGER NOT NULL,
        path        VARCHAR NOT NULL,
        created     TIMESTAMP NOT NULL,
        config      JSON NOT NULL,
        metrics     JSON NOT NULL
    );
    CREATE TABLE evaluations (
        evaluation_id VARCHAR PRIMARY KEY,
        model_name    VARCHAR NOT NULL,
        dataset_id    INTEGER NOT NULL,
        settings      JSON NOT NULL,
        metrics       JSON NOT NULL,
        segments      JSON,
        created       TIMESTAMP NOT NULL
    );
    CREATE TABLE vectors (
        kind    VARCHAR NOT NULL,
        owner   VARCHAR NOT NULL,
        key     VARCHAR NOT NULL,
        vector  FLOAT[] NOT NULL,
        PRIMARY KEY (kind, owner, key)
    );
    """,
]


@dataclass(frozen=True)
class DatasetInfo:
    """One row of the datasets catalogue."""

    dataset_id: int
    name: str
    sources: list[str]
    created: datetime
    n_events: int
    n_users: int
    n_items: int
    n_item_rows: int
    has_time: bool
    mapping: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly summary printed by ``datasets --json``."""
        return {
            "name": self.name,
            "events": self.n_events,
            "users": self.n_users,
            "items": self.n_items,
            "item_rows": self.n_item_rows,
            "sources": list(self.sources),
            "created": self.created.isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model registry."""

    name: str
    dataset: str
    path: str
    created: datetime
    config: dict[str, Any]
    metrics: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly summary printed by ``models --json``."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "path": self.path,
            "created": self.created.isoformat(timespec="seconds"),
            "metrics": self.metrics,
            "preset": self.config.get("preset"),
        }


_DATASET_COLUMNS = (
    "dataset_id, name, sources, created, n_events, n_users, n_items, n_item_rows, "
    "has_time, mapping, report, fingerprint"
)


def _dataset_from_row(row: Sequence[Any]) -> DatasetInfo:
    values = list(row)
    values[9] = json.loads(values[9])
    values[10] = json.loads(values[10])
    return DatasetInfo(*values)


# --------------------------------------------------------------------------- the store


class Store:
    """A DuckDB database file holding every dataset, model and evaluation.

    Args:
        path (str | Path): database file; created with its folder when missing.
            ``":memory:"`` gives a private in-memory store (tests).
        read_only (bool, default False): open without the write lock, for a
            second process that only reads.
    """

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of the database {self.path}: {exc.strerror}; "
                    "point --db (or RECLENS_DB) at a writable place"
                ) from None
            _check_is_database(Path(self.path))
        try:
            self._con = duckdb.connect(
                self.path, read_only=read_only, config=connection_settings(self.path)
            )
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise DatabaseLockedError(
                    f"the database {self.path} is in use by another process (is the app running?); "
                    "stop it or point --db at another file"
                ) from None
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        except duckdb.Error as exc:
            hint = ""
            if os.environ.get("RECLENS_DUCKDB_MEMORY") or os.environ.get("RECLENS_DUCKDB_TEMP"):
                hint = "; check RECLENS_DUCKDB_MEMORY and RECLENS_DUCKDB_TEMP (sizes such as 4GB)"
            raise StoreError(f"cannot open the database {self.path}: {exc}{hint}") from None
        self._local = threading.local()
        self._write_lock = threading.RLock()
        try:
            # Times without an offset mean UTC, whatever the machine's time zone: the same
            # file must give the same dataset (and fingerprint) everywhere.
            self._con.execute("SET GLOBAL TimeZone = 'UTC'")
            if not read_only:
                self.migrate()
            elif self.schema_version() != SCHEMA_VERSION:
                raise StoreError(
                    f"the database {self.path} has schema version {self.schema_version()}, "
                    f"this RecLens needs {SCHEMA_VERSION}; open it once for writing to migrate"
                )
        except BaseException:
            self._con.close()  # release the file lock: this store is unusable
            raise

    # ---- connections and transactions

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the shared connection."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block of writes atomically: all of them land, or none does."""
        if self.read_only:
            raise StoreError(f"the database {self.path} is open read-only")
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (every cursor with it)."""
        self._con.close()

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a read query of this module and return a data frame."""
        return self.cursor().execute(sql, params or []).df()

    # ---- schema

    def schema_version(self) -> int:
        """The migration level this file has reached (0 for a new file)."""
        cur = self.cursor()
        exists = cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        if not exists:
            return 0
        rows = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else 0

    def migrate(self) -> int:
        """Apply the migrations this file lacks; return the schema version reached."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} was written by a newer RecLens "
                f"(schema {current} > {SCHEMA_VERSION}); upgrade RecLens to open it"
            )
        if current == SCHEMA_VERSION:
            return current
        try:
            with self.transaction() as cur:
                for script in _MIGRATIONS[current:]:
                    cur.execute(script)
                cur.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)],
                )
        except duckdb.Error as exc:  # rolled back: the file is as it was
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"cannot bring the database {self.path} from schema version {current} to "
                f"{SCHEMA_VERSION} ({reason}); if it is not a RecLens database (another "
                "program's DuckDB file), point --db at another file"
            ) from None
        return SCHEMA_VERSION

    # ---- the catalogue

    def list_datasets(self) -> list[DatasetInfo]:
        """Every dataset, newest first."""
        rows = (
            self.cursor()
            .execute(f"SELECT {_DATASET_COLUMNS} FROM datasets ORDER BY created DESC, name")
            .fetchall()
        )
        return [_dataset_from_row(r) for r in rows]

    def find_dataset(self, name: str) -> DatasetInfo | None:
        """The catalogue entry called ``name``, or None."""
        rows = (
            self.cursor()
            .execute(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE name = ?", [name])
            .fetchall()
        )
        return _dataset_from_row(rows[0]) if rows else None

    def get_dataset(self, name: str) -> DatasetInfo:
        """The catalogue entry called ``name``; a clear error when there is none."""
        info = self.find_dataset(name)
        if info is None:
            known = ", ".join(d.name for d in self.list_datasets()) or "none yet"
            raise StoreError(f"no dataset called {name!r}; the datasets are: {known}")
        return info

    def drop_dataset(self, name: str) -> None:
        """Delete a dataset with its events, items and planted interests."""
        info = self.get_dataset(name)
        with self.transaction() as cur:
            self._delete_dataset_rows(cur, info.dataset_id)

    @staticmethod
    def _delete_dataset_rows(cur: duckdb.DuckDBPyConnection, dataset_id: int) -> None:
        for table in ("events", "items", "planted_interests", "datasets"):
            cur.execute(f"DELETE FROM {table} WHERE dataset_id = ?", [dataset_id])

    def table_fingerprints(self) -> dict[str, tuple[int, int]]:
        """(row count, order-independent content hash) of every table: tests compare it."""
        cur = self.cursor()
        tables = [
            r[0]
            for r in cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            ident = quote_ident(table)
            count, digest = cur.execute(
                f"SELECT count(*), coalesce(bit_xor(hash(t)), 0) FROM {ident} AS t"
            ).fetchall()[0]
            out[table] = (int(count), int(digest))
        return out

    # ---- loading (called by core.data.ingest, inside one transaction)

    def sniff(self, source: SourceSpec, limit: int = 20) -> tuple[pd.DataFrame, list[str]]:
        """The first ``limit`` rows of a source as sniffed, and its column types."""
        cur = self.cursor()
        rel_sql, params = source.reader_sql()
        described = cur.execute(f"DESCRIBE SELECT * FROM {rel_sql}", params).fetchall()
        preview = cur.execute(f"SELECT * FROM {rel_sql} LIMIT {int(limit)}", params).df()
        return preview, [f"{r[0]}:{r[1]}" for r in described]

    def sample_text(self, source: SourceSpec, limit: int) -> pd.DataFrame:
        """The first ``limit`` rows of a source with every value as text (None when empty).

        What the column-mapping suggestions read: values as written in the file, so ids
        keep their leading zeros and a float-written id shows its ``.0``.
        """
        rel_sql, params = dataclasses.replace(
            source, all_varchar=True, varchar_columns=()
        ).reader_sql(lenient=True)
        if source.kind == "parquet":
            described = self.cursor().execute(f"DESCRIBE SELECT * FROM {rel_sql}", params)
            names = [row[0] for row in described.fetchall()]
            select = ", ".join(
                f"CAST({quote_ident(n)} AS VARCHAR) AS {quote_ident(n)}" for n in names
            )
        else:
            select = "*"
        frame = (
            self.cursor()
            .execute(f"SELECT {select or '*'} FROM {rel_sql} LIMIT {int(limit)}", params)
            .df()
        )
        return frame.astype(object).where(frame.notna(), None)

    def sniff_dialect(self, source: SourceSpec) -> tuple[bool, str]:
        """(has header, delimiter) of a CSV source as DuckDB's sniffer sees it."""
        sql, params = source.reader_sql(sniff=True)
        has_header, delimiter = (
            self.cursor().execute(f"SELECT HasHeader, Delimiter FROM {sql}", params).fetchall()[0]
        )
        return bool(has_header), delimiter

    def stage_events(
        self,
        cur: duckdb.DuckDBPyConnection,
        source: SourceSpec,
        columns: dict[str, str | None],
        time_expr: str,
    ) -> dict[str, Any]:
        """Read a source into the temporary table ``stage_read`` with typed, mapped columns.

        The cleaning steps then work on it; :meth:`drop_duplicate_events` turns it into
        ``stage_events`` (its ``rowid`` is the file order), which is what
        :meth:`commit_dataset` loads.

        Args:
            cur: the cursor of the running load transaction.
            source: the file and reader options.
            columns: role -> source column name (``user``, ``item``, ``time``,
                ``type``, ``value``); None for an unmapped role.
            time_expr: SQL template turning ``{col}`` (the quoted time column) into
                a TIMESTAMP, or NULL when the file has no time.

        Returns:
            ``rows_read``; ``csv_rejects``: a list of (line, error type, message, text)
            for lines the CSV reader itself could not parse; ``bad_values``: (count, an
            example) of values of a text value column that are not numbers (loaded as NULL).
        """
        rel_sql, params = source.reader_sql()
        cur.execute("DROP TABLE IF EXISTS stage_read")
        cur.execute("DROP TABLE IF EXISTS stage_events")
        _clear_rejects(cur)
        value_col = columns.get("value")
        text_value = bool(value_col) and _source_column_type(cur, rel_sql, params, value_col) == (
            "VARCHAR"
        )
        bad_value_sql = ""
        if text_value:
            # A text value column: values that are not numbers ("4,5") become NULL; say so.
            ident = quote_ident(value_col)
            bad_value_sql = (
                f", CASE WHEN trim({ident}) <> '' AND TRY_CAST({ident} AS DOUBLE) IS NULL "
                f"THEN {ident} END AS bad_value"
            )
        # One pass: read, map and type. The table keeps file order, so rowid numbers rows.
        cur.execute(
            f"""CREATE TEMP TABLE stage_read AS
                SELECT {_mapped_events_sql(columns, time_expr)}{bad_value_sql} FROM {rel_sql}""",
            params,
        )
        bad_values: tuple[int, str | None] = (0, None)
        if text_value:
            count, example = cur.execute(
                "SELECT count(bad_value), min(bad_value) FROM stage_read"
            ).fetchall()[0]
            bad_values = (int(count), example)
        rows_read = cur.execute("SELECT count(*) FROM stage_read").fetchall()[0][0]
        rejects: list[tuple[Any, ...]] = []
        if source.kind == "csv":
            # One row per bad line (the reader lists every bad column of a line).
            rejects = cur.execute(
                """SELECT line, arg_min(CAST(error_type AS VARCHAR), coalesce(column_idx, 0)),
                          arg_min(error_message, coalesce(column_idx, 0)), any_value(csv_line)
                   FROM reclens_reject_errors GROUP BY line ORDER BY line"""
            ).fetchall()
        return {"rows_read": int(rows_read), "csv_rejects": rejects, "bad_values": bad_values}

    def preview_events(
        self, source: SourceSpec, columns: dict[str, str | None], time_expr: str, limit: int = 10
    ) -> pd.DataFrame:
        """The first rows of a source as they would be loaded (mapped and typed); writes nothing.

        Arguments as for :meth:`stage_events`.
        """
        rel_sql, params = source.reader_sql()
        return (
            self.cursor()
            .execute(
                f"SELECT {_mapped_events_sql(columns, time_expr)} FROM {rel_sql} "
                f"LIMIT {int(limit)}",
                params,
            )
            .df()
        )

    def reject_invalid_events(
        self,
        cur: duckdb.DuckDBPyConnection,
        has_time_column: bool,
        first_line: int = 1,
        example_limit: int = 5,
    ) -> dict[str, Any]:
        """Drop staged rows with missing ids or unparseable times; count and show examples.

        Args:
            first_line: the file line of the first data row (2 under a header); example
                line numbers assume one line per row.
        """
        bad_time = "(ts IS NULL AND raw_time IS NOT NULL)" if has_time_column else "FALSE"
        missing_time = "(raw_time IS NULL)" if has_time_column else "FALSE"
        condition = f"user_id IS NULL OR item_id IS NULL OR {bad_time} OR {missing_time}"
        counts = cur.execute(
            f"""SELECT count(*) FILTER (WHERE user_id IS NULL OR item_id IS NULL),
                       count(*) FILTER (WHERE user_id IS NOT NULL AND item_id IS NOT NULL
                                        AND ({bad_time} OR {missing_time}))
                FROM stage_read"""
        ).fetchall()[0]
        examples = cur.execute(
            f"""SELECT rowid - (SELECT min(rowid) FROM stage_read) + ?, user_id, item_id, raw_time,
                       CASE WHEN user_id IS NULL OR item_id IS NULL THEN 'missing user or item id'
                            WHEN {missing_time} THEN 'missing time'
                            ELSE 'unparseable time' END
                FROM stage_read WHERE {condition} ORDER BY rowid LIMIT {int(example_limit)}""",
            [first_line],
        ).fetchall()
        cur.execute(f"DELETE FROM stage_read WHERE {condition}")
        return {
            "missing_id": int(counts[0]),
            "bad_time": int(counts[1]),
            "examples": [
                {"line": int(r[0]), "user": r[1], "item": r[2], "time": r[3], "problem": r[4]}
                for r in examples
            ],
        }

    def filter_min_value(self, cur: duckdb.DuckDBPyConnection, min_value: float) -> int:
        """Keep only events whose value is at least ``min_value``; return the number dropped."""
        return _count_deleted(
            cur, "DELETE FROM stage_read WHERE value IS NULL OR value < ?", [min_value]
        )

    def drop_duplicate_events(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Drop exact duplicate events (same user, item, time, type, value), keeping the first.

        The staged rows then become ``stage_events``; their ``rowid`` is the file order.
        Duplicates are found by a 64-bit hash of the five columns first (one narrow
        aggregate), and only rows whose hash repeats are compared exactly, so a clean log
        costs one pass (on 10M rows 1 s instead of the 2.4 s of grouping by the columns).
        """
        key = "hash(user_id, item_id, ts, event_type, value)"
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE stage_repeated AS
                SELECT h FROM (SELECT {key} AS h FROM stage_read) GROUP BY h HAVING count(*) > 1"""
        )
        dropped = 0
        if cur.execute("SELECT count(*) FROM stage_repeated").fetchall()[0][0]:
            dropped = _count_deleted(
                cur,
                f"""DELETE FROM stage_read
                    WHERE {key} IN (SELECT h FROM stage_repeated)
                      AND rowid NOT IN (
                          SELECT min(rowid) FROM stage_read
                          WHERE {key} IN (SELECT h FROM stage_repeated)
                          GROUP BY user_id, item_id, ts, event_type, value)""",
            )
        cur.execute("DROP TABLE stage_repeated")
        cur.execute("ALTER TABLE stage_read RENAME TO stage_events")
        return dropped

    def collapse_repeats(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Drop an event when the same user's previous event was the same item."""
        return _count_deleted(
            cur,
            """DELETE FROM stage_events WHERE rowid IN (
                   SELECT r FROM (
                       SELECT rowid AS r, item_id, lag(item_id) OVER (
                           PARTITION BY user_id ORDER BY ts NULLS FIRST, rowid) AS prev
                       FROM stage_events) WHERE item_id = prev)""",
        )

    def k_core(self, cur: duckdb.DuckDBPyConnection, min_user: int, min_item: int) -> int:
        """Repeatedly drop users and items with too few events until both limits hold."""
        dropped = 0
        while True:
            n = _count_deleted(
                cur,
                """DELETE FROM stage_events WHERE user_id IN (
                       SELECT user_id FROM stage_events GROUP BY user_id HAVING count(*) < ?)
                   OR item_id IN (
                       SELECT item_id FROM stage_events GROUP BY item_id HAVING count(*) < ?)""",
                [min_user, min_item],
            )
            dropped += n
            if n == 0:
                return dropped

    def normalise_float_ids(
        self, cur: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]
    ) -> dict[str, int]:
        """Ids written as floats (``17850.0``) become integers (``17850``) in a staged table.

        Only a column whose every id is an integer, written with or without a ``.0``
        (as pandas writes an integer column with missing values), is changed; text ids,
        leading zeros included, stay as they are. Returns column -> ids changed.

        Args:
            table: ``stage_read`` or ``stage_items`` (a staging table of this module).
            columns: its id columns.
        """
        if table not in ("stage_read", "stage_items"):
            raise ValueError(f"not a staging table: {table}")
        changed: dict[str, int] = {}
        idents = [quote_ident(c) for c in columns]
        # One cheap scan for a dot in any id; the pattern checks run only where one is.
        dotted = cur.execute(
            "SELECT "
            + ", ".join(f"count(*) FILTER (WHERE contains({i}, '.'))" for i in idents)
            + f" FROM {table}"
        ).fetchall()[0]
        for column, ident, n_dotted in zip(columns, idents, dotted, strict=True):
            if not n_dotted:
                continue
            not_integral = cur.execute(
                rf"""SELECT count(*) FROM {table}
                     WHERE NOT regexp_full_match({ident}, '-?[0-9]+(\.0+)?')"""
            ).fetchall()[0][0]
            if not_integral:
                continue
            cur.execute(
                rf"UPDATE {table} SET {ident} = regexp_replace({ident}, '\.0+$', '') "
                f"WHERE contains({ident}, '.')"
            )
            changed[column] = int(n_dotted)
        return changed

    def stage_items(
        self,
        cur: duckdb.DuckDBPyConnection,
        source: SourceSpec,
        columns: dict[str, str | None],
        category_sep: str | None,
        list_categories: bool,
        per_item: bool = False,
    ) -> dict[str, int]:
        """Read item details into the temporary table ``stage_items``, one row per item id.

        From an item file the first row of each id is kept. With ``per_item`` the source
        is the behaviour log itself, whose item details repeat on every event: each item
        gets the most frequent value of each column, and ``varied_items`` counts the items
        whose rows did not all agree.

        Returns counts: rows read, unparseable lines (of which ``invalid_encoding_rows``
        were not valid in the file's encoding), rows without an id, duplicate ids.
        """
        rel_sql, params = source.reader_sql()

        def col(role: str) -> str:
            name = columns.get(role)
            return f"CAST({quote_ident(name)} AS VARCHAR)" if name else "CAST(NULL AS VARCHAR)"

        cat = columns.get("categories")
        if not cat:
            cats_sql = "CAST(NULL AS VARCHAR[])"
        elif list_categories:
            cats_sql = f"list_transform(CAST({quote_ident(cat)} AS VARCHAR[]), lambda c: trim(c))"
        else:
            sep_param = category_sep or "|"
            cats_sql = (
                f"list_filter(list_transform(string_split(CAST({quote_ident(cat)} AS VARCHAR), "
                "$category_sep), lambda c: trim(c)), "
                "lambda c: c <> '' AND c <> '(no genres listed)')"
            )
            params = {**params, "category_sep": sep_param}
        cur.execute("DROP TABLE IF EXISTS stage_items")
        _clear_rejects(cur)
        rows = f"""SELECT row_number() OVER () AS row_no,
                          nullif(trim({col("item")}), '') AS item_id, {col("title")} AS title,
                          {cats_sql} AS categories, {col("text")} AS text
                   FROM {rel_sql}"""
        varied = 0
        if per_item:
            cur.execute(
                f"""CREATE TEMP TABLE stage_items AS
                    SELECT min(row_no) AS row_no, item_id, mode(title) AS title,
                           mode(categories) AS categories, mode(text) AS text,
                           count(*) AS n_rows,
                           count(DISTINCT title) > 1 OR count(DISTINCT categories) > 1
                               OR count(DISTINCT text) > 1 AS varied
                    FROM ({rows}) GROUP BY item_id""",
                params,
            )
            total, varied = cur.execute(
                "SELECT sum(n_rows), count(*) FILTER (WHERE varied) FROM stage_items"
            ).fetchall()[0]
            cur.execute("ALTER TABLE stage_items DROP COLUMN n_rows")
            cur.execute("ALTER TABLE stage_items DROP COLUMN varied")
            missing = _count_deleted(cur, "DELETE FROM stage_items WHERE item_id IS NULL")
            dupes = 0
        else:
            cur.execute(f"CREATE TEMP TABLE stage_items AS {rows}", params)
            total = cur.execute("SELECT count(*) FROM stage_items").fetchall()[0][0]
            missing = _count_deleted(cur, "DELETE FROM stage_items WHERE item_id IS NULL")
            dupes = _count_deleted(
                cur,
                """DELETE FROM stage_items WHERE row_no NOT IN (
                       SELECT min(row_no) FROM stage_items GROUP BY item_id)""",
            )
        unparseable = bad_encoding = 0
        if source.kind == "csv":
            unparseable, bad_encoding = cur.execute(
                """SELECT count(DISTINCT line),
                          count(DISTINCT line) FILTER (WHERE error_type = 'INVALID ENCODING')
                   FROM reclens_reject_errors"""
            ).fetchall()[0]
        report = {
            "item_rows_read": int(total or 0),
            "unparseable_rows": int(unparseable),
            "invalid_encoding_rows": int(bad_encoding),
            "missing_item_id": missing,
            "duplicate_items": dupes,
        }
        if per_item:
            report["varied_items"] = int(varied or 0)
        return report

    def keep_staged_items_of_events(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Drop staged item details of items no staged event has (cleaned away); count them."""
        return _count_deleted(
            cur,
            """DELETE FROM stage_items
               WHERE item_id NOT IN (SELECT DISTINCT item_id FROM stage_events)""",
        )

    def staged_item_count(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Item rows currently staged."""
        return int(cur.execute("SELECT count(*) FROM stage_items").fetchall()[0][0])

    def staged_count(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Events currently staged (after :meth:`drop_duplicate_events`)."""
        return int(cur.execute("SELECT count(*) FROM stage_events").fetchall()[0][0])

    def commit_dataset(
        self,
        cur: duckdb.DuckDBPyConnection,
        name: str,
        sources: list[str],
        mapping: dict[str, Any],
        report: dict[str, Any],
        with_items: bool,
        replace: bool,
    ) -> DatasetInfo:
        """Move the staged events (and items) into a new catalogue entry called ``name``.

        Replacing a dataset keeps its models registered, now on the new version: loading
        one then warns that it was trained on an earlier version of the data.
        """
        existing = cur.execute("SELECT dataset_id FROM datasets WHERE name = ?", [name]).fetchall()
        if existing:
            if not replace:
                raise StoreError(
                    f"a dataset called {name!r} already exists; choose another name or replace it"
                )
            self._delete_dataset_rows(cur, existing[0][0])
        dataset_id = cur.execute("SELECT nextval('dataset_ids')").fetchall()[0][0]
        if existing:
            cur.execute(
                "UPDATE models SET dataset_id = ? WHERE dataset_id = ?",
                [dataset_id, existing[0][0]],
            )
        cur.execute(
            """INSERT INTO events
               SELECT ?, user_id, item_id, ts,
                      CAST(row_number() OVER (PARTITION BY user_id
                                              ORDER BY ts NULLS FIRST, rowid) - 1 AS INTEGER),
                      event_type, value
               FROM stage_events""",
            [dataset_id],
        )
        if with_items:
            cur.execute(
                "INSERT INTO items SELECT ?, item_id, title, categories, text FROM stage_items",
                [dataset_id],
            )
        # One pass over the new events for the counts and the fingerprint; events and
        # item rows both count: new titles or categories make a new dataset version.
        n_events, n_users, n_items, has_time, n_item_rows, fingerprint = cur.execute(
            """SELECT e.n, e.users, e.items, e.has_time, i.n,
                      printf('%016x', hash(e.h, i.h)) || '-' || e.n
               FROM (SELECT count(*) AS n, count(*) FILTER (WHERE pos = 0) AS users,
                            count(DISTINCT item_id) AS items, count(ts) > 0 AS has_time,
                            coalesce(bit_xor(hash(user_id, item_id, ts, pos, event_type, value)),
                                     0) AS h
                     FROM events WHERE dataset_id = $id) e,
                    (SELECT count(*) AS n,
                            coalesce(bit_xor(hash(item_id, title, categories, text)), 0) AS h
                     FROM items WHERE dataset_id = $id) i""",
            {"id": dataset_id},
        ).fetchall()[0]
        cur.execute(
            f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES (?, ?, ?, now()::TIMESTAMP, "
            "?, ?, ?, ?, ?, ?, ?, ?)",
            [
                dataset_id,
                name,
                sources,
                n_events,
                n_users,
                n_items,
                n_item_rows,
                has_time,
                json.dumps(mapping),
                json.dumps(report),
                fingerprint,
            ],
        )
        cur.execute("DROP TABLE IF EXISTS stage_events")
        cur.execute("DROP TABLE IF EXISTS stage_items")
        row = cur.execute(
            f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE dataset_id = ?", [dataset_id]
        ).fetchall()[0]
        return _dataset_from_row(row)

    def save_planted(self, cur: duckdb.DuckDBPyConnection, dataset_id: int, frame: pd.DataFrame):
        """Store the demo generator's planted interests for ``dataset_id``."""
        cur.register("planted_frame", frame)
        cur.execute(
            """INSERT INTO planted_interests
               SELECT ?, user_id, interests, initial_interest, final_interest, shift_at
               FROM planted_frame""",
            [dataset_id],
        )
        cur.unregister("planted_frame")

    # ---- dataset exploration (Data page, stats CLI, sequences)

    def dataset_stats(self, name: str) -> dict[str, Any]:
        """Headline figures of a dataset, computed in DuckDB."""
        info = self.get_dataset(name)
        cur = self.cursor()
        did = info.dataset_id
        first, last, n_types = cur.execute(
            "SELECT min(ts), max(ts), count(DISTINCT event_type) FROM events WHERE dataset_id = ?",
            [did],
        ).fetchall()[0]
        lengths = cur.execute(
            """SELECT min(n), quantile_cont(n, 0.5), avg(n), max(n) FROM (
                   SELECT count(*) AS n FROM events WHERE dataset_id = ? GROUP BY user_id)""",
            [did],
        ).fetchall()[0]
        sample_users = [
            r[0]
            for r in cur.execute(
                """SELECT user_id FROM events WHERE dataset_id = ?
                   GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 10""",
                [did],
            ).fetchall()
        ]
        sample_items = [
            r[0]
            for r in cur.execute(
                """SELECT item_id FROM events WHERE dataset_id = ?
                   GROUP BY item_id ORDER BY count(*) DESC, item_id LIMIT 10""",
                [did],
            ).fetchall()
        ]
        cells = info.n_users * info.n_items
        return {
            "dataset": info.name,
            "events": info.n_events,
            "users": info.n_users,
            "items": info.n_items,
            "item_rows": info.n_item_rows,
            "density": info.n_events / cells if cells else 0.0,
            "first_event": first.isoformat(sep=" ") if first else None,
            "last_event": last.isoformat(sep=" ") if last else None,
            "event_types": int(n_types),
            "events_per_user": {
                "min": _num(lengths[0]),
                "median": _num(lengths[1]),
                "mean": _num(lengths[2]),
                "max": _num(lengths[3]),
            },
            "popularity_gini": self.popularity_gini(did),
            "sample_users": sample_users,
            "sample_items": sample_items,
            "created": info.created.isoformat(timespec="seconds"),
            "sources": list(info.sources),
            "fingerprint": info.fingerprint,
            "report": info.report,
        }

    def popularity_gini(self, dataset_id: int) -> float:
        """Gini coefficient of item popularity (0 = all items equally popular)."""
        rows = (
            self.cursor()
            .execute(
                """SELECT sum((2 * r - n - 1) * c) / (n * sum(c)) FROM (
                       SELECT c, row_number() OVER (ORDER BY c) AS r, count(*) OVER () AS n
                       FROM (SELECT count(*) AS c FROM events WHERE dataset_id = ?
                             GROUP BY item_id))
                   GROUP BY n""",
                [dataset_id],
            )
            .fetchall()
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else 0.0

    def events_over_time(self, dataset_id: int) -> pd.DataFrame:
        """Events per day (or week when the range is long): columns period, events."""
        cur = self.cursor()
        span = cur.execute(
            "SELECT date_diff('day', min(ts), max(ts)) FROM events WHERE dataset_id = ?",
            [dataset_id],
        ).fetchall()[0][0]
        if span is None:
            return pd.DataFrame({"period": [], "events": []})
        unit = "day" if span <= 400 else ("week" if span <= 3000 else "month")
        return cur.execute(
            f"""SELECT date_trunc('{unit}', ts) AS period, count(*) AS events
                FROM events WHERE dataset_id = ? AND ts IS NOT NULL
                GROUP BY 1 ORDER BY 1""",
            [dataset_id],
        ).df()

    def events_per_user(self, dataset_id: int) -> pd.DataFrame:
        """History length of every user: column events."""
        return self.query_df(
            "SELECT count(*) AS events FROM events WHERE dataset_id = ? GROUP BY user_id",
            [dataset_id],
        )

    def item_popularity(self, dataset_id: int) -> pd.DataFrame:
        """Events per item, most popular first: columns rank, item_id, events."""
        return self.query_df(
            """SELECT row_number() OVER (ORDER BY count(*) DESC, item_id) AS rank,
                      item_id, count(*) AS events
               FROM events WHERE dataset_id = ? GROUP BY item_id ORDER BY rank""",
            [dataset_id],
        )

    def event_type_mix(self, dataset_id: int) -> pd.DataFrame:
        """Events per event type: columns event_type, events."""
        return self.query_df(
            """SELECT coalesce(event_type, '(none)') AS event_type, count(*) AS events
               FROM events WHERE dataset_id = ? GROUP BY 1 ORDER BY 2 DESC""",
            [dataset_id],
        )

    def top_categories(self, dataset_id: int, limit: int = 20) -> pd.DataFrame:
        """Events per item category (an event counts once per category of its item)."""
        return self.query_df(
            f"""SELECT category, count(*) AS events FROM (
                    SELECT unnest(i.categories) AS category
                    FROM events e JOIN items i
                      ON i.dataset_id = e.dataset_id AND i.item_id = e.item_id
                    WHERE e.dataset_id = ?)
                GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}""",
            [dataset_id],
        )

    def user_events(self, dataset_id: int, user_id: str, limit: int = 200) -> pd.DataFrame:
        """One user's events in order, with item titles and categories when known."""
        return self.query_df(
            f"""SELECT e.pos, e.ts AS time, e.item_id, i.title, i.categories, e.event_type, e.value
                FROM events e LEFT JOIN items i
                  ON i.dataset_id = e.dataset_id AND i.item_id = e.item_id
                WHERE e.dataset_id = ? AND e.user_id = ?
                ORDER BY e.pos LIMIT {int(limit)}""",
            [dataset_id, user_id],
        )

    def items_frame(self, dataset_id: int) -> pd.DataFrame:
        """The item table of a dataset."""
        return self.query_df(
            "SELECT item_id, title, categories, text FROM items WHERE dataset_id = ? ORDER BY 1",
            [dataset_id],
        )

    # ---- cached vectors (item text embeddings...)

    def get_vectors(self, kind: str, owner: str, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached vectors of ``kind`` by ``owner`` for the given keys (missing keys absent)."""
        if not keys:
            return {}
        cur = self._con.cursor()  # private: registers a relation
        try:
            cur.register("wanted_keys", pd.DataFrame({"key": list(keys)}))
            rows = cur.execute(
                """SELECT v.key, v.vector FROM vectors v JOIN wanted_keys w USING (key)
                   WHERE v.kind = ? AND v.owner = ?""",
                [kind, owner],
            ).fetchall()
        finally:
            cur.close()
        return dict(rows)

    def put_vectors(self, kind: str, owner: str, vectors: dict[str, Sequence[float]]) -> None:
        """Cache vectors (replacing those with the same kind, owner and key)."""
        if not vectors:
            return
        frame = pd.DataFrame(
            {"key": list(vectors), "vector": [list(map(float, v)) for v in vectors.values()]}
        )
        with self.transaction() as cur:
            cur.register("new_vectors", frame)
            cur.execute(
                """DELETE FROM vectors WHERE kind = ? AND owner = ?
                   AND key IN (SELECT key FROM new_vectors)""",
                [kind, owner],
            )
            cur.execute(
                "INSERT INTO vectors SELECT ?, ?, key, vector FROM new_vectors", [kind, owner]
            )
            cur.unregister("new_vectors")

    def vector_matrix(self, kind: str, owner: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Every cached vector of ``kind`` by ``owner``: (sorted keys, float32 matrix) or None."""
        cur = self._con.cursor()
        try:
            table = cur.sql(
                """SELECT key, vector FROM vectors WHERE kind = $kind AND owner = $owner
                   ORDER BY key""",
                params={"kind": kind, "owner": owner},
            ).to_arrow_table()
        finally:
            cur.close()
        if table.num_rows == 0:
            return None
        keys = np.asarray(table.column("key").to_numpy(zero_copy_only=False), dtype=object)
        lists = table.column("vector").combine_chunks()
        flat = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return keys, flat.reshape(table.num_rows, -1)

    def replace_vector_matrix(
        self, kind: str, owner: str, keys: Sequence[str], matrix: np.ndarray, stale_prefix: str
    ) -> None:
        """Cache one vector per key (rows of ``matrix``) under ``owner``, in one transaction.

        Also drops every vector of ``kind`` whose owner starts with ``stale_prefix``
        (older versions of the same model), so the cache holds one version per model.
        """
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1)), matrix.shape[1]
        ).cast(pa.list_(pa.float32()))
        frame = pa.table({"key": pa.array(list(keys), pa.string()), "vector": vectors})
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM vectors WHERE kind = ? AND (owner = ? OR starts_with(owner, ?))",
                [kind, owner, stale_prefix],
            )
            cur.register("new_vector_matrix", frame)
            try:
                cur.execute(
                    "INSERT INTO vectors SELECT ?, ?, key, vector FROM new_vector_matrix",
                    [kind, owner],
                )
            finally:
                cur.unregister("new_vector_matrix")

    def catalog_only_items(self, dataset_id: int) -> list[str]:
        """Items of the item file that no event mentions (cold-start items), by id."""
        return [
            r[0]
            for r in self.cursor()
            .execute(
                """SELECT i.item_id FROM items i WHERE i.dataset_id = ? AND NOT EXISTS (
                       SELECT 1 FROM events e WHERE e.dataset_id = i.dataset_id
                       AND e.item_id = i.item_id) ORDER BY i.item_id""",
                [dataset_id],
            )
            .fetchall()
        ]

    def item_details(self, dataset_id: int, item_ids: Sequence[str]) -> pd.DataFrame:
        """Title and categories of the given items (in any order; unknown ids absent)."""
        cur = self._con.cursor()
        try:
            cur.register("wanted_items", pd.DataFrame({"item_id": list(item_ids)}))
            return cur.execute(
                """SELECT i.item_id, i.title, i.categories, i.text FROM items i
                   JOIN wanted_items w USING (item_id) WHERE i.dataset_id = ?""",
                [dataset_id],
            ).df()
        finally:
            cur.close()

    def user_history(self, dataset_id: int, user_id: str) -> list[str]:
        """A user's item ids in order (empty for an unknown user)."""
        return [
            r[0]
            for r in self.cursor()
            .execute(
                "SELECT item_id FROM events WHERE dataset_id = ? AND user_id = ? ORDER BY pos",
                [dataset_id, user_id],
            )
            .fetchall()
        ]

    # ---- the model registry

    def register_model(
        self,
        name: str,
        dataset: str,
        path: str,
        config: dict,
        metrics: dict,
        *,
        replace: bool = False,
    ) -> ModelInfo:
        """Record a saved model directory under ``name``.

        A name already registered is refused, unless ``replace`` is set and the entry is
        a model of the same ``dataset`` (a retrained version of it): registering never
        takes another dataset's model's entry, nor one a deleted dataset left behind.
        """
        validate_dataset_name(name)
        info = self.get_dataset(dataset)
        owner = self.model_owner(name)
        if owner is not None and not (replace and owner == info.name):
            whose = f"of dataset {owner!r}" if owner else "of a deleted dataset"
            raise StoreError(
                f"a model named {name!r} is already registered ({whose}); choose another name"
                + (" or delete that model first" if owner else "")
            )
        with self.transaction() as cur:
            cur.execute("DELETE FROM models WHERE name = ?", [name])
            cur.execute(
                "INSERT INTO models VALUES (?, ?, ?, now()::TIMESTAMP, ?, ?)",
                [name, info.dataset_id, path, json.dumps(config), json.dumps(metrics)],
            )
        return self.get_model(name)

    def list_models(self, dataset: str | None = None) -> list[ModelInfo]:
        """Registered models (of one dataset, or all), newest first."""
        sql = (
            "SELECT m.name, d.name, m.path, m.created, m.config, m.metrics FROM models m "
            "JOIN datasets d USING (dataset_id)"
        )
        params: list[Any] = []
        if dataset:
            sql += " WHERE d.name = ?"
            params.append(dataset)
        rows = self.cursor().execute(sql + " ORDER BY m.created DESC, m.name", params).fetchall()
        return [ModelInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5])) for r in rows]

    def model_owner(self, name: str) -> str | None:
        """The dataset of the model registered as ``name``: its name, ``""`` when that
        dataset was deleted, None when no model has that name."""
        rows = (
            self.cursor()
            .execute(
                "SELECT coalesce(d.name, '') FROM models m LEFT JOIN datasets d "
                "USING (dataset_id) WHERE m.name = ?",
                [name],
            )
            .fetchall()
        )
        return rows[0][0] if rows else None

    def model_names(self) -> set[str]:
        """Every registered model name, those a deleted dataset left behind included."""
        return {r[0] for r in self.cursor().execute("SELECT name FROM models").fetchall()}

    def find_model(self, name: str) -> ModelInfo | None:
        """The registered model called ``name``, or None."""
        return next((m for m in self.list_models() if m.name == name), None)

    def orphaned_model_path(self, name: str) -> str | None:
        """The directory of a model registered as ``name`` whose dataset was deleted
        (such models are left out of :meth:`list_models`), or None."""
        rows = (
            self.cursor()
            .execute(
                """SELECT path FROM models m WHERE name = ? AND NOT EXISTS (
                       SELECT 1 FROM datasets d WHERE d.dataset_id = m.dataset_id)""",
                [name],
            )
            .fetchall()
        )
        return rows[0][0] if rows else None

    def get_model(self, name: str) -> ModelInfo:
        """The registered model called ``name``; a clear error when there is none."""
        info = self.find_model(name)
        if info is None:
            known = ", ".join(m.name for m in self.list_models()) or "none yet"
            raise StoreError(f"no model called {name!r}; the models are: {known}")
        return info

    # ---- evaluations (core.evaluation.runner)

    def save_evaluation(
        self,
        evaluation_id: str,
        model_name: str,
        dataset_id: int,
        settings: dict,
        metrics: dict,
        segments: list | dict | None,
    ) -> None:
        """Record one model's (or baseline's) evaluation; ``settings["run_id"]`` groups a run."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM evaluations WHERE evaluation_id = ?", [evaluation_id])
            cur.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                [
                    evaluation_id,
                    model_name,
                    dataset_id,
                    json.dumps(settings, default=str),
                    json.dumps(metrics, default=str),
                    json.dumps(segments, default=str),
                ],
            )

    def list_evaluations(
        self, dataset_id: int | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored evaluations (of one dataset and/or one run), newest first, JSON decoded."""
        sql = (
            "SELECT evaluation_id, model_name, dataset_id, settings, metrics, segments, created "
            "FROM evaluations WHERE (? IS NULL OR dataset_id = ?) "
            "AND (? IS NULL OR json_extract_string(settings, '$.run_id') = ?) "
            "ORDER BY created DESC, evaluation_id"
        )
        rows = self.cursor().execute(sql, [dataset_id, dataset_id, run_id, run_id]).fetchall()
        return [
            {
                "evaluation_id": r[0],
                "model_name": r[1],
                "dataset_id": r[2],
                "settings": json.loads(r[3]),
                "metrics": json.loads(r[4]),
                "segments": json.loads(r[5]) if r[5] is not None else None,
                "created": r[6],
            }
            for r in rows
        ]

    def event_times_arrow(self, dataset_id: int):
        """Every event's time in the order of :meth:`sequences_arrow` (users by id, events
        by ``pos``): an Arrow table (user_id, times: list<double> of Unix seconds, null
        when the dataset has no time)."""
        cur = self._con.cursor()
        try:
            return cur.sql(
                """SELECT user_id, list(epoch(ts) ORDER BY pos) AS times
                   FROM events WHERE dataset_id = $dataset GROUP BY user_id ORDER BY user_id""",
                params={"dataset": dataset_id},
            ).to_arrow_table()
        finally:
            cur.close()

    def event_types_arrow(self, dataset_id: int):
        """Every event's type in the order of :meth:`sequences_arrow`, as indices.

        Returns:
            (table, names): an Arrow table (user_id, types: list<int32>) with types
            numbered 1..T by frequency (0 = no type), and the list of the T type names.
        """
        cur = self._con.cursor()
        try:
            names = [
                r[0]
                for r in cur.execute(
                    """SELECT event_type FROM events
                       WHERE dataset_id = ? AND event_type IS NOT NULL
                       GROUP BY event_type ORDER BY count(*) DESC, event_type""",
                    [dataset_id],
                ).fetchall()
            ]
            table = cur.sql(
                """SELECT e.user_id,
                          list(coalesce(t.idx, 0)::INTEGER ORDER BY e.pos) AS types
                   FROM events e LEFT JOIN (
                       SELECT unnest($names) AS event_type,
                              generate_subscripts($names, 1) AS idx) t USING (event_type)
                   WHERE e.dataset_id = $dataset GROUP BY e.user_id ORDER BY e.user_id""",
                params={"dataset": dataset_id, "names": names},
            ).to_arrow_table()
        finally:
            cur.close()
        return table, names

    def planted_frame(self, dataset_id: int) -> pd.DataFrame:
        """Planted interests of a generated dataset (empty for uploaded data)."""
        return self.query_df(
            """SELECT user_id, interests, initial_interest, final_interest, shift_at
               FROM planted_interests WHERE dataset_id = ? ORDER BY user_id""",
            [dataset_id],
        )

    def sequences_arrow(self, dataset_id: int):
        """Per-user item sequences as an Arrow table (user_id, items: list<int32>) + vocabulary.

        Items are indexed 1..n by popularity (most popular first, ties by id); index 0
        is padding. Users are ordered by id, each history by ``pos``.
        """
        cur = self._con.cursor()  # a private cursor: relational results must not interleave
        vocab = cur.sql(
            """SELECT item_id,
                      CAST(row_number() OVER (ORDER BY count(*) DESC, item_id) AS INTEGER) AS idx
               FROM events WHERE dataset_id = $dataset
               GROUP BY item_id ORDER BY idx""",
            params={"dataset": dataset_id},
        ).to_arrow_table()
        cur.register("vocab_arrow", vocab)
        try:
            table = cur.sql(
                """SELECT e.user_id, list(v.idx ORDER BY e.pos) AS items
                   FROM events e JOIN vocab_arrow v USING (item_id)
                   WHERE e.dataset_id = $dataset
                   GROUP BY e.user_id ORDER BY e.user_id""",
                params={"dataset": dataset_id},
            ).to_arrow_table()
        finally:
            cur.close()
        return table, vocab


def _check_is_database(path: Path) -> None:
    """Refuse an existing file that is not a DuckDB database (say, a CSV given as --db).

    DuckDB itself would silently open a small one as an empty in-memory database.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return  # missing (a new database), or unreadable: DuckDB will say why
    if head and head[8:12] != b"DUCK":
        raise StoreError(
            f"{path} is not a RecLens database (DuckDB file); point --db at a .duckdb file "
            "or at a new path to create one"
        )


def _clear_rejects(cur: duckdb.DuckDBPyConnection) -> None:
    """Forget the bad lines of earlier reads: DuckDB appends to the rejects tables."""
    cur.execute("DROP TABLE IF EXISTS reclens_reject_errors")
    cur.execute("DROP TABLE IF EXISTS reclens_reject_scans")


def _mapped_events_sql(columns: dict[str, str | None], time_expr: str) -> str:
    """SELECT list turning source columns into the typed event columns (see stage_events)."""

    def col(role: str, cast: str) -> str:
        name = columns.get(role)
        return f"CAST({quote_ident(name)} AS {cast})" if name else f"CAST(NULL AS {cast})"

    tcol = columns.get("time")
    ts_sql = time_expr.format(col=quote_ident(tcol)) if tcol else "CAST(NULL AS TIMESTAMP)"
    value = columns.get("value")
    return f"""nullif(trim({col("user", "VARCHAR")}), '') AS user_id,
               nullif(trim({col("item", "VARCHAR")}), '') AS item_id,
               {ts_sql} AS ts,
               {col("time", "VARCHAR")} AS raw_time,
               {col("type", "VARCHAR")} AS event_type,
               TRY_CAST({quote_ident(value) if value else "NULL"} AS DOUBLE) AS value"""


def _source_column_type(
    cur: duckdb.DuckDBPyConnection, rel_sql: str, params: dict[str, Any], column: str
) -> str | None:
    """DuckDB type of one column of a source, as its reader will produce it."""
    for name, kind, *_ in cur.execute(f"DESCRIBE SELECT * FROM {rel_sql}", params).fetchall():
        if name == column:
            return kind
    return None


def _count_deleted(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> int:
    rows = cur.execute(sql, list(params)).fetchall()
    return int(rows[0][0]) if rows else 0


def _num(value: Any) -> float | int | None:
    if value is None:
        return None
    f = float(value)
    return int(f) if f.is_integer() else round(f, 2)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceSpec:
    """A file to read and the reader options; turns into a DuckDB table function call.

    Args:
        path (str): the file on disk (never used in SQL text: it is a parameter).
        kind (str): ``"csv"`` or ``"parquet"``.
        delimiter (str | None): single character, or None to let the sniffer decide.
        header (bool | None): whether the first row names the columns; None = sniff.
        encoding (str): ``"utf-8"`` or ``"latin-1"``.
        compression (str): ``"auto"``, ``"gzip"`` or ``"none"``.
        varchar_columns (tuple[str, ...]): columns forced to text (ids keep leading zeros).
        all_varchar (bool): read every column as text.
    """

    path: str
    kind: str = "csv"
    delimiter: str | None = None
    header: bool | None = None
    encoding: str = "utf-8"
    compression: str = "auto"
    varchar_columns: tuple[str, ...] = ()
    all_varchar: bool = False

    def reader_sql(self, sniff: bool = False, lenient: bool = False) -> tuple[str, dict[str, Any]]:
        """SQL of the table function and its named parameters (values, never spliced).

        Args:
            sniff (bool): the ``sniff_csv`` call for the same options instead.
            lenient (bool): skip bad lines silently instead of storing them (for samples).
        """
        if self.kind == "parquet":
            return "read_parquet($path)", {"path": self.path}
        options = ["encoding = $encoding", "compression = $compression"]
        params: dict[str, Any] = {
            "path": self.path,
            "encoding": self.encoding,
            "compression": self.compression,
        }
        if sniff or lenient:
            # read_csv below stores bad lines instead of failing; let the sniffer (and a
            # sample) skip them too, or one ragged line makes it choose another dialect.
            options.append("ignore_errors = true")
        else:
            options += [
                "store_rejects = true",
                "rejects_table = 'reclens_reject_errors'",
                "rejects_scan = 'reclens_reject_scans'",
            ]
        if self.delimiter is not None:
            options.append("delim = $delim")
            params["delim"] = self.delimiter
        if self.header is not None:
            options.append("header = $header")
            params["header"] = self.header
        if self.all_varchar:
            options.append("all_varchar = true")
        elif self.varchar_columns and not sniff:
            options.append("types = $types")
            params["types"] = {name: "VARCHAR" for name in self.varchar_columns}
        function = "sniff_csv" if sniff else "read_csv"
        return f"{function}($path, {', '.join(options)})", params


# --------------------------------------------------------------------------- one store per process

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


ProgressFn = Callable[[float, str], None]
