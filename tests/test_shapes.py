"""Every shape of dataset users bring, through ingest, training and the core of each page.

The shapes are generated in ``tests/shapes.py``, written as CSV files and loaded by the
real ingest; each gets a tiny trained model (once per process). Here: what the store
holds for each shape, and that training, recommending, the interests, the export and
an evaluation work on it (the pages themselves: ``test_app_shapes.py``).
"""

from __future__ import annotations

import pytest
from shapes import HEAVY_EVENTS, ODD_ITEMS, ODD_USERS, SHAPES, copy_of_shape

from core.evaluation import runner
from core.models.registry import resolve_model
from core.serving import interests
from core.serving.exports import top_k_table
from core.serving.model_data import load_model_data
from core.serving.recommend import baseline_list, fit_side_baseline, recommend
from core.store import Store


@pytest.fixture
def shape_store(tmp_path):
    """``shape_store(name)``: a private, open copy of the shape's trained database."""
    opened: list[Store] = []

    def _open(name: str) -> Store:
        store = Store(copy_of_shape(name, tmp_path))
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_loads_trains_and_serves(name: str, shape_store) -> None:
    shape = SHAPES[name]()
    store = shape_store(name)
    info = store.get_dataset(name)
    assert info.has_time == shape.has_time
    assert info.n_item_rows == (0 if shape.items is None else len(shape.items))
    items = store.items_frame(info.dataset_id)
    assert items["title"].notna().any() == shape.has_titles
    assert items["categories"].notna().any() == shape.has_categories

    saved = resolve_model(store, shape.model)
    assert saved.warnings == []
    assert len(saved.training.history) >= 1  # it trained
    assert (saved.training.text_encoder is not None) == (shape.text_encoder == "auto")
    data = load_model_data(store, saved)
    assert data.catalog.has_titles == shape.has_titles
    assert data.catalog.has_categories == shape.has_categories
    assert data.histories.n_users == info.n_users

    user = str(data.histories.user_ids[0])
    history = data.history_ids(user)
    top = recommend(saved, history, 10, catalog=data.catalog)
    assert not set(top["item_id"]) & set(history)
    assert set(top["item_id"]) <= set(saved.item_ids[1:])
    assert len(top) == min(10, len(set(saved.item_ids[1:]) - set(history)))
    report = interests.user_report(store, data, user)
    assert len(report["drift"]) == len(history)
    assert (report["categories"] != []) == shape.has_categories

    table = top_k_table(data, k=5).to_pandas()
    assert set(table["item_id"]) <= set(saved.item_ids[1:])
    for uid, part in table.groupby("user_id"):
        assert not set(part["item_id"]) & set(data.history_ids(uid))
        assert list(part["rank"]) == list(range(1, len(part) + 1))

    result, warnings = runner.run(
        store, models=[shape.model], baselines=["pop", "markov"], save_results=False
    )
    assert warnings == []
    assert set(result.results) == {shape.model, "pop", "markov"}


def test_odd_ids_arrive_exactly_as_written(shape_store) -> None:
    store = shape_store("odd_ids")
    info = store.get_dataset("odd_ids")
    users = set(store.query_df("SELECT DISTINCT user_id FROM events WHERE dataset_id = ?",
                               [info.dataset_id])["user_id"])  # fmt: skip
    assert set(ODD_USERS) <= users  # "0042" and "42" are two users; quotes, commas, emoji kept
    events = store.query_df(
        "SELECT DISTINCT item_id FROM events WHERE dataset_id = ?", [info.dataset_id]
    )
    assert set(ODD_ITEMS) <= set(events["item_id"])
    items = store.items_frame(info.dataset_id).set_index("item_id")
    assert items.at['"quoted"', "title"] == 'Thing ""quoted"", edition 4'
    assert list(items.at["x,y", "categories"]) == ["home & garden", "toys, games"]
    assert list(items.at["a b", "categories"]) == ["café", "🎉 party"]
    saved = resolve_model(store, "odd_ids-model")
    data = load_model_data(store, saved)
    assert data.history_ids("Smith, John") == store.user_history(info.dataset_id, "Smith, John")


def test_float_written_integer_ids_become_integers(shape_store) -> None:
    """``17850.0`` in every row of an id column is the integer id 17850 (ingest normalises
    a column whose every value is integral)."""
    store = shape_store("float_ids")
    info = store.get_dataset("float_ids")
    ids = store.query_df(
        "SELECT DISTINCT user_id, item_id FROM events WHERE dataset_id = ?", [info.dataset_id]
    )
    assert "17850" in set(ids["user_id"]) and "85123" in set(ids["item_id"])
    assert not ids["user_id"].str.contains(".", regex=False).any()
    assert not ids["item_id"].str.contains(".", regex=False).any()


def test_events_sharing_a_timestamp_keep_the_file_order(shape_store) -> None:
    shape = SHAPES["baskets"]()
    store = shape_store("baskets")
    info = store.get_dataset("baskets")
    for user in ("u000", "u017"):
        written = list(shape.events.loc[shape.events["user"] == user, "item"])
        assert store.user_history(info.dataset_id, user) == written


def test_no_timestamps_means_file_order(shape_store) -> None:
    shape = SHAPES["no_time"]()
    store = shape_store("no_time")
    info = store.get_dataset("no_time")
    assert not info.has_time
    written = list(shape.events.loc[shape.events["user"] == "u005", "item"])
    assert store.user_history(info.dataset_id, "u005") == written
    assert store.events_over_time(info.dataset_id).empty


def test_a_user_with_thousands_of_events(shape_store) -> None:
    store = shape_store("heavy_user")
    data = load_model_data(store, resolve_model(store, "heavy_user-model"))
    history = data.history_ids("u000")
    assert len(history) == HEAVY_EVENTS
    top = recommend(data.saved, history, 10, catalog=data.catalog)
    assert len(top) == 10 and not set(top["item_id"]) & set(history)
    drift = interests.drift(data, history)
    assert len(drift.steps) == HEAVY_EVENTS and drift.vectors.shape[0] == HEAVY_EVENTS


def test_a_catalogue_of_two_items_seen_by_everyone(shape_store) -> None:
    store = shape_store("two_items")
    data = load_model_data(store, resolve_model(store, "two_items-model"))
    history = data.history_ids("u000")
    assert set(history) == {"A", "B"}
    # Nothing is left once seen items are hidden: an empty list, never padding or mask.
    assert recommend(data.saved, history, 10, catalog=data.catalog).empty
    both = recommend(data.saved, history, 10, exclude_seen=False, catalog=data.catalog)
    assert sorted(both["item_id"]) == ["A", "B"] and list(both["rank"]) == [1, 2]
    assert list(both["title"]) == [{"A": "Apple", "B": "Banana"}[i] for i in both["item_id"]]
    assert recommend(data.saved, ["A"], 10)["item_id"].tolist() == ["B"]
    assert recommend(data.saved, [], 10, category="fruit", catalog=data.catalog).shape[0] == 2
    markov = fit_side_baseline(data, "markov")
    assert baseline_list(data, markov, history, 10).empty
    assert len(baseline_list(data, markov, history, 10, exclude_seen=False)) == 2
    assert top_k_table(data, k=10).num_rows == 0
    every = top_k_table(data, k=10, exclude_seen=False).to_pandas()
    assert len(every) == 2 * data.histories.n_users


@pytest.mark.parametrize("name", ["ids_only", "categories_only", "no_time"])
def test_history_timeline_of_each_shape(name: str, shape_store) -> None:
    """Without categories the timeline has a row per item (not one "(no category)" line);
    without timestamps its x axis is the event number; one event type: no legend."""
    from core.common.tables import with_main_category
    from core.reports import charts

    shape = SHAPES[name]()
    store = shape_store(name)
    did = store.get_dataset(name).dataset_id
    events = with_main_category(store.user_events(did, "u001"))
    fig = charts.history_timeline(events)
    assert fig.layout.yaxis.title.text == ("item category" if shape.has_categories else "item")
    assert fig.layout.xaxis.title.text == ("time" if shape.has_time else "event number")
    rows = set(fig.data[0].y)
    expected = set(events["category"]) if shape.has_categories else set(events["item_id"])
    assert rows == expected and fig.layout.showlegend is False
