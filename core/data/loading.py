"""The load: one transaction from a mapped log (and item details) to a dataset in the store.

:func:`load` stages the events through the store's reader, drops what cannot be an
event (unparseable lines, missing ids, bad times) and what the cleaning asks
(duplicates, repeats, k-core), stages the item details from an item file or from the
log's own columns, and writes the dataset with a report of every row it dropped and why.
Anything wrong raises :class:`core.data.mapping.IngestError` inside the transaction, so
a failing load leaves the database untouched. :func:`core.data.ingest.ingest` settles a
:class:`LoadPlan` first and runs the load (again, as Latin-1, when a file turns out not
to be UTF-8: :class:`NotUtf8`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import duckdb
import pandas as pd

from core.common.progress import ProgressFn
from core.data.inspection import Inspection
from core.data.mapping import Cleaning, EventMapping, IngestError, ItemMapping
from core.data.sources import explain
from core.data.suggest import ITEM_ROLES, LOG_ITEM_ROLES
from core.store import DatasetInfo, SourceSpec, Store
from core.store.time_sql import NUMERIC_TYPE, time_sql


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


@dataclass(frozen=True)
class LoadPlan:
    """What a load reads and how, settled before its transaction opens.

    Attributes:
        name: the dataset's name; replace_existing: whether it may replace one of that name.
        events: the inspected log; columns: each event role's column in it.
        mapping: the event mapping (its minimum value filters the events).
        items: the inspected item file, or None.
        item_mapping: the item columns, of the item file or (without one) of the log.
        cleaning: the cleaning steps.
        names: the files' names to record and to show in messages (the log first).
        planted: ground-truth interests of generated data, saved with the dataset.
    """

    name: str
    events: Inspection
    columns: dict[str, str | None]
    mapping: EventMapping
    items: Inspection | None
    item_mapping: ItemMapping | None
    cleaning: Cleaning
    replace_existing: bool
    names: list[str]
    planted: pd.DataFrame | None


class NotUtf8(Exception):
    """Raised inside a load to roll it back and read a file again as Latin-1."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


@dataclass
class _ItemDetails:
    """The item details a load staged (all empty when it staged none).

    Attributes:
        report: what the store reports on them; columns: each item role's column.
        from_log: whether they came from the log's own columns (no item file).
        floats: item ids written as decimals (``"item-file item_id"`` -> how many).
    """

    report: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str | None] = field(default_factory=dict)
    from_log: bool = False
    floats: dict[str, int] = field(default_factory=dict)


def mapped_source(inspection: Inspection, columns: dict[str, str | None]) -> tuple[SourceSpec, str]:
    """How to read the log as mapped: its ids and event types as text, and the SQL
    template of its time column (:func:`core.store.time_sql.time_sql`; "" without one)."""
    time_col = columns["time"]
    time_expr = _time_expression(inspection.types[time_col], time_col) if time_col else ""
    text_cols = tuple(c for role in ("user", "item", "type") if (c := columns[role]))
    return replace(inspection.source, varchar_columns=text_cols), time_expr


def _time_expression(kind: str, column: str) -> str:
    sql = time_sql(kind)
    if sql is None:
        raise IngestError(
            f"the time column {column!r} has type {kind}; map a date-time, a date or a Unix "
            "timestamp (seconds or milliseconds) column, or choose no time column to use file "
            "order"
        )
    return sql


def load(
    store: Store,
    plan: LoadPlan,
    say: ProgressFn,
    fallback: tuple[bool, bool] = (False, False),
) -> IngestResult:
    """The load transaction; ``fallback`` says whether invalid UTF-8 in the events
    (items) file may raise :class:`NotUtf8` to have it read again as Latin-1."""
    source, time_expr = mapped_source(plan.events, plan.columns)
    with store.transaction() as cur:
        say(0.1, "reading events")
        staged = store.stage_events(cur, source, plan.columns, time_expr)
        rows_read, rejects = staged["rows_read"], staged["csv_rejects"]
        if fallback[0] and _encoding_rejects(rejects):
            raise NotUtf8("events")
        _refuse_unreadable(rows_read, rejects, plan.names[0])
        floats = store.normalise_float_ids(cur, "stage_read", ["user_id", "item_id"])
        say(0.45, "checking ids and times")
        invalid = store.reject_invalid_events(
            cur,
            has_time_column=bool(plan.columns["time"]),
            first_line=2 if plan.events.has_header else 1,
        )
        dropped = _clean(store, cur, plan, len(rejects), invalid, say)
        n_events = store.staged_count(cur)
        if n_events == 0:
            raise IngestError(_nothing_left(plan.names[0], rows_read, dropped))
        examples = _examples(rejects, invalid["examples"])
        details = _stage_item_details(store, cur, plan, fallback, say)
        notes = _notes(plan, {**floats, **details.floats}, details, staged["bad_values"])
        say(0.8, "writing the dataset")
        report = {
            "rows_read": rows_read,
            "events_loaded": n_events,
            "dropped": dropped,
            "examples": examples[:5],
            "encoding": plan.events.source.encoding,
            "delimiter": plan.events.delimiter,
            "header": plan.events.has_header,
            "time": _time_note(plan.columns["time"], plan.events.types),
            "items": details.report,
            "notes": notes,
        }
        info = store.commit_dataset(
            cur,
            plan.name,
            plan.names,
            _saved_mapping(plan, details),
            report,
            bool(details.columns),
            plan.replace_existing,
        )
        if plan.planted is not None:
            store.save_planted(cur, info.dataset_id, plan.planted)
    say(1.0, "done")
    return IngestResult(info, report)


def _encoding_rejects(rejects: Sequence[Sequence[Any]]) -> bool:
    return any(str(r[1]).upper() == "INVALID ENCODING" for r in rejects)


def _refuse_unreadable(rows_read: int, rejects: Sequence[Sequence[Any]], display: str) -> None:
    """Refuse a log with no data rows, or with more lines the reader rejected than read."""
    if rows_read == 0:
        raise IngestError(
            f"{display} has no data rows"
            + (
                f" ({len(rejects)} lines could not be parsed, the first at line "
                f"{rejects[0][0]}: {_short(rejects[0][2])}); check the delimiter and quotes"
                if rejects
                else ", only a header line; add the events below it"
            )
        )
    if len(rejects) > max(10, rows_read):
        raise IngestError(
            f"{len(rejects)} of {len(rejects) + rows_read} lines of {display} could not be "
            f"parsed (first at line {rejects[0][0]}: {_short(rejects[0][2])}); "
            "check the delimiter and the header option"
        )


def _clean(
    store: Store,
    cur: duckdb.DuckDBPyConnection,
    plan: LoadPlan,
    unparseable: int,
    invalid: dict[str, Any],
    say: ProgressFn,
) -> dict[str, int]:
    """Apply the value filter and the cleaning steps to the staged events.

    Returns:
        How many rows each step dropped, the reader's and the store's checks first.
    """
    dropped: dict[str, int] = {
        "unparseable_rows": unparseable,
        "missing_id": invalid["missing_id"],
        "bad_time": invalid["bad_time"],
    }
    if plan.mapping.min_value is not None:
        dropped["below_min_value"] = store.filter_min_value(cur, float(plan.mapping.min_value))
    say(0.55, "removing duplicates")
    dropped["duplicates"] = store.drop_duplicate_events(cur)
    cleaning = plan.cleaning
    if cleaning.collapse_repeats:
        dropped["repeats"] = store.collapse_repeats(cur)
    if cleaning.min_user_events > 1 or cleaning.min_item_events > 1:
        say(0.65, "k-core filtering")
        dropped["k_core"] = store.k_core(
            cur, max(1, cleaning.min_user_events), max(1, cleaning.min_item_events)
        )
    return dropped


def _examples(
    rejects: Sequence[Sequence[Any]], invalid: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows the reader rejected and those the store refused, by file line."""
    reject_lines = sorted({int(r[0]) for r in rejects})
    for example in invalid:
        # The store counts accepted rows; lines the reader rejected come in between.
        example["line"] = _shift_past(example["line"], reject_lines)
    return sorted(
        [
            {
                "line": int(r[0]),
                "problem": f"{r[1].lower()}: {_short(r[2])}",
                "text": _short(r[3]),
            }
            for r in rejects[:5]
        ]
        + invalid,
        key=lambda example: example["line"],
    )


def _stage_item_details(
    store: Store,
    cur: duckdb.DuckDBPyConnection,
    plan: LoadPlan,
    fallback: tuple[bool, bool],
    say: ProgressFn,
) -> _ItemDetails:
    """Stage the items' titles, categories and texts: from the item file, or one row per
    item from the log's own columns (the most frequent value of each)."""
    item_mapping = plan.item_mapping
    from_log = plan.items is None and item_mapping is not None
    found = _ItemDetails(from_log=from_log)
    details = plan.events if from_log else plan.items
    if details is None or item_mapping is None:
        return found
    say(0.7, "reading item details" if from_log else "reading items")
    found.columns = _item_columns(details, item_mapping, plan.columns, from_log)
    cat = found.columns["categories"]
    is_list = bool(cat) and details.types.get(cat, "").endswith("[]")
    text_item_cols = tuple(c for c in (found.columns["item"], found.columns["title"]) if c)
    item_source = replace(details.source, varchar_columns=text_item_cols)
    try:
        found.report = store.stage_items(
            cur,
            item_source,
            found.columns,
            item_mapping.category_sep,
            is_list,
            per_item=from_log,
        )
    except duckdb.Error as exc:
        raise explain(exc, plan.names[0] if from_log else plan.names[-1]) from None
    if fallback[1 if not from_log else 0] and found.report["invalid_encoding_rows"]:
        raise NotUtf8("items" if not from_log else "events")
    item_floats = store.normalise_float_ids(cur, "stage_items", ["item_id"])
    if item_floats and not from_log:
        found.floats["item-file item_id"] = item_floats["item_id"]
    if from_log:
        store.keep_staged_items_of_events(cur)
        found.report["from_log"] = True
        found.report["items"] = store.staged_item_count(cur)
    return found


def _item_columns(
    details: Inspection,
    item_mapping: ItemMapping,
    event_columns: dict[str, str | None],
    from_log: bool,
) -> dict[str, str | None]:
    """Each item role's column in ``details`` (the item file, or the log ``from_log``)."""
    where = "item" if from_log else "item-file"
    columns = {
        role: details.resolve(getattr(item_mapping, role), f"{where} {role}") for role in ITEM_ROLES
    }
    if not columns["item"]:
        raise IngestError("choose the item id column of the item file")
    if from_log and not any(columns[r] for r in LOG_ITEM_ROLES):
        raise IngestError("choose at least one column of item details in the log")
    details_used = {c for r, c in columns.items() if c and r != "item"}
    if from_log and details_used & {c for c in event_columns.values() if c}:
        raise IngestError("a column of the log cannot be both an event column and an item detail")
    return columns


def _notes(
    plan: LoadPlan,
    floats: dict[str, int],
    details: _ItemDetails,
    bad_values: tuple[int, Any],
) -> list[str]:
    """What the report tells besides the counts: how ids, item details and values were read."""
    notes = list(plan.events.notes)
    for column, count in floats.items():
        where = (
            f"the item file's ids ({details.columns['item']!r})"
            if column.startswith("item-file")
            else f"the {column[:-3]} ids ({plan.columns[column[:-3]]!r})"
        )
        notes.append(
            f"{where} are whole numbers written as decimals (like 17850.0): {count:,} "
            "were read without the .0"
        )
    if details.from_log and details.report:
        shown = ", ".join(
            f"{role} = {details.columns[role]!r}"
            for role in LOG_ITEM_ROLES
            if details.columns[role]
        )
        notes.append(
            f"item details taken from the log ({shown}): one row per item, the most "
            f"frequent value of each; {details.report.get('varied_items', 0):,} items had "
            "differing values"
        )
    n_bad_values, bad_value = bad_values
    if n_bad_values:
        notes.append(
            f"{n_bad_values} values of the value column {plan.columns['value']!r} are not "
            f"numbers (for example {bad_value!r}) and were loaded as empty; write decimals "
            "with a point (4.5, not 4,5)"
        )
    notes += [f"item file: {note}" for note in (plan.items.notes if plan.items else [])]
    return notes


def _saved_mapping(plan: LoadPlan, details: _ItemDetails) -> dict[str, Any]:
    """The mapping recorded with the dataset (shown on the Data page, reused on reload)."""
    return {
        "events": {**plan.columns, "min_value": plan.mapping.min_value},
        "items": {
            **details.columns,
            "category_sep": plan.item_mapping.category_sep,
            "from_log": details.from_log,
        }
        if details.columns
        else None,
        "cleaning": asdict(plan.cleaning),
    }


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
    if NUMERIC_TYPE.match(kind):
        return f"{column}: Unix timestamps (seconds, or milliseconds for values >= 1e11)"
    return f"{column}: {kind.lower()} values"


def _nothing_left(display: str, rows_read: int, dropped: dict[str, int]) -> str:
    reasons = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in dropped.items() if v)
    return (
        f"no events are left after cleaning {display} ({rows_read} rows read; dropped {reasons}); "
        "check the id and time columns, the minimum value and the k-core limits"
    )
