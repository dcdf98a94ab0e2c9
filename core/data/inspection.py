"""Sniffing a file: its columns, their types, the first rows, the header and the delimiter.

:func:`inspect` reads a file's start through DuckDB's sniffer (after
:func:`core.data.sources.detect_source` has checked the file) and returns an
:class:`Inspection`, the basis of the mapping form and of the load: the reader is pinned
to what was previewed, so the load reads the file exactly as the person saw it. A file
that is not valid UTF-8 is read as Latin-1 when the encoding is left to "auto"; the
helpers for that fallback live here too, since the load uses them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import pandas as pd

from core.data.mapping import IngestError, column_list
from core.data.sources import Limits, ReadOptions, detect_source, explain, is_unicode_error
from core.data.suggest import SAMPLE_CELLS, SAMPLE_ROWS
from core.store import SourceSpec, Store

LATIN1_NOTE = "the file is not valid UTF-8; it was read as Latin-1"


@dataclass
class Inspection:
    """What a file looks like once sniffed: the basis of the mapping form."""

    source: SourceSpec
    columns: list[str]
    types: dict[str, str]
    preview: pd.DataFrame
    has_header: bool
    delimiter: str | None
    notes: list[str] = field(default_factory=list)
    # The first rows with every value as text: what the mapping suggestions read.
    sample: pd.DataFrame | None = None

    def resolve(self, spec: str | int | None, role: str) -> str | None:
        """Turn a column name or 1-based position into the file's column name."""
        if spec is None or spec == "":
            return None
        if isinstance(spec, int) or (
            isinstance(spec, str) and spec.isdigit() and spec not in self.columns
        ):
            pos = int(spec)
            if not 1 <= pos <= len(self.columns):
                raise IngestError(
                    f"{role} column position {pos} is out of range: the file has "
                    f"{len(self.columns)} columns ({column_list(self.columns)})"
                )
            return self.columns[pos - 1]
        if spec in self.columns:
            return spec
        folded = {c.lower(): c for c in self.columns}
        if spec.lower() in folded:
            return folded[spec.lower()]
        raise IngestError(
            f"{role} column {spec!r} not found; the file's columns are: {column_list(self.columns)}"
        )


@dataclass
class _Sniffed:
    """A file as the sniffer has read it so far.

    Attributes:
        source: the reader settings; preview: the first rows.
        described: ``"name:TYPE"`` of each column.
        has_header, delimiter: the dialect, once pinned (:func:`_pin_dialect`).
    """

    source: SourceSpec
    preview: pd.DataFrame
    described: list[str]
    has_header: bool = True
    delimiter: str | None = None


def inspect(
    store: Store,
    path: str | Path,
    options: ReadOptions = ReadOptions(),
    display_name: str | None = None,
    preview_rows: int = 20,
    limits: Limits | None = None,
) -> Inspection:
    """Sniff a file: its columns, their types, the first rows, header and delimiter.

    Args:
        store: the store whose DuckDB reads the file (nothing is written).
        path: the file on disk.
        options: reader overrides; the sniffer decides what is left as None/auto.
        display_name: the name to show in messages (an upload's original name).
        preview_rows: rows in the preview.
        limits: how much the file may hold (default :meth:`Limits.from_env`).
    """
    display = display_name or Path(path).name
    source = detect_source(path, options, display, limits)
    notes: list[str] = []
    if source.kind == "csv" and options.encoding == "auto" and source.encoding == "latin-1":
        notes.append(LATIN1_NOTE)
    sniffed = _sniff(store, source, options, display, preview_rows, notes)
    if source.kind == "csv" and options.delimiter is None and len(sniffed.described) == 1:
        _try_other_delimiters(store, sniffed, preview_rows)
    if source.kind == "csv":
        _pin_dialect(store, sniffed, options, display, preview_rows, notes)
    columns = [d.rsplit(":", 1)[0] for d in sniffed.described]
    types = dict(d.rsplit(":", 1) for d in sniffed.described)
    if not columns:
        raise IngestError(f"{display} has no columns")
    if len(columns) == 1 and source.kind == "csv":
        notes.append(
            f"only one column was found; if {display} has several, set the delimiter yourself"
        )
    preview = sniffed.preview
    try:
        sample = store.sample_text(sniffed.source, max(preview_rows, _sample_rows(len(columns))))
    except duckdb.Error:
        sample = preview.astype(object).where(preview.notna(), None)
    return Inspection(
        sniffed.source,
        columns,
        types,
        preview,
        sniffed.has_header,
        sniffed.delimiter,
        notes,
        sample,
    )


def _sniff(
    store: Store,
    source: SourceSpec,
    options: ReadOptions,
    display: str,
    preview_rows: int,
    notes: list[str],
) -> _Sniffed:
    """The first rows and the column types; a file that turns out not to be UTF-8 past
    its first bytes is sniffed again as Latin-1 (encoding "auto"), with a note."""
    try:
        return _Sniffed(source, *store.sniff(source, preview_rows))
    except duckdb.Error as exc:
        if not (is_unicode_error(exc) and can_fall_back_source(source, options)):
            raise explain(exc, display) from None
    source = replace(source, encoding="latin-1")
    notes.append(LATIN1_NOTE)
    try:
        return _Sniffed(source, *store.sniff(source, preview_rows))
    except duckdb.Error as exc:
        raise explain(exc, display) from None


def _try_other_delimiters(store: Store, sniffed: _Sniffed, preview_rows: int) -> None:
    """One column found: DuckDB's sniffer does not try a single space, so try the usual
    suspects ourselves and keep the first that splits the file."""
    for candidate in (" ", "\t", ";", "|", ":"):
        trial = replace(sniffed.source, delimiter=candidate)
        try:
            preview, described = store.sniff(trial, preview_rows)
        except duckdb.Error:
            continue
        if len(described) > 1:
            sniffed.source, sniffed.preview, sniffed.described = trial, preview, described
            return


def _pin_dialect(
    store: Store,
    sniffed: _Sniffed,
    options: ReadOptions,
    display: str,
    preview_rows: int,
    notes: list[str],
) -> None:
    """Pin the header and delimiter the sniffer chose, so the load reads the file exactly
    as previewed; a header line that looks like data is read as a row, with a note."""
    try:
        sniffed.has_header, sniffed.delimiter = store.sniff_dialect(sniffed.source)
    except duckdb.Error as exc:
        raise explain(exc, display) from None
    sniffed.source = replace(sniffed.source, delimiter=sniffed.delimiter, header=sniffed.has_header)
    if not (
        options.header is None
        and sniffed.has_header
        and _header_looks_like_data(sniffed.preview, sniffed.described)
    ):
        return
    sniffed.source = replace(sniffed.source, header=False)
    sniffed.has_header = False
    try:
        sniffed.preview, sniffed.described = store.sniff(sniffed.source, preview_rows)
    except duckdb.Error as exc:
        raise explain(exc, display) from None
    notes.append(
        "the first line looks like data (its values appear again below it), so it was "
        "read as a row; set the header option if it names the columns"
    )


def _sample_rows(n_columns: int) -> int:
    """Rows of the suggestion sample for a file of ``n_columns`` (a wide file reads fewer)."""
    return max(200, min(SAMPLE_ROWS, SAMPLE_CELLS // max(1, n_columns)))


def _header_looks_like_data(preview: pd.DataFrame, described: list[str]) -> bool:
    """Whether a sniffed header of an all-text file is really the first row of data.

    DuckDB's sniffer cannot tell a header from data when every column is text, and
    then takes the first line as the header. Ids repeat in a behaviour log, so a
    "column name" that appears again as a value of its own column is data.
    """
    if not described or any(d.rsplit(":", 1)[1] != "VARCHAR" for d in described):
        return False
    return any(
        name in set(preview[name].dropna().astype(str))
        for name in (d.rsplit(":", 1)[0] for d in described)
    )


def can_fall_back_source(source: SourceSpec, read: ReadOptions) -> bool:
    """Whether a UTF-8 read of ``source`` may be retried as Latin-1 (encoding "auto")."""
    return read.encoding == "auto" and source.kind == "csv" and source.encoding == "utf-8"


def can_fall_back(inspection: Inspection | None, read: ReadOptions) -> bool:
    """Whether the inspected file (if any) may be read again as Latin-1."""
    return inspection is not None and can_fall_back_source(inspection.source, read)


def as_latin1(inspection: Inspection) -> Inspection:
    """The inspection with its file to be read as Latin-1, and a note saying so."""
    return replace(
        inspection,
        source=replace(inspection.source, encoding="latin-1"),
        notes=[*inspection.notes, LATIN1_NOTE],
    )
