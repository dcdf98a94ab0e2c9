"""Tests of the seeded demo-data generator and the structure it plants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.demo import DemoData, generate_demo
from core.data.demo_catalog import CATEGORIES, N_SUCCESSORS, planted_successors

SMALL_USERS = 400


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate_demo(n_users=SMALL_USERS, seed=11)


@pytest.fixture(scope="module")
def main_category(small: DemoData) -> pd.Series:
    """Main category of each event of the small log."""
    by_item = small.items.set_index("item_id")["categories"].map(lambda tags: tags[0])
    return small.events["item_id"].map(by_item)


def test_same_seed_gives_identical_frames() -> None:
    first = generate_demo(n_users=SMALL_USERS, seed=3)
    second = generate_demo(n_users=SMALL_USERS, seed=3)
    for name in ("events", "items", "planted"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))


def test_different_seed_differs() -> None:
    first = generate_demo(n_users=SMALL_USERS, seed=3)
    second = generate_demo(n_users=SMALL_USERS, seed=4)
    assert not first.events.equals(second.events)
    assert not first.items.equals(second.items)


def test_columns_and_dtypes(small: DemoData) -> None:
    events, items, planted = small.events, small.items, small.planted
    assert list(events.columns) == [
        "user_id",
        "item_id",
        "timestamp",
        "event_type",
        "value",
    ]
    assert list(items.columns) == ["item_id", "title", "categories", "text"]
    assert list(planted.columns) == [
        "user_id",
        "interests",
        "initial_interest",
        "final_interest",
        "shift_at",
        "n_events",
    ]
    for frame, column in [
        (events, "user_id"),
        (events, "item_id"),
        (events, "event_type"),
        (items, "item_id"),
        (items, "title"),
        (items, "text"),
        (planted, "user_id"),
        (planted, "initial_interest"),
        (planted, "final_interest"),
    ]:
        assert pd.api.types.is_string_dtype(frame[column]), column
    assert events["timestamp"].dtype == np.dtype("datetime64[us]")
    assert events["value"].dtype == np.float64
    assert items["categories"].dtype == object
    assert planted["interests"].dtype == object
    assert pd.api.types.is_integer_dtype(planted["shift_at"])
    assert pd.api.types.is_integer_dtype(planted["n_events"])


def test_ids_and_references(small: DemoData) -> None:
    events, items, planted = small.events, small.items, small.planted
    assert items["item_id"].is_unique
    assert items["title"].is_unique
    assert items["item_id"].iloc[0] == "i0001"
    assert list(items["item_id"]) == sorted(items["item_id"])
    assert planted["user_id"].tolist() == [f"u{k:05d}" for k in range(1, SMALL_USERS + 1)]
    assert events["item_id"].isin(items["item_id"]).all()
    assert set(events["user_id"]) == set(planted["user_id"])
    assert set(events["event_type"]) == {"view", "cart", "purchase"}


def test_item_texts_and_tags(small: DemoData) -> None:
    items = small.items
    for tags in items["categories"]:
        assert isinstance(tags, list)
        assert 1 <= len(tags) <= 2
        assert tags[0] in CATEGORIES
    assert items["text"].str.endswith(".").all()
    assert items["categories"].map(lambda tags: tags[0]).nunique() == len(CATEGORIES)


def test_events_sorted_and_timestamps_strictly_increasing(small: DemoData) -> None:
    events = small.events
    ordered = events.sort_values(["user_id", "timestamp"], kind="stable")
    assert ordered.index.equals(events.index)
    same_user = events["user_id"].eq(events["user_id"].shift())
    steps = events["timestamp"].diff()[same_user]
    assert (steps > pd.Timedelta(0)).all()
    assert events["timestamp"].min() >= pd.Timestamp("2026-03-01")
    assert events["timestamp"].max() < pd.Timestamp("2026-09-15")


def test_history_lengths(small: DemoData) -> None:
    lengths = small.events.groupby("user_id").size()
    assert lengths.min() >= 5
    assert lengths.max() <= 200
    assert (lengths.sort_index().to_numpy() == small.planted["n_events"].to_numpy()).all()


def test_final_interest_dominates_after_shift(small: DemoData, main_category: pd.Series) -> None:
    position = small.events.groupby("user_id").cumcount()
    shift_at = small.events["user_id"].map(small.planted.set_index("user_id")["shift_at"])
    late = main_category[position >= shift_at].groupby(small.events["user_id"])
    top = late.agg(lambda cats: cats.value_counts().idxmax())
    final = small.planted.set_index("user_id")["final_interest"]
    assert (top == final.loc[top.index]).mean() >= 0.9


def test_most_users_shift(small: DemoData) -> None:
    planted = small.planted
    shifted = (planted["shift_at"] > 0) & (planted["initial_interest"] != planted["final_interest"])
    assert shifted.mean() >= 0.5
    assert (planted["shift_at"] < planted["n_events"]).all()
    assert planted["interests"].map(len).between(1, 3).all()
    assert (planted["interests"].str[0] == planted["initial_interest"]).all()
    assert (planted["interests"].str[-1] == planted["final_interest"]).all()


def test_successor_chains_beat_chance(small: DemoData, main_category: pd.Series) -> None:
    successors = planted_successors(small.items)
    category_size = small.items["categories"].map(lambda tags: tags[0]).value_counts()
    events = small.events
    previous = events["item_id"].shift()
    pairs = (
        events["user_id"].eq(events["user_id"].shift())
        & main_category.eq(main_category.shift())
        & events["item_id"].ne(previous)
    )
    hits = [
        item in successors[prev]
        for prev, item in zip(previous[pairs], events["item_id"][pairs], strict=True)
    ]
    # A uniformly random other item of the category is a successor this often.
    chance = (N_SUCCESSORS / (main_category[pairs].map(category_size) - 1)).mean()
    assert len(hits) > 500
    assert np.mean(hits) >= 5 * chance


def test_funnel(small: DemoData) -> None:
    counts = small.events["event_type"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"]
    events = small.events
    is_view = events["event_type"] == "view"
    assert (events.loc[is_view, "value"] == 1.0).all()
    assert (events.loc[~is_view, "value"] > 0).all()


def test_default_size() -> None:
    data = generate_demo()
    assert data.planted.shape[0] == 3000
    assert data.items.shape[0] == 800
    assert 80_000 <= len(data.events) <= 120_000
    assert 20 <= data.planted["n_events"].median() <= 30


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_categories"):
        generate_demo(n_users=10, n_categories=13)
    with pytest.raises(ValueError, match="n_items"):
        generate_demo(n_users=10, n_items=10)
