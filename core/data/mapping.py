"""What a person chooses when loading a log, and the error they get when a choice is wrong.

The column mappings of the events and of the item details (:class:`EventMapping`,
:class:`ItemMapping`), the cleaning steps (:class:`Cleaning`) and :class:`IngestError`,
the one error every ingestion module raises, with a message written for the person who
uploaded the file. The Data page and the command line fill these in; the rest of
ingestion (:mod:`core.data.ingest`) reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class IngestError(Exception):
    """A bad file or mapping, with a message written for the person who uploaded it."""


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


def column_list(columns: Sequence[str]) -> str:
    """The first 20 column names, comma-separated, for a message (with the count if more)."""
    shown = ", ".join(columns[:20])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")
