"""Every page on every shape of dataset users bring (AppTest, a real store, tiny real models).

Each test opens the app on a private copy of one shape's database (see
``tests/shapes.py``: the dataset and its trained model, which are the active ones),
goes to one page and checks that it renders its real content without an exception
or an error box; that what a shape lacks (timestamps, categories, titles) is said in
one sentence instead of an empty chart; and that no table shows a column that is
empty in every row.
"""

from __future__ import annotations

import pandas as pd
import pytest
from shapes import SHAPES, Shape, copy_of_shape
from streamlit.testing.v1 import AppTest

from core.common.tables import empty_columns
from core.store import open_store

TIMEOUT = 180
PAGES = ["data", "train", "interests", "recommendations", "metrics", "home"]

NO_TIME = "this dataset has no timestamps"
NO_CATEGORIES = "No categories: upload an item file"
NO_TYPES = "No event types"
NO_AFFINITY = "No category affinity: the items of this dataset have no categories"
NO_DRIFT = "No interest drift to show"
NO_WHATIF_AFFINITY = "No category affinity to compare"
ALL_SEEN = "already holds every item the model knows"


def _open(name: str, tmp_path, start_app) -> tuple[Shape, AppTest]:
    shape = SHAPES[name]()
    app = start_app(copy_of_shape(name, tmp_path), TIMEOUT)
    assert app.sidebar.selectbox(key="active_dataset_picker").value == shape.name
    assert app.sidebar.selectbox(key="active_model_picker").value == shape.model
    return shape, app


def _frames(app: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in app.dataframe]


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _has(elements, text: str) -> bool:
    return any(text in e.value for e in elements)


def _no_empty_columns(app: AppTest, page: str) -> None:
    """No table on the page has a column that is empty in every row."""
    for frame in _frames(app):
        assert not empty_columns(frame), (page, list(frame.columns), empty_columns(frame))


def _no_columns_the_shape_lacks(app: AppTest, shape: Shape) -> None:
    for frame in _frames(app):
        if not shape.has_titles:
            assert "title" not in frame.columns, list(frame.columns)
        if not shape.has_categories:
            assert not {"categories", "top_categories"} & set(frame.columns), list(frame.columns)


# --------------------------------------------------------------------------- page checks


def _check_data(app: AppTest, shape: Shape) -> None:
    info = open_store().get_dataset(shape.name)
    labels = {m.label: m.value for m in app.metric}
    assert labels["Users"] == f"{info.n_users:,}" and labels["Events"] == f"{info.n_events:,}"
    assert _has(app.info, NO_TIME) != shape.has_time
    assert _has(app.info, NO_CATEGORIES) != shape.has_categories
    assert _has(app.info, NO_TYPES) != shape.has_types
    # one chart per figure there is something to draw for: per user, long tail (+time,
    # +categories, +event types)
    expected = 2 + shape.has_time + shape.has_categories + shape.has_types
    assert len(app.get("plotly_chart")) == expected
    events = next(f for f in _frames(app) if "pos" in f.columns)
    assert len(events) > 0
    assert ("time" in events.columns) == shape.has_time


def _check_train(app: AppTest, shape: Shape) -> None:
    assert app.title[0].value == "Train"
    saved = next(f for f in _frames(app) if "val NDCG@10" in f.columns)
    assert shape.model in list(saved["name"])
    assert "warning" not in saved.columns  # the data has not changed since training


def _user_header(app: AppTest) -> str:
    return next(h.value for h in app.subheader if h.value.startswith("User "))


def _check_interests(app: AppTest, shape: Shape) -> None:
    assert not _has(app.info, "There is no trained model")
    assert _user_header(app)
    charts = app.get("plotly_chart")
    one_event = shape.name == "one_event_users"  # the first user has a single event
    assert _has(app.info, NO_AFFINITY) != shape.has_categories
    assert _has(app.info, NO_DRIFT) == one_event
    # the map, the timeline, the affinity (with categories), the drift (with 2+ events)
    assert len(charts) == 2 + shape.has_categories + (not one_event)
    assert any("Map of users" in c.proto.spec for c in charts)
    segments = next(f for f in _frames(app) if "share (%)" in f.columns)
    assert segments["users"].sum() == open_store().get_dataset(shape.name).n_users
    aligned = next(f for f in _frames(app) if "alignment" in f.columns)
    assert len(aligned) == min(10, open_store().get_dataset(shape.name).n_items)
    metrics = {m.label for m in app.metric}
    assert ("Dominant category" in metrics) == shape.has_categories


def _check_recommendations(app: AppTest, shape: Shape) -> None:
    assert not _has(app.info, "There is no trained model")
    assert _user_header(app)
    if shape.name == "two_items":
        # every user has seen both items: the page says so, and ranks them when asked
        assert _has(app.info, ALL_SEEN)
        assert not [f for f in _frames(app) if "popularity_rank" in f.columns]
        app.checkbox(key="rec_exclude_seen").uncheck().run()
        assert not app.exception, app.exception
        assert not app.error, _texts(app.error)
    top = next(f for f in _frames(app) if "popularity_rank" in f.columns)
    assert len(top) == min(10, 2 if shape.name == "two_items" else 10)
    assert top["score"].is_monotonic_decreasing
    assert ("title" in top.columns) == shape.has_titles
    assert ("categories" in top.columns) == shape.has_categories
    # the top-K, the what-if list, the model and the baseline side by side
    lists = [f for f in _frames(app) if list(f.columns)[:1] == ["rank"] and "score" in f.columns]
    assert len(lists) == 4 and all(len(f) for f in lists)
    assert _has(app.caption, NO_WHATIF_AFFINITY) != shape.has_categories


def _check_metrics(app: AppTest, shape: Shape) -> None:
    assert app.title[0].value == "Metrics"
    assert _has(app.info, "No evaluations of this dataset yet")
    assert app.multiselect(key="eval_models").value == [shape.model]
    assert app.radio(key="eval_split").disabled != shape.has_time
    assert not app.warning, _texts(app.warning)


def _check_home(app: AppTest, shape: Shape) -> None:
    info = open_store().get_dataset(shape.name)
    labels = {m.label: m.value for m in app.metric}
    assert labels["Users"] == f"{info.n_users:,}" and labels["Items"] == f"{info.n_items:,}"
    assert _has(app.subheader, f"Active dataset: {shape.name}")


CHECKS = {
    "data": _check_data,
    "train": _check_train,
    "interests": _check_interests,
    "recommendations": _check_recommendations,
    "metrics": _check_metrics,
    "home": _check_home,
}


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("name", list(SHAPES))
def test_every_page_on_every_shape(name: str, page: str, tmp_path, start_app) -> None:
    shape, app = _open(name, tmp_path, start_app)
    app.switch_page(f"ui/pages/{page}.py").run()
    assert not app.exception, (page, app.exception)
    assert not app.error, (page, _texts(app.error))
    assert app.title, page
    CHECKS[page](app, shape)
    _no_columns_the_shape_lacks(app, shape)
    _no_empty_columns(app, page)


@pytest.mark.parametrize("name", ["no_time", "odd_ids"])
def test_metrics_page_evaluates_a_shape(name: str, tmp_path, start_app) -> None:
    shape, app = _open(name, tmp_path, start_app)
    app.switch_page("ui/pages/metrics.py").run()
    app.button(key="run_eval").click().run()
    assert not app.exception, app.exception
    assert not app.error, _texts(app.error)
    table = next(d.value for d in app.dataframe if "name" in d.value.columns)
    assert shape.model in list(table["name"])
    assert {"pop", "markov"} <= set(table["name"])
    assert any("Protocol:" in m.value for m in app.markdown)
    assert len(app.get("plotly_chart")) >= 5
