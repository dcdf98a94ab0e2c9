"""AppTest of the Metrics page: run an evaluation with baselines and a model, load it back."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import open_store
from core.training.config import TrainConfig
from core.training.runs import train_dataset

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180


@pytest.fixture
def app(tmp_path, start_app) -> AppTest:
    """The app on a fresh database file (seeded with the demo on first start)."""
    return start_app(tmp_path / "app.duckdb", TIMEOUT)


def _metrics_page(app: AppTest) -> AppTest:
    app.switch_page("ui/pages/metrics.py").run()
    assert not app.exception, app.exception
    return app


def test_baselines_alone_run_and_show_labelled_results(app: AppTest) -> None:
    app = _metrics_page(app)
    assert app.title[0].value == "Metrics"
    assert any("No evaluations" in i.value for i in app.info)
    app.multiselect(key="eval_baselines").set_value(["pop", "markov"]).run()
    app.button(key="run_eval").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    protocol = next(m.value for m in app.markdown if m.value.startswith("**Protocol:**"))
    assert "leave-one-out" in protocol and "full ranking" in protocol
    assert "3,000 users evaluated" in protocol
    table = next(d.value for d in app.dataframe if "ndcg@10" in d.value.columns)
    assert set(table["name"]) == {"pop", "markov"}
    # each cell: value [low, high] of the 95% interval
    cells = table["ndcg@10"].str.extract(r"^([\d.]+) \[([\d.]+), ([\d.]+)\]$").astype(float)
    assert not cells.isna().any().any(), table["ndcg@10"].tolist()
    assert ((cells[1] <= cells[0]) & (cells[0] <= cells[2])).all()
    assert len(app.get("plotly_chart")) >= 5
    assert app.get("download_button")
    # the run is stored: a fresh session lists it and loads it
    runs = open_store().list_evaluations()
    assert {r["model_name"] for r in runs} == {"pop", "markov"}


def test_a_model_is_compared_with_significance_and_sampled_labels(app: AppTest) -> None:
    config = TrainConfig.from_preset(
        "fast",
        epochs=1,
        hidden=16,
        layers=1,
        max_len=20,
        text_encoder="none",
        min_steps_per_epoch=1,
    )
    train_dataset(open_store(), "demo", config, name="tiny-eval")
    app.run()
    app = _metrics_page(app)
    assert app.multiselect(key="eval_models").value == ["tiny-eval"]
    app.multiselect(key="eval_baselines").set_value(["pop"]).run()
    app.number_input(key="eval_sampled").set_value(100).run()
    app.button(key="run_eval").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    table = next(d.value for d in app.dataframe if "ndcg@10" in d.value.columns)
    row = table.set_index("name").loc["tiny-eval"]
    assert "vs pop" in row["vs best baseline"]
    assert "sampled ndcg@10" in table.columns
    protocol = next(m.value for m in app.markdown if m.value.startswith("**Protocol:**"))
    assert "sampled figures: 100 negatives" in protocol
    # the chosen model's training curve is shown
    assert app.selectbox(key="eval_curve_model").value == "tiny-eval"
    # the report of what is shown: built only when asked for, then offered as a download
    assert not [b for b in app.get("download_button") if "report" in b.proto.label]
    app.button(key="report_build").click().run()
    assert not app.exception, app.exception
    (button,) = [b for b in app.get("download_button") if "report" in b.proto.label]
    assert button.proto.label.startswith("Download the report (HTML, ")
    html = app.session_state["metrics_report"][1].decode()
    run_id = app.session_state["metrics_run_id"]
    assert html.count("<h2") >= 5 and run_id in html and "tiny-eval" in html
