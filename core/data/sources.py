"""Reading a source file: what it is, whether it may be read, and what DuckDB says about it.

Before DuckDB reads a file, :func:`detect_source` looks at its first bytes (never at
its name) to refuse what is not a CSV/TSV or Parquet file, picks the compression and
the encoding, and checks it against the :class:`Limits` (a gzip bomb, a Parquet file
whose metadata states billions of rows, a line of 100,000 fields are refused before
anything reads them whole). :func:`explain` turns a DuckDB reader error into a message a
person can act on.
"""

from __future__ import annotations

import codecs
import gzip
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from core.data.mapping import IngestError
from core.store import SourceSpec, connection_settings

log = logging.getLogger("reclens.ingest")


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
    compression = _text_compression(head, path.stat().st_size, display)
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise IngestError(
            f"the delimiter must be a single character, got {options.delimiter!r} (use \\t for tab)"
        )
    encoding = _encoding(options, head, gzipped=compression == "gzip")
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


def _text_compression(head: bytes, size: int, display: str) -> str:
    """``"gzip"`` or ``"none"`` for a text file starting with ``head``; refuses a file that
    is not one (Excel, a web page, JSON, UTF-16, binary data) with what to do instead."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(
            f"{display} is an Excel workbook or a zip archive, not a text file: open it and "
            "save it as CSV (comma or tab separated), then upload that"
        )
    if not head.strip() and size <= len(head):
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
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IngestError(
            f"{display} is UTF-16 encoded; save it again as UTF-8 (or Latin-1) CSV and upload that"
        )
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if b"\x00" in head:
        raise IngestError(
            f"{display} contains binary data (NUL bytes) and is not a CSV/TSV text file; "
            "export the data as CSV or Parquet"
        )
    return "none"


def _encoding(options: ReadOptions, head: bytes, gzipped: bool) -> str:
    """The encoding to read with: the one asked for, or with ``"auto"`` UTF-8 unless the
    first bytes do not decode as UTF-8 (then Latin-1)."""
    encoding = "utf-8" if options.encoding in ("auto", "utf8", "utf-8") else options.encoding
    if encoding not in ("utf-8", "latin-1"):
        raise IngestError(f"unsupported encoding {options.encoding!r}: use utf-8 or latin-1")
    if options.encoding == "auto" and not _looks_utf8(head, gzipped=gzipped):
        encoding = "latin-1"
    return encoding


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
            raise explain(exc, display) from None
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
    :func:`explain`), as for any gzip file.
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


def is_unicode_error(exc: Exception) -> bool:
    """Whether a DuckDB error is about text that is not valid UTF-8."""
    text = str(exc).lower()
    return "unicode" in text or "utf-8" in text or "utf8" in text


def explain(exc: Exception, display: str) -> IngestError:
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
