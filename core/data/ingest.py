"""Ingestion: from a behaviour log (and an optional item file) to a dataset in the store.

The flow is ``inspect`` (sniff the file, preview it, suggest a column mapping),
then ``ingest`` (read, map, clean, load in one transaction). Reading is done by
DuckDB's own readers (CSV sniffer, Parquet); Python never loops over rows.

Everything a user can get wrong raises :class:`core.data.mapping.IngestError` with one
message that says what is wrong, where, and how to fix it; the database is untouched
by a failing load because the whole load is a single transaction.

This module holds the steps a caller sees: the suggestions on an inspected file, the
checks of a mapping, :func:`ingest` and :func:`preview_mapping`. The parts it runs are
in their own modules: :mod:`core.data.sources` (checking and reading a file),
:mod:`core.data.inspection` (sniffing it), :mod:`core.data.mapping` (the choices and
the error), :mod:`core.data.suggest` (which column plays which role) and
:mod:`core.data.loading` (the load transaction); the SQL of the time column is in
:mod:`core.store.time_sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd

from core.common.progress import ProgressFn
from core.data.column_names import ITEM_NAMES, norm
from core.data.inspection import Inspection, as_latin1, can_fall_back, inspect
from core.data.loading import IngestResult, LoadPlan, NotUtf8, load, mapped_source
from core.data.mapping import Cleaning, EventMapping, IngestError, ItemMapping, column_list
from core.data.sources import Limits, ReadOptions, explain, is_unicode_error
from core.data.suggest import (
    EVENT_ROLES,
    ITEM_ROLES,
    LOG_ITEM_ROLES,
    Suggestion,
    suggest_columns,
)
from core.store import Store, StoreError, validate_dataset_name

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
        f"({column_list(inspection.columns)}); the best guess from the content is {guessed}. "
        f"{how}"
    )


# --------------------------------------------------------------------------- mapping


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
                f"choose the {role} column; the file's columns are: "
                f"{column_list(inspection.columns)}"
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
    _check_name(store, name, replace_existing)
    names = list(
        source_names or [Path(events_path).name] + ([Path(items_path).name] if items_path else [])
    )
    say(0.02, "sniffing the file")
    events = inspection or inspect(store, events_path, read, display_name=names[0], limits=limits)
    if mapping is None:
        mapping = _suggested_mapping(events, item_mapping, has_item_file=items_path is not None)
    columns = _resolve_events(events, mapping)
    if items_path is None and item_mapping is not None:
        item_mapping = replace(item_mapping, item=columns["item"])
    items = None
    if items_path is not None:
        items = inspect(store, items_path, items_read, display_name=names[-1], limits=limits)
        item_mapping = item_mapping or suggest_item_mapping(items)
    plan = LoadPlan(
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
    )
    return _load_falling_back_to_latin1(store, plan, read, items_read, say)


def _check_name(store: Store, name: str, replace_existing: bool) -> None:
    """Refuse a name that is not a slug, or that a dataset has unless it may be replaced."""
    try:
        validate_dataset_name(name)
    except StoreError as exc:
        raise IngestError(str(exc)) from None
    if not replace_existing and store.find_dataset(name):
        raise IngestError(
            f"a dataset called {name!r} already exists; choose another name or confirm replacing it"
        )


def _suggested_mapping(
    events: Inspection, item_mapping: ItemMapping | None, has_item_file: bool
) -> EventMapping:
    """The event mapping when none is given: the confident suggestion, less the columns
    that ``item_mapping`` takes as item details of the log (without an item file)."""
    refuse_single_column(events)
    found = suggest(events)
    if events.has_header and not found.confident:
        raise IngestError(
            unsure_message(events, found, "Name the user and item columns in the mapping.")
        )
    details = _detail_columns(events, item_mapping) if not has_item_file else set()
    suggested = {role: found.column(role) for role in EVENT_ROLES}
    return EventMapping(
        **{
            role: None if role not in ("user", "item") and column in details else column
            for role, column in suggested.items()
        }
    )


def _load_falling_back_to_latin1(
    store: Store, plan: LoadPlan, read: ReadOptions, items_read: ReadOptions, say: ProgressFn
) -> IngestResult:
    """Run the load. With encoding "auto", a UTF-8 read that meets invalid bytes past the
    sniffed start of a file is rolled back and the file read again as Latin-1."""
    while True:
        try:
            return load(
                store,
                plan,
                say,
                fallback=(can_fall_back(plan.events, read), can_fall_back(plan.items, items_read)),
            )
        except NotUtf8 as exc:
            if exc.which == "events":
                plan = replace(plan, events=as_latin1(plan.events))
            else:
                plan = replace(plan, items=as_latin1(plan.items))
        except duckdb.Error as exc:
            if is_unicode_error(exc) and can_fall_back(plan.events, read):
                plan = replace(plan, events=as_latin1(plan.events))
                continue
            raise explain(exc, plan.names[0]) from None
        except StoreError as exc:
            raise IngestError(str(exc)) from None


def preview_mapping(
    store: Store, inspection: Inspection, mapping: EventMapping, limit: int = 10
) -> pd.DataFrame:
    """The first rows of a file as ``ingest`` would load them: mapped, typed, unfiltered.

    Columns: user_id, item_id, ts, raw_time (the time as written), event_type, value.
    """
    columns = _resolve_events(inspection, mapping)
    source, time_expr = mapped_source(inspection, columns)
    try:
        frame = store.preview_events(source, columns, time_expr, limit)
    except duckdb.Error as exc:
        raise explain(exc, Path(source.path).name) from None
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
