"""The SQL that turns a log's time column into a naive UTC ``TIMESTAMP``.

Ingestion knows which column holds the time and the type DuckDB's reader sniffed for
it; the expression built here is the template that the store's staging statements
(``Store.stage_events``, ``Store.preview_events``) put in place of the time, with
``{col}`` standing for the quoted column. It lives in the store with every other SQL
statement; :data:`NUMERIC_TYPE` is the one spelling of DuckDB's number types.
"""

from __future__ import annotations

import re

# DuckDB's integer and floating-point types, as its reader names a sniffed column.
NUMERIC_TYPE = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL)"
)

# A time of day followed by a UTC offset or zone letter: "12:30:00+02:00", "12:30Z".
# (No braces: the SQL it goes into is a str.format template.)
_OFFSET_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(z|utc|gmt|[+-]\d\d(:?\d\d)?)$"


def time_sql(kind: str) -> str | None:
    """SQL turning the time column ``{col}`` into a naive UTC TIMESTAMP (NULL if unparseable).

    Numbers are Unix timestamps (seconds, or milliseconds from 1e11); text is read as a
    date-time, converted to UTC where it carries an offset, else as a number.

    Args:
        kind: the column's type as DuckDB's reader sniffed it (``"BIGINT"``, ``"VARCHAR"``...).

    Returns:
        A ``str.format`` template with a ``{col}`` field, or None for a type that cannot
        hold times (a list, a boolean...).
    """
    numeric = (
        "CASE WHEN abs({x}) >= 1e14 THEN NULL "
        "WHEN abs({x}) >= 1e11 THEN make_timestamp(CAST({x} * 1000 AS BIGINT)) "
        "ELSE make_timestamp(CAST({x} * 1000000 AS BIGINT)) END"
    )
    if NUMERIC_TYPE.match(kind):
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
    return None
