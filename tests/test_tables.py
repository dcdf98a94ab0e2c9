"""The frame helpers of core.common.tables and core.serving.recommend.because_of, on hand-made
values (every form a missing category list takes: None, pd.NA, NaN, an empty list or array);
the docstring examples of core.common (tables, escape, columns) and core.reports.charts."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from core.common import columns, escape, tables
from core.common.tables import (
    category_list,
    drop_empty_columns,
    empty_columns,
    first_category,
    join_categories,
    text_or_empty,
    with_main_category,
)
from core.reports import charts
from core.serving.recommend import because_of

MISSING = [None, pd.NA, float("nan"), np.nan, pd.NaT, [], np.array([], dtype=object), ()]


@pytest.mark.parametrize("module", [tables, charts, escape, columns], ids=lambda m: m.__name__)
def test_the_docstring_examples(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("value", MISSING, ids=repr)
def test_a_missing_or_empty_category_list_is_no_categories(value) -> None:
    assert category_list(value) == []
    assert first_category(value) == ""
    assert join_categories(value) == ""


def test_category_lists_in_every_form() -> None:
    assert category_list(np.array(["a", "b"], dtype=object)) == ["a", "b"]
    assert category_list(["a", None, pd.NA, "", "b"]) == ["a", "b"]
    assert category_list(("x",)) == ["x"]
    assert category_list("solo") == ["solo"] and category_list("  ") == []
    assert first_category(np.array(["main", "second"])) == "main"
    assert join_categories(["toys, games", "café"]) == "toys, games, café"
    assert [text_or_empty(v) for v in (None, pd.NA, float("nan"), "Mug", "")] == [
        "",
        "",
        "",
        "Mug",
        "",
    ]


def test_main_category_of_an_events_frame() -> None:
    events = pd.DataFrame(
        {
            "pos": [0, 1, 2, 3, 4],
            "item_id": ["a", "b", "c", "d", "e"],
            "categories": pd.Series(
                [np.array(["x", "y"], dtype=object), pd.NA, None, [], ["z"]], dtype=object
            ),
        }
    )
    out = with_main_category(events)
    assert list(out["category"]) == ["x", "", "", "", "z"]
    assert list(out["categories"]) == ["x, y", "", "", "", "z"]
    assert events["categories"].iloc[0] is not None  # the input is left as it was
    no_column = with_main_category(events.drop(columns="categories"))
    assert list(no_column["category"]) == [""] * 5
    assert with_main_category(events.iloc[:0]).empty


def test_main_category_of_a_real_user_events_frame(store, write) -> None:
    """A store query of a dataset whose items have titles but no categories gives
    ``pd.NA`` (pandas 3) for the missing lists: the crash the Interests page had."""
    from core.data.ingest import ingest
    from core.data.mapping import ItemMapping

    events = write("e.csv", "user,item\nu1,a\nu1,b\nu1,c\n")
    items = write("i.csv", "item,title\na,Apple\nb,Banana\n")
    ingest(store, "d", events, items_path=items, item_mapping=ItemMapping("item", "title"))
    frame = store.user_events(store.get_dataset("d").dataset_id, "u1")
    out = with_main_category(frame)
    assert list(out["category"]) == ["", "", ""]
    shown = drop_empty_columns(out.drop(columns="category"))
    assert "categories" not in shown and "time" not in shown and "event_type" not in shown
    assert list(shown["title"].fillna("")) == ["Apple", "Banana", ""]


def test_drop_empty_columns() -> None:
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "title": ["", None],
            "categories": [[], np.array([], dtype=object)],
            "time": pd.to_datetime([None, None]),
            "value": [np.nan, np.nan],
            "na": [pd.NA, pd.NA],
            "blank": ["  ", ""],
            "zero": [0, 0],
            "flag": [False, False],
            "some": ["", "x"],
        }
    )
    assert empty_columns(frame) == ["title", "categories", "time", "value", "na", "blank"]
    assert list(drop_empty_columns(frame).columns) == ["item_id", "zero", "flag", "some"]
    kept = drop_empty_columns(frame, keep=["title"])
    assert list(kept.columns) == ["item_id", "title", "zero", "flag", "some"]
    assert list(drop_empty_columns(frame.iloc[:0]).columns) == list(frame.columns)  # no rows
    full = frame[["item_id", "zero"]]
    assert drop_empty_columns(full) is full


def _explanation(pairs: list[tuple[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=["history_item", "contribution"])
    frame["score_without"] = 0.5 - frame["contribution"]
    return frame.sort_values("contribution", ascending=False).reset_index(drop=True)


def test_because_of_names_the_items_that_pushed_each_one_up() -> None:
    explanations = {
        "x": _explanation([("h1", 0.2), ("h2", 0.05), ("h3", -0.1)]),
        "y": _explanation([("h1", -0.01), ("h2", 0.0)]),  # nothing pushed it up
        "z": _explanation([]),  # an empty history
    }
    assert because_of(explanations, ["x", "y", "z", "unknown"]) == [["h1"], [], [], []]
    assert because_of(explanations, ["x"], n=3) == [["h1", "h2"]]
    assert because_of({}, []) == []
