"""Opening a database file: DuckDB settings and caps, the write lock, cursors,
transactions and migrations.

:class:`StoreConnection` is the base every part of :class:`core.store.Store` builds on:
one connection per store, one cursor per thread (:meth:`StoreConnection.cursor`), and every
write inside an explicit transaction (:meth:`StoreConnection.transaction`) serialised by a
process-wide lock, so the store has exactly one writer and any number of readers.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core.store.errors import DatabaseLockedError, StoreError
from core.store.schema import MIGRATIONS, SCHEMA_VERSION

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


class StoreConnection:
    """The open database file: its connection, cursors, transactions and schema level.

    Opened with the arguments of :class:`core.store.Store`, the class built on it.
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
                for script in MIGRATIONS[current:]:
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
