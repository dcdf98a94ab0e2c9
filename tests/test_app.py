"""AppTest journeys through the app and the Data page (real store, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import open_store

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120

RATINGS = (
    "userId,movieId,rating,timestamp\n"
    + "".join(
        f"{u},{m},{(u + m) % 5 + 1}.0,{1600000000 + 60 * (u * 10 + m)}\n"
        for u in range(1, 21)
        for m in range(1, 9)
    )
    + "21,5,4.0,not-a-time\n,7,3.0,1600000000\n"
)


@pytest.fixture
def app(tmp_path, start_app) -> AppTest:
    """The app on a fresh database file (seeded with the demo on first start)."""
    return start_app(tmp_path / "app.duckdb", TIMEOUT)


def test_first_start_seeds_the_demo_and_home_shows_it(app: AppTest) -> None:
    assert app.sidebar.selectbox(key="active_dataset_picker").value == "demo"
    labels = {m.label: m.value for m in app.metric}
    assert labels["Users"] == "3,000"
    assert labels["Items"] == "800"


def test_every_page_renders_without_exceptions(app: AppTest) -> None:
    for page in (
        "ui/pages/data.py",
        "ui/pages/train.py",
        "ui/pages/interests.py",
        "ui/pages/recommendations.py",
        "ui/pages/metrics.py",
        "ui/pages/home.py",
    ):
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
        assert app.title, page


def test_data_overview_shows_stats_and_user_events(app: AppTest) -> None:
    app.switch_page("ui/pages/data.py").run()
    labels = {m.label: m.value for m in app.metric}
    assert labels["Events"] == "93,022"
    assert labels["Popularity Gini"].startswith("0.")
    charts = app.get("plotly_chart")
    assert len(charts) == 5
    # The most active demo user's events are listed in order.
    events = next(d.value for d in app.dataframe if "pos" in d.value.columns)
    assert list(events["pos"]) == list(range(len(events)))
    assert {"title", "categories", "event_type"} <= set(events.columns)


def _upload(app: AppTest, content: str, name: str = "ratings.csv") -> AppTest:
    app.switch_page("ui/pages/data.py").run()
    app.file_uploader(key="events_upload").upload(name, content.encode(), "text/csv").run()
    assert not app.exception, app.exception
    return app


def test_upload_map_ingest_and_report(app: AppTest) -> None:
    app = _upload(app, RATINGS)
    # Mapping suggested from the column names.
    assert app.selectbox(key="map_user").value == "userId"
    assert app.selectbox(key="map_item").value == "movieId"
    assert app.selectbox(key="map_time").value == "timestamp"
    assert app.selectbox(key="map_value").value == "rating"
    assert app.text_input(key="ds_name").value == "ratings"
    # The mapped preview shows typed rows: ids as text, times as timestamps.
    mapped = next(d.value for d in app.dataframe if "raw_time" in d.value.columns)
    assert list(mapped["user_id"][:2]) == ["1", "1"]
    assert str(mapped["ts"].dtype).startswith("datetime64")

    app.button(key="ingest_button").click().run()
    assert not app.exception, app.exception
    assert any("Loaded **ratings**" in s.value for s in app.success)
    labels = {m.label: m.value for m in app.metric}
    assert labels["Rows read"] == "162"
    assert labels["Events kept"] == "160"
    # The new dataset became the active one.
    assert app.sidebar.selectbox(key="active_dataset_picker").value == "ratings"
    info = open_store().get_dataset("ratings")
    assert (info.n_events, info.n_users, info.n_items) == (160, 20, 8)
    assert info.sources == ["ratings.csv"]


def test_positive_filter_and_kcore_from_the_page(app: AppTest) -> None:
    app = _upload(app, RATINGS)
    app.checkbox(key="use_min_value").check().run()
    app.number_input(key="min_value").set_value(4.0).run()
    app.number_input(key="min_user").set_value(3).run()
    app.button(key="ingest_button").click().run()
    assert not app.exception, app.exception
    report = next(d.value for d in app.dataframe if "reason" in d.value.columns)
    dropped = dict(zip(report["reason"], report["rows"], strict=True))
    assert dropped["below min value"] > 0
    assert "k core" in dropped


def test_bad_file_shows_a_clear_message_and_changes_nothing(app: AppTest) -> None:
    app.switch_page("ui/pages/data.py").run()
    before = open_store().table_fingerprints()
    app.file_uploader(key="events_upload").upload(
        "sheet.csv", b"PK\x03\x04\x14\x00\x00\x00garbage", "text/csv"
    ).run()
    assert not app.exception
    assert "Excel" in app.error[0].value
    assert "ingest_button" not in [b.key for b in app.button]
    assert open_store().table_fingerprints() == before


def test_unknown_column_and_existing_name_are_handled(app: AppTest) -> None:
    app = _upload(app, RATINGS, name="demo.csv")
    # The suggested name collides with the demo dataset: the page asks first.
    assert app.text_input(key="ds_name").value == "demo"
    assert app.button(key="ingest_button").disabled
    app.checkbox(key="confirm_replace").check().run()
    assert not app.button(key="ingest_button").disabled


def test_delete_dataset(app: AppTest) -> None:
    app.switch_page("ui/pages/data.py").run()
    app.checkbox(key="drop_confirm").check().run()
    app.button(key="drop_button").click().run()
    assert not app.exception, app.exception
    assert any("Deleted demo" in s.value for s in app.success)
    assert open_store().list_datasets() == []
    assert "No dataset yet" in app.info[0].value


def test_train_page_runs_a_tiny_model_and_makes_it_active(app: AppTest) -> None:
    import time

    app.switch_page("ui/pages/train.py").run()
    assert not app.exception, app.exception
    # the 3,000-user demo: 2,000 users validate, the rest train on their second-to-last item
    captions = [c.value for c in app.caption]
    assert any("10% of users (at least 2,000); the rest train on it" in c for c in captions)
    app.text_input(key="model_name").set_value("tiny-demo").run()
    for key, value in (("epochs_fast", 1), ("hidden_fast", 16), ("layers_fast", 1)):
        app.number_input(key=key).set_value(value).run()
    app.radio(key="text_fast").set_value("none").run()
    assert app.checkbox(key="transitions_fast").value is True  # on by default
    app.button(key="start_train").click().run()
    assert not app.exception, app.exception
    deadline = time.monotonic() + 600  # a generous bound against a hung worker, not a speed test
    while time.monotonic() < deadline:
        app.run()
        if any("Saved model tiny-demo" in s.value for s in app.success):
            break
        assert not app.error, [e.value for e in app.error]
        time.sleep(2)
    saved = [s.value for s in app.success if "Saved model tiny-demo" in s.value]
    # The demo data plants successors after each item: the memory of them was kept.
    assert saved and "With its transition memory" in saved[0], saved
    assert open_store().find_model("tiny-demo") is not None
    app.button(key=next(b.key for b in app.button if b.key.startswith("use_"))).click().run()
    assert app.sidebar.selectbox(key="active_model_picker").value == "tiny-demo"
    # The same name again: the page asks before a new run may replace it.
    app.text_input(key="model_name").set_value("tiny-demo").run()
    assert app.button(key="start_train").disabled
    app.checkbox(key="replace_model").check().run()
    assert not app.button(key="start_train").disabled
    # A copy of its folder in the model home loads under a free name and becomes active.
    import shutil

    store = open_store()
    source = Path(store.get_model("tiny-demo").path)
    shutil.copytree(source, source.parent / "copied")
    app.run()
    app.selectbox(key="load_dir").set_value("copied").run()
    app.button(key="load_model").click().run()
    assert not app.exception, app.exception
    assert any("Loaded tiny-demo-2" in s.value for s in app.success)
    assert app.sidebar.selectbox(key="active_model_picker").value == "tiny-demo-2"
    assert Path(store.get_model("tiny-demo").path) == source


def test_train_page_loads_a_model_folder_and_rejects_a_bad_one(app: AppTest, tmp_path) -> None:
    app.switch_page("ui/pages/train.py").run()
    assert any("No unregistered model folder" in i.value for i in app.info)
    # a folder copied into the model home (beside the database) is offered by name
    junk = tmp_path / "models" / "junk"
    junk.mkdir(parents=True)
    (junk / "config.json").write_text("{}")
    app.run()
    assert app.selectbox(key="load_dir").options == ["junk"]
    app.button(key="load_model").click().run()
    assert not app.exception
    assert "is not a RecLens model" in app.error[0].value
    assert open_store().list_models() == []
