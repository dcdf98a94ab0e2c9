"""Small frame helpers shared by the pages and the command line.

Values read from the store are whatever DuckDB and pandas make of SQL NULLs: a
missing category list is ``None``, ``pd.NA`` or ``NaN`` depending on the query and
the pandas version, a list arrives as a numpy array. These helpers take any of
them, so no caller has to know.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    """True for None, ``pd.NA``, ``NaN`` and ``NaT`` (not for lists, arrays or text).

    >>> [is_missing(v) for v in (None, pd.NA, float("nan"), pd.NaT, "", [], "a")]
    [True, True, True, True, False, False, False]
    """
    if value is None:
        return True
    if isinstance(value, list | tuple | np.ndarray | dict | set):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def is_empty(value: Any) -> bool:
    """True for a missing value, blank text and an empty list or array.

    >>> [is_empty(v) for v in (None, pd.NA, "", "  ", [], np.array([]), "a", 0, ["x"])]
    [True, True, True, True, True, True, False, False, False]
    """
    if is_missing(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | np.ndarray | dict | set):
        return len(value) == 0
    return False


def category_list(value: Any) -> list[str]:
    """An item's categories as a list of text, whatever form the store gave them in.

    >>> category_list(np.array(["a", "b"], dtype=object)), category_list(pd.NA)
    (['a', 'b'], [])
    >>> category_list(None), category_list([]), category_list("solo"), category_list(["a", None])
    ([], [], ['solo'], ['a'])
    """
    if is_missing(value):
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Iterable):
        return [str(c) for c in value if not is_empty(c)]
    return [str(value)]


def first_category(value: Any) -> str:
    """An item's first (main) category, or "" when it has none.

    >>> first_category(["a", "b"]), first_category(pd.NA), first_category([])
    ('a', '', '')
    """
    cats = category_list(value)
    return cats[0] if cats else ""


def join_categories(value: Any) -> str:
    """An item's categories as one line of text ("a, b"; "" when none)."""
    return ", ".join(category_list(value))


def text_or_empty(value: Any) -> str:
    """Text as it is; a missing value as "" (never the string "<NA>" or "nan")."""
    return "" if is_missing(value) else str(value)


def with_main_category(events: pd.DataFrame, column: str = "categories") -> pd.DataFrame:
    """A copy of ``events`` with ``category`` (each row's first category, "" when none)
    and ``column`` as text ("a, b"), e.g. for a user's events from
    :meth:`core.store.Store.user_events`."""
    out = events.copy()
    if column not in out:
        out["category"] = ""
        return out
    values = list(out[column])
    out["category"] = [first_category(v) for v in values]
    out[column] = [join_categories(v) for v in values]
    return out


def empty_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` in which every value is empty (see :func:`is_empty`);
    none for a frame without rows (there is nothing to judge by)."""
    if frame.empty:
        return []
    return [c for c in frame.columns if all(is_empty(v) for v in frame[c])]


def drop_empty_columns(frame: pd.DataFrame, keep: Iterable[str] = ()) -> pd.DataFrame:
    """``frame`` without its all-empty columns (titles of a dataset without an item file,
    times of one without timestamps...); the columns in ``keep`` always stay.

    >>> f = pd.DataFrame({"item_id": ["a", "b"], "title": ["", None], "n": [1, 2]})
    >>> list(drop_empty_columns(f).columns)
    ['item_id', 'n']
    """
    kept = set(keep)
    drop = [c for c in empty_columns(frame) if c not in kept]
    return frame.drop(columns=drop) if drop else frame
