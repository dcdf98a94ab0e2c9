"""AppTest of the Interests and Recommendations pages (a real store and a small trained model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _trained import MODEL, copy_of_trained
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from core.data.demo import load_demo
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180
LIMIT_S = 300  # a bound against a hung export, never a speed requirement


@pytest.fixture
def app(tmp_path, start_app) -> AppTest:
    """The app on a copy of the trained demo database; the model is active."""
    at = start_app(copy_of_trained(tmp_path), TIMEOUT)
    assert at.sidebar.selectbox(key="active_model_picker").value == MODEL
    return at


def _page(app: AppTest, page: str) -> AppTest:
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    return app


def _click_map(app: AppTest, user: str) -> AppTest:
    """Simulate a click on a point of the map: AppTest cannot drive Plotly charts, so the
    selection the browser would send is handed to the next run as the chart's widget state."""
    chart = next(c for c in app.get("plotly_chart") if c.proto.selection_mode)
    selection = {
        "selection": {
            "points": [
                {"curve_number": 0, "point_number": 0, "point_index": 0, "customdata": [user]}
            ],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    states = app._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(selection)))
    app = app._run(states)
    assert not app.exception, app.exception
    return app


def _user_header(app: AppTest) -> str:
    return next(h.value for h in app.subheader if h.value.startswith("User "))


def test_interests_page_shows_a_user_and_a_click_on_the_map_selects_another(app) -> None:
    app = _page(app, "ui/pages/interests.py")
    assert app.title[0].value == "Interests"
    assert _user_header(app) == "User u00001"
    assert len(app.get("plotly_chart")) == 4  # map, timeline, affinity, drift
    planted = next(m.value for m in app.markdown if "Planted vs recovered" in m.value)
    assert "%" in planted
    segments = next(d.value for d in app.dataframe if "top_categories" in d.value.columns)
    assert segments["users"].sum() == 300

    app = _click_map(app, "u00042")
    assert _user_header(app) == "User u00042"
    assert app.session_state["selected_user"] == "u00042"
    # the map now highlights the clicked user
    chart = next(c for c in app.get("plotly_chart") if c.proto.selection_mode)
    assert "user u00042" in chart.proto.spec


def test_interests_page_search_and_segment_pick(app) -> None:
    app = _page(app, "ui/pages/interests.py")
    app.text_input(key="interests_search").set_value("u00007").run()
    assert _user_header(app) == "User u00007"
    app.text_input(key="interests_search").set_value("zzz").run()
    assert any("No user id contains" in w.value for w in app.warning)
    assert _user_header(app) == "User u00007"
    members = app.selectbox(key="interests_segment_user").options
    app.selectbox(key="interests_segment_user").set_value(members[1]).run()
    assert _user_header(app) == f"User {members[1]}"
    assert not app.exception


SIDE_COLUMNS = ["rank", "title", "item_id", "score"]


def test_recommendations_page_list_what_if_baseline_and_export(app) -> None:
    app = _page(app, "ui/pages/recommendations.py")
    assert app.title[0].value == "Recommendations"
    top = next(d.value for d in app.dataframe if "because of" in d.value.columns)
    assert len(top) == 10 and top["score"].is_monotonic_decreasing
    assert (top["because of"].str.len() > 0).any()
    assert app.selectbox(key="rec_explain").value == top["item_id"].iloc[0]

    # what-if: start empty, add an item, move, remove
    app.button(key="whatif_empty").click().run()
    assert not app.exception, app.exception
    first = app.selectbox(key="whatif_pick").options[0]
    app.button(key="whatif_add").click().run()
    assert app.session_state["whatif_history"] == [app.selectbox(key="whatif_pick").value]
    app.selectbox(key="whatif_pick").set_value(app.selectbox(key="whatif_pick").options[1]).run()
    app.button(key="whatif_add").click().run()
    history = app.session_state["whatif_history"]
    assert len(history) == 2 and first != "" and history[0] != history[1]
    assert app.selectbox(key="whatif_pos").value == 1  # the added item is selected
    app.button(key="whatif_up").click().run()
    assert app.session_state["whatif_history"] == history[::-1]
    assert app.selectbox(key="whatif_pos").value == 0  # and followed when moved
    app.button(key="whatif_remove").click().run()
    assert len(app.session_state["whatif_history"]) == 1
    edited = next(d.value for d in app.dataframe if "new" in d.value.columns)
    assert not set(edited["item_id"]) & set(app.session_state["whatif_history"])

    # baseline side by side: most popular first, then the Markov chain's list
    assert app.selectbox(key="side_baseline").value == "pop"
    lists = [d.value for d in app.dataframe if list(d.value.columns) == SIDE_COLUMNS]
    assert len(lists) == 2 and all(len(x) == 10 for x in lists)
    assert lists[1]["score"].is_monotonic_decreasing
    app.selectbox(key="side_baseline").set_value("markov").run()
    assert not app.exception, app.exception
    markov = [d.value for d in app.dataframe if list(d.value.columns) == SIDE_COLUMNS][1]
    # (its order may equal popularity's when the last item has few successors: the
    # back-off; its scores are transition probabilities, not counts)
    assert len(markov) == 10 and markov["score"].max() < 1 < lists[1]["score"].max()
    assert any(m.value.startswith("**Markov") for m in app.markdown)

    # export: it ranks in the background (progress), then offers the file
    app.button(key="export_prepare").click().run()
    assert not app.exception, app.exception
    job = app.session_state["export_file"]
    assert job.wait(LIMIT_S) and job.error is None
    app.run()
    (button,) = app.get("download_button")
    assert "Download top-20 for 300 users (csv, 6,000 rows)" in button.proto.label
    lines = job.read().decode().splitlines()
    assert lines[0] == '"user_id","rank","item_id","score"' and len(lines) == 1 + 300 * 20
    first = job.path
    assert first.parent.parent == Path(app.session_state["export_file"].path).parent.parent
    app.number_input(key="export_k").set_value(5).run()
    assert not app.get("download_button")  # the file on offer is for other settings
    app.button(key="export_prepare").click().run()
    assert app.session_state["export_file"].wait(LIMIT_S)
    assert not first.exists()  # the previous export's file is deleted


def test_pages_point_to_the_train_page_without_a_model(tmp_path, start_app) -> None:
    db = tmp_path / "nomodel.duckdb"
    store = Store(db)
    load_demo(store, n_users=30)
    store.close()
    app = start_app(db, TIMEOUT)
    for page in ("ui/pages/interests.py", "ui/pages/recommendations.py"):
        app.switch_page(page).run()
        assert not app.exception, app.exception
        assert any("Train" in i.value for i in app.info), page


def test_the_map_draws_a_stated_sample_of_users(app, monkeypatch) -> None:
    monkeypatch.setenv("RECLENS_MAP_POINTS", "100")
    app = _page(app, "ui/pages/interests.py")
    assert any("Showing 100 of 300 users" in c.value for c in app.caption)
    chart = next(c for c in app.get("plotly_chart") if c.proto.selection_mode)
    traces = json.loads(chart.proto.spec)["data"]
    drawn = [u for t in traces if t["name"].startswith("segment") for (u,) in t["customdata"]]
    assert len(drawn) == 100 and "u00001" in drawn  # the chosen user is always drawn
    # the segments still count every user
    segments = next(d.value for d in app.dataframe if "top_categories" in d.value.columns)
    assert segments["users"].sum() == 300
    monkeypatch.delenv("RECLENS_MAP_POINTS")
    app = _page(app, "ui/pages/interests.py")
    assert not any("Showing" in c.value for c in app.caption)
