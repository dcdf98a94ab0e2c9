"""Sources: a file to read (:class:`SourceSpec`, turned into a DuckDB table function
call) and what the upload page sees of it before anything is loaded (a sniffed preview,
text samples for the column suggestions, the CSV dialect).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.store.connection import StoreConnection
from core.store.names import quote_ident


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


class Sources(StoreConnection):
    """Looking at a source before loading it; writes nothing."""

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
