"""Ingestion: from a behaviour log (and an optional item file) to a dataset in the store.

The flow is ``inspect`` (sniff the file, preview it, suggest a column mapping),
then ``ingest`` (read, map, clean, load in one transaction). Reading is done by
DuckDB's own readers (CSV sniffer, Parquet); Python never loops over rows.

Everything a user can get wrong raises :class:`IngestError` with one message
that says what is wrong, where, and how to fix it; the database is untouched
by a failing load because the whole load is a single transaction.
"""

from __future__ import annotations

import codecs
import gzip
import logging
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from core.store import (
    DatasetInfo,
    ProgressFn,
    SourceSpec,
    Store,
    StoreError,
    connection_settings,
    validate_dataset_name,
)
from core.data.suggest import (
    EVENT_ROLES,
    ITEM_NAMES,
    ITEM_ROLES,
    LOG_ITEM_ROLES,
    SAMPLE_CELLS,
    SAMPLE_ROWS,
    Suggestion,
    norm,
    suggest_columns,
)

log = logging.getLogger("reclens.ingest")

_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL)")


class IngestError(Exception):
    """A bad file or mapping, with a message written for the person who uploaded it."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file; None / "auto" lets the sniffer decide.

    Args:
        delimiter (str | None): one character (``","``, ``";"``, ``"\\t"``, ``"|"``, ``" "``...).
        header (bool | None): whether the first line holds column names.
        encoding (str): ``"auto"`` (UTF-8, else Latin-1), ``"utf-8"`` or ``"latin-1"``.
    """

    delimiter: str | None = None
    header: bool | None = None
    encoding: str = "auto"


@dataclass(frozen=True)
class EventMapping:
    """Which column plays which role; a name, or a 1-based position for headerless files.

    Args:
        user, item: required.
        time: None means file order.
        type: event type (view, cart...), optional.
        value: rating or weight, optional.
        min_value: keep only events with ``value >= min_value`` (positive filter).
    """

    user: str | int | None = None
    item: str | int | None = None
    time: str | int | None = None
    type: str | int | None = None
    value: str | int | None = None
    min_value: float | None = None


@dataclass(frozen=True)
class ItemMapping:
    """Columns of an item file; ``categories`` is a list column or a delimited string."""

    item: str | int | None = None
    title: str | int | None = None
    categories: str | int | None = None
    text: str | int | None = None
    category_sep: str = "|"


@dataclass(frozen=True)
class Cleaning:
    """Optional cleaning steps. Exact duplicates are always dropped and counted.

    Args:
        min_user_events (int): k-core: users with fewer events are dropped (repeatedly).
        min_item_events (int): k-core: items with fewer events are dropped (repeatedly).
        collapse_repeats (bool): drop an event that repeats the user's previous item.
    """

    min_user_events: int = 1
    min_item_events: int = 1
    collapse_repeats: bool = False


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
                    f"{len(self.columns)} columns ({_names(self.columns)})"
                )
            return self.columns[pos - 1]
        if spec in self.columns:
            return spec
        folded = {c.lower(): c for c in self.columns}
        if spec.lower() in folded:
            return folded[spec.lower()]
        raise IngestError(
            f"{role} column {spec!r} not found; the file's columns are: {_names(self.columns)}"
        )


@dataclass
class IngestResult:
    """What a load produced: the catalogue entry and the cleaning report."""

    dataset: DatasetInfo
    report: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The JSON object printed by ``ingest --json``."""
        return {
            "dataset": self.dataset.name,
            "events": self.dataset.n_events,
            "users": self.dataset.n_users,
            "items": self.dataset.n_items,
            "item_rows": self.dataset.n_item_rows,
            "dropped": self.report["dropped"],
            "report": self.report,
        }


def _names(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:20])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Limits:
    """How much one file may hold, checked before DuckDB reads it.

    Attributes:
        max_bytes: the text a CSV/TSV file expands to (after gzip), or the uncompressed
            size a Parquet file's metadata states: a 200 MB gzip can hold 200 GB.
        max_rows: lines of a CSV/TSV file, or rows in a Parquet file's metadata (its
            dictionary and run-length encodings can hold billions of rows in a few MB).
    """

    max_bytes: int = 5 * 10**9
    max_rows: int = 200_000_000

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, or ``RECLENS_MAX_FILE_BYTES`` / ``RECLENS_MAX_FILE_ROWS``."""
        return cls(
            max_bytes=_env_int("RECLENS_MAX_FILE_BYTES", cls.max_bytes),
            max_rows=_env_int("RECLENS_MAX_FILE_ROWS", cls.max_rows),
        )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").replace("_", "").strip()
    try:
        return int(float(raw)) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, f"{default:,}")
        return default


def detect_source(
    path: str | Path,
    options: ReadOptions = ReadOptions(),
    display_name: str | None = None,
    limits: Limits | None = None,
) -> SourceSpec:
    """Check that ``path`` is a readable CSV/TSV/Parquet file and choose a reader.

    Looks at the first bytes, never at the file name: an Excel workbook renamed to
    ``.csv`` or a binary file are refused with a message, gzip and Parquet are
    recognised by their magic numbers. Messages call the file ``display_name`` (an
    upload's original name) when given. A file beyond ``limits`` (default:
    :meth:`Limits.from_env`) is refused before anything reads it whole.
    """
    path = Path(path)
    display = display_name or path.name
    limits = limits or Limits.from_env()
    if not path.exists():
        raise IngestError(f"file not found: {display}")
    if not path.is_file():
        raise IngestError(f"{display} is not a file")
    if path.stat().st_size == 0:
        raise IngestError(f"{display} is empty: it has no header and no rows")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head.startswith(b"PAR1"):
        _check_parquet_size(path, display, limits)
        return SourceSpec(str(path), kind="parquet")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(
            f"{display} is an Excel workbook or a zip archive, not a text file: open it and "
            "save it as CSV (comma or tab separated), then upload that"
        )
    if not head.strip() and path.stat().st_size <= len(head):
        raise IngestError(f"{display} is empty: it has no header and no rows (only blank lines)")
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:32].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml")):
        raise IngestError(
            f"{display} is an HTML or XML document (a saved web page?), not a CSV/TSV file; "
            "download or export the data itself as CSV or Parquet"
        )
    if re.match(rb"\{\s*\"|\[\s*[\[{\"]", start):
        raise IngestError(
            f"{display} is JSON, not a CSV/TSV file; export the data as CSV or Parquet"
        )
    compression = "none"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IngestError(
            f"{display} is UTF-16 encoded; save it again as UTF-8 (or Latin-1) CSV and upload that"
        )
    if head.startswith(b"\x1f\x8b"):
        compression = "gzip"
    elif b"\x00" in head:
        raise IngestError(
            f"{display} contains binary data (NUL bytes) and is not a CSV/TSV text file; "
            "export the data as CSV or Parquet"
        )
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise IngestError(
            f"the delimiter must be a single character, got {options.delimiter!r} (use \\t for tab)"
        )
    encoding = "utf-8" if options.encoding in ("auto", "utf8", "utf-8") else options.encoding
    if encoding not in ("utf-8", "latin-1"):
        raise IngestError(f"unsupported encoding {options.encoding!r}: use utf-8 or latin-1")
    if options.encoding == "auto" and not _looks_utf8(head, gzipped=compression == "gzip"):
        encoding = "latin-1"
    if compression == "none" and path.stat().st_size > limits.max_bytes:
        raise _too_big(display, limits, "is larger than")
    _refuse_very_wide_lines(
        path, display, options.delimiter, gzipped=compression == "gzip", limits=limits
    )
    return SourceSpec(
        str(path),
        kind="csv",
        delimiter=options.delimiter,
        header=options.header,
        encoding=encoding,
        compression=compression,
    )


def _too_big(display: str, limits: Limits, what: str = "expands to more than") -> IngestError:
    return IngestError(
        f"{display} {what} {_size(limits.max_bytes)}, the most one file may hold "
        "here (RECLENS_MAX_FILE_BYTES); nothing was loaded. Load a sample, or split it"
    )


def _too_long(display: str, limits: Limits, rows: int | None = None) -> IngestError:
    cap = f"{limits.max_rows:,}"
    held = (
        f"holds {rows:,} rows, more than the {cap}"
        if rows is not None
        else f"has more than {cap} lines, the most"
    )
    return IngestError(
        f"{display} {held} one file may hold here (RECLENS_MAX_FILE_ROWS); nothing was "
        "loaded. Load a sample, or split it"
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}"
    return f"{n:,} bytes"


def _check_parquet_size(path: Path, display: str, limits: Limits) -> None:
    """Refuse a Parquet file whose metadata states more rows or bytes than ``limits``."""
    with duckdb.connect(config=connection_settings(":memory:")) as con:
        try:
            rows, size = con.execute(
                "SELECT (SELECT sum(num_rows) FROM parquet_file_metadata($p)),"
                " (SELECT sum(total_uncompressed_size) FROM parquet_metadata($p))",
                {"p": str(path)},
            ).fetchone()
        except duckdb.Error as exc:
            raise _explain(exc, display) from None
    if rows is not None and rows > limits.max_rows:
        raise _too_long(display, limits, int(rows))
    if size is not None and size > limits.max_bytes:
        raise _too_big(display, limits, "holds more than")


MAX_FIELDS = 10_000


def _refuse_very_wide_lines(
    path: Path,
    display: str,
    delimiter: str | None,
    gzipped: bool = False,
    chunk: int = 1 << 24,
    limits: Limits | None = None,
) -> None:
    """Refuse a file with a line of more than :data:`MAX_FIELDS` fields, before DuckDB reads it.

    The same pass counts the bytes and lines, and stops as soon as a file holds more
    than ``limits`` allow (a gzip bomb is refused after ``max_bytes``, not expanded).

    DuckDB's reader records a rejected line once per surplus column, copying the line
    each time: one line of 100,000 fields takes it hours. A numpy pass over the bytes
    finds the line ends; only where a line is long enough to hold that many fields are
    the candidate delimiters counted per line (a block of short lines costs one pass of
    about 0.3 s per GB instead of one pass per candidate delimiter); a quoted field
    full of commas can only make the count too high, and a row of 10,000 fields is no
    behaviour log anyway. A gzip file is decompressed ``chunk`` bytes at a time (never
    whole), and a line may run across chunks: its count carries over.
    """
    candidates = [delimiter] if delimiter else [",", ";", "\t", "|", " "]
    codes = [ord(c) for c in candidates if len(c.encode("latin-1", "replace")) == 1]
    lines_before, carry = 0, np.zeros(len(codes), dtype=np.int64)
    running = 0  # bytes of the line that runs into the next block
    limits = limits or Limits()
    seen = 0
    for block in _text_blocks(path, gzipped, chunk):
        seen += len(block)
        if seen > limits.max_bytes:
            raise _too_big(display, limits)
        data = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(data == 10)
        if lines_before + ends.size > limits.max_rows:
            raise _too_long(display, limits)
        tail_start = int(ends[-1]) + 1 if ends.size else 0
        longest = (
            running + data.size
            if not ends.size
            else max(running + int(ends[0]) + 1, int(np.diff(ends).max()) if ends.size > 1 else 0)
        )
        running = running + data.size if not ends.size else data.size - tail_start
        if max(longest, running) < MAX_FIELDS:
            # No line here is long enough to hold MAX_FIELDS fields (each needs a byte):
            # only the delimiters of the line running on are counted, for the next block.
            tail = data[tail_start:]
            for i, code in enumerate(codes):
                carry[i] = (carry[i] if not ends.size else 0) + int(np.count_nonzero(tail == code))
            lines_before += ends.size
            continue
        for i, code in enumerate(codes):
            at = np.flatnonzero(data == code)
            per_line = np.diff(np.searchsorted(at, ends), prepend=0)
            if per_line.size:
                per_line[0] += carry[i]
            tail = at.size - (np.searchsorted(at, ends[-1]) if ends.size else 0)
            carry[i] = tail + (0 if ends.size else carry[i])
            worst = int(per_line.max()) if per_line.size else 0
            if max(worst, int(carry[i])) >= MAX_FIELDS:
                where = int(per_line.argmax()) if worst >= MAX_FIELDS else ends.size
                line = lines_before + where + 1
                raise IngestError(
                    f"line {line} of {display} has more than {MAX_FIELDS:,} fields (or one "
                    "enormous line): it is not a table of events; check the delimiter and "
                    "that quotes are balanced"
                )
        lines_before += ends.size


def _text_blocks(path: Path, gzipped: bool, size: int) -> Iterator[bytes]:
    """The bytes of a file about ``size`` at a time, decompressed on the fly when ``gzipped``.

    A truncated or corrupt gzip file ends the blocks where it breaks: all that could be
    decompressed is yielded, and DuckDB's reader then reports the damage (see
    :func:`_explain`), as for any gzip file.
    """
    if not gzipped:
        with open(path, "rb") as fh:
            while block := fh.read(size):
                yield block
        return
    with gzip.open(path, "rb") as fh:
        pieces: list[bytes] = []
        held = 0
        while True:
            try:
                piece = fh.read1(size - held)  # one read's worth, so damage loses nothing
            except (EOFError, OSError, zlib.error):  # gzip.BadGzipFile is an OSError
                piece = b""
            if piece:
                pieces.append(piece)
                held += len(piece)
            if held and (held >= size or not piece):
                yield b"".join(pieces)
                pieces, held = [], 0
            if not piece:
                return


def _looks_utf8(head: bytes, gzipped: bool) -> bool:
    """Whether the first bytes of a file decode as UTF-8 (a cut last character is fine)."""
    if gzipped:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        except zlib.error:
            return True  # corrupt: the reader reports it with a better message
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _is_unicode_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unicode" in text or "utf-8" in text or "utf8" in text


def _explain(exc: Exception, display: str) -> IngestError:
    """Turn a DuckDB reader error into a message a person can act on."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    # What the reader says, without the echo of the bad line and the list of reader
    # options that follow it ("compression = none" is no gzip problem).
    lowered = "\n".join(
        line
        for line in text.lower().split("\n  file = ")[0].splitlines()
        if not line.startswith("original line")
    )
    if "maximum line size" in lowered or "line size" in lowered:
        return IngestError(
            f"{display} has a line too long to be a row of a table ({first}; over "
            "2,000,000 bytes); check that it is a CSV and that its quotes are balanced"
        )
    if "gzip" in lowered or "zlib" in lowered or "compress" in lowered:
        return IngestError(
            f"{display} is a gzip file that is truncated or corrupt ({first}); "
            "compress the original again or upload it uncompressed"
        )
    if "no files found" in lowered or "no such file" in lowered:
        return IngestError(f"file not found: {display}")
    if "magic bytes" in lowered:
        return IngestError(
            f"{display} is a Parquet file that is truncated or corrupt; export it again"
        )
    first = re.sub(r"\s+", " ", first)
    return IngestError(
        f"could not read {display}: {first}. Check the delimiter, the header option and the "
        "encoding, or export the file again as UTF-8 CSV"
    )


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
        notes.append(_LATIN1_NOTE)
    try:
        preview, described = store.sniff(source, preview_rows)
    except duckdb.Error as exc:
        if _is_unicode_error(exc) and _can_fall_back_source(source, options):
            source = replace(source, encoding="latin-1")
            notes.append(_LATIN1_NOTE)
            try:
                preview, described = store.sniff(source, preview_rows)
            except duckdb.Error as exc2:
                raise _explain(exc2, display) from None
        else:
            raise _explain(exc, display) from None
    if source.kind == "csv" and options.delimiter is None and len(described) == 1:
        # DuckDB's sniffer does not try a single space; try the usual suspects ourselves.
        for candidate in (" ", "\t", ";", "|", ":"):
            trial = replace(source, delimiter=candidate)
            try:
                trial_preview, trial_described = store.sniff(trial, preview_rows)
            except duckdb.Error:
                continue
            if len(trial_described) > 1:
                source, preview, described = trial, trial_preview, trial_described
                break
    has_header, delimiter = True, None
    if source.kind == "csv":
        try:
            has_header, delimiter = store.sniff_dialect(source)
        except duckdb.Error as exc:
            raise _explain(exc, display) from None
        # Pin what the sniffer chose so the load reads the file exactly as previewed.
        source = replace(source, delimiter=delimiter, header=has_header)
        if options.header is None and has_header and _header_looks_like_data(preview, described):
            source = replace(source, header=False)
            has_header = False
            try:
                preview, described = store.sniff(source, preview_rows)
            except duckdb.Error as exc:
                raise _explain(exc, display) from None
            notes.append(
                "the first line looks like data (its values appear again below it), so it was "
                "read as a row; set the header option if it names the columns"
            )
    columns = [d.rsplit(":", 1)[0] for d in described]
    types = dict(d.rsplit(":", 1) for d in described)
    if not columns:
        raise IngestError(f"{display} has no columns")
    if len(columns) == 1 and source.kind == "csv":
        notes.append(
            f"only one column was found; if {display} has several, set the delimiter yourself"
        )
    try:
        sample = store.sample_text(source, max(preview_rows, _sample_rows(len(columns))))
    except duckdb.Error:
        sample = preview.astype(object).where(preview.notna(), None)
    return Inspection(source, columns, types, preview, has_header, delimiter, notes, sample)


def _sample_rows(n_columns: int) -> int:
    """Rows of the suggestion sample for a file of ``n_columns`` (a wide file reads fewer)."""
    return max(200, min(SAMPLE_ROWS, SAMPLE_CELLS // max(1, n_columns)))


_LATIN1_NOTE = "the file is not valid UTF-8; it was read as Latin-1"


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


# --------------------------------------------------------------------------- suggestions


def suggest(inspection: Inspection) -> Suggestion:
    """Suggested roles of the log's columns, each with its reason (see :mod:`core.data.suggest`)."""
    sample = inspection.sample if inspection.sample is not None else inspection.preview
    return suggest_columns(inspection.columns, inspection.types, sample, inspection.has_header)


def suggest_mapping(inspection: Inspection) -> EventMapping:
    """The suggested event mapping (names and content; the shape rule for headerless files)."""
    found = suggest(inspection)
    return EventMapping(**{role: found.column(role) for role in EVENT_ROLES})


def suggest_item_mapping(inspection: Inspection) -> ItemMapping:
    """Guess the item-file mapping from column names (first column as id otherwise)."""
    found: dict[str, str | None] = {}
    taken: set[str] = set()
    for role in ITEM_ROLES:
        found[role] = next(
            (
                c
                for name in ITEM_NAMES[role]
                for c in inspection.columns
                if norm(c) == name and c not in taken
            ),
            None,
        )
        if found[role]:
            taken.add(found[role])
    if found["item"] is None and inspection.columns:
        found["item"] = inspection.columns[0]
    return ItemMapping(**found)


def unsure_message(inspection: Inspection, found: Suggestion, how: str) -> str:
    """Why a file with a header cannot be loaded on a guess, and what to say instead."""
    roles = " and ".join(found.unsure_ids())
    guessed = "; ".join(
        f"{role}: {g.column!r} ({g.reason})" if g.column else f"{role}: none"
        for role, g in found.events.items()
        if role in ("user", "item")
    )
    return (
        f"could not tell the {roles} column from the names of the columns "
        f"({_names(inspection.columns)}); the best guess from the content is {guessed}. "
        f"{how}"
    )


# --------------------------------------------------------------------------- loading


# A time of day followed by a UTC offset or zone letter: "12:30:00+02:00", "12:30Z".
# (No braces: the SQL it goes into is a str.format template.)
_OFFSET_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(z|utc|gmt|[+-]\d\d(:?\d\d)?)$"


def _time_sql(kind: str, column: str) -> str:
    """SQL turning the time column ``{col}`` into a naive UTC TIMESTAMP (NULL if unparseable)."""
    numeric = (
        "CASE WHEN abs({x}) >= 1e14 THEN NULL "
        "WHEN abs({x}) >= 1e11 THEN make_timestamp(CAST({x} * 1000 AS BIGINT)) "
        "ELSE make_timestamp(CAST({x} * 1000000 AS BIGINT)) END"
    )
    if _NUMERIC.match(kind):
        return numeric.format(x="CAST({col} AS DOUBLE)")
    if kind == "TIMESTAMP WITH TIME ZONE":
        return "CAST({col} AT TIME ZONE 'UTC' AS TIMESTAMP)"
    if kind.startswith(("TIMESTAMP", "DATE")):
        return "CAST({col} AS TIMESTAMP)"
    if kind == "VARCHAR":
        text = "trim(CAST({col} AS VARCHAR))"
        # A cast to TIMESTAMP ignores a UTC offset ("...+02:00"): such values go through
        # TIMESTAMPTZ and are converted to UTC; values without an offset are taken as UTC.
        has_offset = f"regexp_matches({text}, '{_OFFSET_RE}', 'i')"
        return (
            f"CASE WHEN {has_offset} "
            f"THEN TRY_CAST(TRY_CAST({text} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP) "
            f"ELSE coalesce(TRY_CAST({text} AS TIMESTAMP), "
            + numeric.format(x=f"TRY_CAST({text} AS DOUBLE)")
            + ") END"
        )
    raise IngestError(
        f"the time column {column!r} has type {kind}; map a date-time, a date or a Unix "
        "timestamp (seconds or milliseconds) column, or choose no time column to use file order"
    )


def _detail_columns(inspection: Inspection, item_mapping: ItemMapping | None) -> set[str]:
    """The log's columns that an item mapping takes as item details."""
    if item_mapping is None:
        return set()
    return {
        inspection.resolve(spec, f"item {role}")
        for role in LOG_ITEM_ROLES
        if (spec := getattr(item_mapping, role))
    }


def refuse_single_column(inspection: Inspection) -> None:
    """A behaviour log needs two columns at least: say so, and what to try."""
    if len(inspection.columns) == 1:
        raise IngestError(
            f"the file has only one column ({inspection.columns[0]!r}); a behaviour log needs "
            "a user and an item column: set the delimiter if it has several"
        )


def _resolve_events(inspection: Inspection, mapping: EventMapping) -> dict[str, str | None]:
    columns = {role: inspection.resolve(getattr(mapping, role), role) for role in EVENT_ROLES}
    refuse_single_column(inspection)
    for role in ("user", "item"):
        if not columns[role]:
            raise IngestError(
                f"choose the {role} column; the file's columns are: {_names(inspection.columns)}"
            )
        kind = inspection.types.get(columns[role], "")
        if kind.endswith("]") or kind.startswith(("STRUCT", "MAP", "UNION")):
            raise IngestError(
                f"the {role} column {columns[role]!r} holds {kind} values (lists or records), "
                "not one id per row; map a column of single ids"
            )
    used = [c for c in columns.values() if c]
    if len(used) != len(set(used)):
        raise IngestError("each column can play only one role; the mapping uses one twice")
    if mapping.min_value is not None and not columns["value"]:
        raise IngestError("a minimum value needs a value column (rating or weight)")
    return columns


def ingest(
    store: Store,
    name: str,
    events_path: str | Path,
    mapping: EventMapping | None = None,
    *,
    read: ReadOptions = ReadOptions(),
    items_path: str | Path | None = None,
    item_mapping: ItemMapping | None = None,
    items_read: ReadOptions = ReadOptions(),
    cleaning: Cleaning = Cleaning(),
    replace_existing: bool = False,
    source_names: Sequence[str] | None = None,
    planted: pd.DataFrame | None = None,
    progress: ProgressFn | None = None,
    inspection: Inspection | None = None,
    limits: Limits | None = None,
) -> IngestResult:
    """Load a behaviour log (and optional item file) as dataset ``name``, in one transaction.

    Args:
        store: the target store.
        name: dataset name (a slug, see :func:`core.store.validate_dataset_name`).
        events_path: the behaviour log (CSV/TSV/any delimiter, gzip or not, or Parquet).
        mapping: column roles; None = :func:`suggest_mapping`.
        read: reader options for the log.
        items_path: optional item file (id, title, categories, text).
        item_mapping: its column roles; None = :func:`suggest_item_mapping`. Without an
            item file, the log's own columns that hold item details (title, categories,
            text: the items of :func:`suggest`): each item gets the most frequent value
            of each; its ``item`` is the log's item column.
        items_read: reader options for the item file.
        cleaning: k-core and repeat collapsing.
        replace_existing: replace a dataset of the same name instead of refusing.
        source_names: names to record for the files (an upload's original names).
        planted: ground-truth interests of generated data (see :mod:`core.data.demo`).
        progress: ``progress(fraction, message)`` called between phases.
        inspection: ``inspect(store, events_path, read)`` when the caller already has it
            (the file is then not sniffed and sampled again).
        limits: how much each file may hold (default :meth:`Limits.from_env`).

    Returns:
        The new catalogue entry and the cleaning report.

    Raises:
        IngestError: with a message naming the problem, where it is and how to fix it.
    """
    say = progress or (lambda fraction, message: None)
    try:
        validate_dataset_name(name)
    except StoreError as exc:
        raise IngestError(str(exc)) from None
    if not replace_existing and store.find_dataset(name):
        raise IngestError(
            f"a dataset called {name!r} already exists; choose another name or confirm replacing it"
        )
    names = list(
        source_names or [Path(events_path).name] + ([Path(items_path).name] if items_path else [])
    )
    say(0.02, "sniffing the file")
    events = inspection or inspect(store, events_path, read, display_name=names[0], limits=limits)
    if mapping is None:
        refuse_single_column(events)
        found = suggest(events)
        if events.has_header and not found.confident:
            raise IngestError(
                unsure_message(events, found, "Name the user and item columns in the mapping.")
            )
        details = _detail_columns(events, item_mapping) if items_path is None else set()
        suggested = {role: found.column(role) for role in EVENT_ROLES}
        mapping = EventMapping(
            **{
                role: None if role not in ("user", "item") and column in details else column
                for role, column in suggested.items()
            }
        )
    columns = _resolve_events(events, mapping)
    if items_path is None and item_mapping is not None:
        item_mapping = replace(item_mapping, item=columns["item"])
    items = None
    if items_path is not None:
        items = inspect(store, items_path, items_read, display_name=names[-1], limits=limits)
        item_mapping = item_mapping or suggest_item_mapping(items)
    # With encoding "auto", a UTF-8 read that meets invalid bytes past the sniffed start
    # of a file is rolled back and the file read again as Latin-1.
    while True:
        try:
            return _load(
                store,
                name,
                events,
                columns,
                mapping,
                items,
                item_mapping,
                cleaning,
                replace_existing,
                names,
                planted,
                say,
                fallback=(_can_fall_back(events, read), _can_fall_back(items, items_read)),
            )
        except _NotUtf8 as exc:
            if exc.which == "events":
                events = _as_latin1(events)
            else:
                items = _as_latin1(items)
        except duckdb.Error as exc:
            if _is_unicode_error(exc) and _can_fall_back(events, read):
                events = _as_latin1(events)
                continue
            raise _explain(exc, names[0]) from None
        except StoreError as exc:
            raise IngestError(str(exc)) from None


class _NotUtf8(Exception):
    """Raised inside a load to roll it back and read a file again as Latin-1."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


def _can_fall_back_source(source: SourceSpec, read: ReadOptions) -> bool:
    """Whether a UTF-8 read of ``source`` may be retried as Latin-1 (encoding "auto")."""
    return read.encoding == "auto" and source.kind == "csv" and source.encoding == "utf-8"


def _can_fall_back(inspection: Inspection | None, read: ReadOptions) -> bool:
    return inspection is not None and _can_fall_back_source(inspection.source, read)


def _as_latin1(inspection: Inspection) -> Inspection:
    return replace(
        inspection,
        source=replace(inspection.source, encoding="latin-1"),
        notes=[*inspection.notes, _LATIN1_NOTE],
    )


def _encoding_rejects(rejects: Sequence[Sequence[Any]]) -> bool:
    return any(str(r[1]).upper() == "INVALID ENCODING" for r in rejects)


def _load(
    store: Store,
    name: str,
    events: Inspection,
    columns: dict[str, str | None],
    mapping: EventMapping,
    items: Inspection | None,
    item_mapping: ItemMapping | None,
    cleaning: Cleaning,
    replace_existing: bool,
    names: list[str],
    planted: pd.DataFrame | None,
    say: ProgressFn,
    fallback: tuple[bool, bool] = (False, False),
) -> IngestResult:
    """The load transaction; ``fallback`` says whether invalid UTF-8 in the events
    (items) file may raise :class:`_NotUtf8` to have it read again as Latin-1."""
    time_col = columns["time"]
    time_expr = _time_sql(events.types[time_col], time_col) if time_col else ""
    text_cols = tuple(c for role in ("user", "item", "type") if (c := columns[role]))
    source = replace(events.source, varchar_columns=text_cols)
    with store.transaction() as cur:
        say(0.1, "reading events")
        staged = store.stage_events(cur, source, columns, time_expr)
        rows_read = staged["rows_read"]
        rejects = staged["csv_rejects"]
        if fallback[0] and _encoding_rejects(rejects):
            raise _NotUtf8("events")
        if rows_read == 0:
            raise IngestError(
                f"{names[0]} has no data rows"
                + (
                    f" ({len(rejects)} lines could not be parsed, the first at line "
                    f"{rejects[0][0]}: {_short(rejects[0][2])}); check the delimiter and quotes"
                    if rejects
                    else ", only a header line; add the events below it"
                )
            )
        if len(rejects) > max(10, rows_read):
            raise IngestError(
                f"{len(rejects)} of {len(rejects) + rows_read} lines of {names[0]} could not be "
                f"parsed (first at line {rejects[0][0]}: {_short(rejects[0][2])}); "
                "check the delimiter and the header option"
            )
        floats = store.normalise_float_ids(cur, "stage_read", ["user_id", "item_id"])
        say(0.45, "checking ids and times")
        invalid = store.reject_invalid_events(
            cur, has_time_column=bool(time_col), first_line=2 if events.has_header else 1
        )
        dropped: dict[str, int] = {
            "unparseable_rows": len(rejects),
            "missing_id": invalid["missing_id"],
            "bad_time": invalid["bad_time"],
        }
        if mapping.min_value is not None:
            dropped["below_min_value"] = store.filter_min_value(cur, float(mapping.min_value))
        say(0.55, "removing duplicates")
        dropped["duplicates"] = store.drop_duplicate_events(cur)
        if cleaning.collapse_repeats:
            dropped["repeats"] = store.collapse_repeats(cur)
        if cleaning.min_user_events > 1 or cleaning.min_item_events > 1:
            say(0.65, "k-core filtering")
            dropped["k_core"] = store.k_core(
                cur, max(1, cleaning.min_user_events), max(1, cleaning.min_item_events)
            )
        n_events = store.staged_count(cur)
        if n_events == 0:
            raise IngestError(_nothing_left(names[0], rows_read, dropped))
        reject_lines = sorted({int(r[0]) for r in rejects})
        for example in invalid["examples"]:
            # The store counts accepted rows; lines the reader rejected come in between.
            example["line"] = _shift_past(example["line"], reject_lines)
        examples = sorted(
            [
                {
                    "line": int(r[0]),
                    "problem": f"{r[1].lower()}: {_short(r[2])}",
                    "text": _short(r[3]),
                }
                for r in rejects[:5]
            ]
            + invalid["examples"],
            key=lambda example: example["line"],
        )
        item_report: dict[str, Any] = {}
        item_columns: dict[str, str | None] = {}
        from_log = items is None and item_mapping is not None
        details = events if from_log else items
        if details is not None and item_mapping is not None:
            say(0.7, "reading item details" if from_log else "reading items")
            where = "item" if from_log else "item-file"
            item_columns = {
                role: details.resolve(getattr(item_mapping, role), f"{where} {role}")
                for role in ITEM_ROLES
            }
            if not item_columns["item"]:
                raise IngestError("choose the item id column of the item file")
            if from_log and not any(item_columns[r] for r in LOG_ITEM_ROLES):
                raise IngestError("choose at least one column of item details in the log")
            details_used = {c for r, c in item_columns.items() if c and r != "item"}
            if from_log and details_used & {c for c in columns.values() if c}:
                raise IngestError(
                    "a column of the log cannot be both an event column and an item detail"
                )
            cat = item_columns["categories"]
            is_list = bool(cat) and details.types.get(cat, "").endswith("[]")
            text_item_cols = tuple(c for c in (item_columns["item"], item_columns["title"]) if c)
            item_source = replace(details.source, varchar_columns=text_item_cols)
            try:
                item_report = store.stage_items(
                    cur,
                    item_source,
                    item_columns,
                    item_mapping.category_sep,
                    is_list,
                    per_item=from_log,
                )
            except duckdb.Error as exc:
                raise _explain(exc, names[0] if from_log else names[-1]) from None
            if fallback[1 if not from_log else 0] and item_report["invalid_encoding_rows"]:
                raise _NotUtf8("items" if not from_log else "events")
            item_floats = store.normalise_float_ids(cur, "stage_items", ["item_id"])
            if item_floats and not from_log:
                floats["item-file item_id"] = item_floats["item_id"]
            if from_log:
                store.keep_staged_items_of_events(cur)
                item_report["from_log"] = True
                item_report["items"] = store.staged_item_count(cur)
        notes = list(events.notes)
        for column, count in floats.items():
            where = (
                f"the item file's ids ({item_columns['item']!r})"
                if column.startswith("item-file")
                else f"the {column[:-3]} ids ({columns[column[:-3]]!r})"
            )
            notes.append(
                f"{where} are whole numbers written as decimals (like 17850.0): {count:,} "
                "were read without the .0"
            )
        if from_log and item_report:
            shown = ", ".join(
                f"{role} = {item_columns[role]!r}" for role in LOG_ITEM_ROLES if item_columns[role]
            )
            notes.append(
                f"item details taken from the log ({shown}): one row per item, the most "
                f"frequent value of each; {item_report.get('varied_items', 0):,} items had "
                "differing values"
            )
        n_bad_values, bad_value = staged["bad_values"]
        if n_bad_values:
            notes.append(
                f"{n_bad_values} values of the value column {columns['value']!r} are not numbers "
                f"(for example {bad_value!r}) and were loaded as empty; write decimals with a "
                "point (4.5, not 4,5)"
            )
        notes += [f"item file: {note}" for note in (items.notes if items else [])]
        say(0.8, "writing the dataset")
        report = {
            "rows_read": rows_read,
            "events_loaded": n_events,
            "dropped": dropped,
            "examples": examples[:5],
            "encoding": events.source.encoding,
            "delimiter": events.delimiter,
            "header": events.has_header,
            "time": _time_note(time_col, events.types),
            "items": item_report,
            "notes": notes,
        }
        saved_mapping = {
            "events": {**columns, "min_value": mapping.min_value},
            "items": {
                **item_columns,
                "category_sep": item_mapping.category_sep,
                "from_log": from_log,
            }
            if item_columns
            else None,
            "cleaning": asdict(cleaning),
        }
        info = store.commit_dataset(
            cur, name, names, saved_mapping, report, bool(item_columns), replace_existing
        )
        if planted is not None:
            store.save_planted(cur, info.dataset_id, planted)
    say(1.0, "done")
    return IngestResult(info, report)


def _shift_past(line: int, rejected: Sequence[int]) -> int:
    """The file line of a row numbered ``line`` as if no line had been rejected."""
    for bad in rejected:  # sorted; at most the handful of lines the reader refused
        if bad > line:
            break
        line += 1
    return line


def _short(text: Any, limit: int = 120) -> str:
    text = re.sub(r"\s+", " ", str(text or "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time_note(column: str | None, types: dict[str, str]) -> str:
    if not column:
        return "no time column: events are ordered as they appear in the file"
    kind = types[column]
    if _NUMERIC.match(kind):
        return f"{column}: Unix timestamps (seconds, or milliseconds for values >= 1e11)"
    return f"{column}: {kind.lower()} values"


def _nothing_left(display: str, rows_read: int, dropped: dict[str, int]) -> str:
    reasons = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in dropped.items() if v)
    return (
        f"no events are left after cleaning {display} ({rows_read} rows read; dropped {reasons}); "
        "check the id and time columns, the minimum value and the k-core limits"
    )


def preview_mapping(
    store: Store, inspection: Inspection, mapping: EventMapping, limit: int = 10
) -> pd.DataFrame:
    """The first rows of a file as ``ingest`` would load them: mapped, typed, unfiltered.

    Columns: user_id, item_id, ts, raw_time (the time as written), event_type, value.
    """
    columns = _resolve_events(inspection, mapping)
    time_col = columns["time"]
    time_expr = _time_sql(inspection.types[time_col], time_col) if time_col else ""
    text_cols = tuple(c for role in ("user", "item", "type") if (c := columns[role]))
    source = replace(inspection.source, varchar_columns=text_cols)
    try:
        frame = store.preview_events(source, columns, time_expr, limit)
    except duckdb.Error as exc:
        raise _explain(exc, Path(source.path).name) from None
    sample = inspection.sample
    for role in ("user", "item"):
        # as the load will: ids the sample shows as whole numbers written "17850.0"
        if (
            sample is not None
            and columns[role] in sample
            and _floats_of_ints(sample[columns[role]])
        ):
            frame[f"{role}_id"] = frame[f"{role}_id"].str.replace(r"\.0+$", "", regex=True)
    return frame


def _floats_of_ints(values: pd.Series) -> bool:
    """Whether text ids are whole numbers some of which are written as decimals (17850.0)."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    return bool(len(text)) and bool(
        text.str.fullmatch(r"-?\d+(\.0+)?").all() and text.str.contains(".", regex=False).any()
    )
