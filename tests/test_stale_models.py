"""A model whose dataset was re-ingested (different data, same name) or deleted.

On the Interests, Recommendations and Metrics pages and in the CLI's ``recommend``,
``interests``, ``export`` and ``evaluate``: a clear warning (re-ingested: the model
still works on the new data) or a clear error (deleted; or an evaluation that needs
the items the model was trained on), never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shapes import copy_of_shape, ids_only_changed, load_shape
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.models.record import TrainingRecord
from core.models.registry import lost_model_message, model_warning, resolve_model
from core.store import Store, StoreError, open_store

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180
NAME, MODEL = "ids_only", "ids_only-model"
EARLIER = "trained on an earlier version of dataset 'ids_only'"
DELETED = "its dataset 'ids_only' was deleted"


def _reingest(store: Store, folder: Path) -> None:
    """Load different data under the model's dataset name (replacing it)."""
    load_shape(store, ids_only_changed(), folder / "changed", replace=True)


@pytest.fixture
def db(tmp_path) -> Path:
    return copy_of_shape(NAME, tmp_path)


# --------------------------------------------------------------------------- core


def test_core_keeps_a_reingested_model_with_a_warning_and_explains_a_deleted_one(
    db, tmp_path
) -> None:
    store = Store(db)
    try:
        fingerprint = store.get_dataset(NAME).fingerprint
        _reingest(store, tmp_path)
        assert store.get_dataset(NAME).fingerprint != fingerprint
        # still registered, on the new version of the dataset
        assert [m.name for m in store.list_models(NAME)] == [MODEL]
        info = store.get_model(MODEL)
        assert EARLIER in model_warning(store, info)
        assert any(EARLIER in w for w in resolve_model(store, MODEL).warnings)

        store.drop_dataset(NAME)
        assert store.find_model(MODEL) is None and store.list_models() == []
        assert store.orphaned_model_path(MODEL) == info.path
        with pytest.raises(StoreError, match=DELETED):
            resolve_model(store, MODEL)
        # a directory named directly: the dataset it needs is not here
        from core.serving.model_data import load_model_data

        saved = resolve_model(store, info.path)
        with pytest.raises(StoreError, match="which is not in this database"):
            load_model_data(store, saved)
        # the dataset loaded afresh under the same name: the old model stays gone
        _reingest(store, tmp_path)
        assert store.find_model(MODEL) is None
        assert "loaded afresh" in lost_model_message(store, MODEL)
    finally:
        store.close()


def test_a_run_that_finishes_after_its_dataset_was_deleted_is_not_registered(db, tmp_path) -> None:
    from core.training.runs import RunStatus, collect_run

    store = Store(db)
    try:
        store.drop_dataset(NAME)
        job = {"name": "late", "dataset": NAME, "out": str(tmp_path / "late"), "config": {}}
        run = RunStatus("r1", tmp_path, job, [], "finished", TrainingRecord(), None)
        assert collect_run(store, run) is None
        assert store.find_model("late") is None
    finally:
        store.close()


def test_a_run_whose_folder_a_later_run_replaced_is_not_registered_again(db, tmp_path) -> None:
    """Two runs of one name, the second replacing the first's folder: the Train page shows
    both, and the first must not come back as a second name on the second's weights."""
    from core.training.runs import RunStatus, collect_run

    folder = tmp_path / "twice"
    folder.mkdir()
    first = TrainingRecord(name="twice", metrics={"val_ndcg@10": 0.1})
    second = TrainingRecord(name="twice", metrics={"val_ndcg@10": 0.2})

    def run(run_id: str, record: TrainingRecord, replace: bool) -> RunStatus:
        job = {"name": "twice", "dataset": NAME, "out": str(folder), "config": {}}
        job["replace"] = replace
        return RunStatus(run_id, tmp_path, job, [], "finished", record, None)

    store = Store(db)
    try:
        (folder / "training.json").write_text(json.dumps(first.to_dict()))
        assert collect_run(store, run("r1", first, False)).metrics == first.metrics
        # The second run saves over the folder and is collected; the first one's panel
        # still asks after it.
        (folder / "training.json").write_text(json.dumps(second.to_dict()))
        assert collect_run(store, run("r2", second, True)).metrics == second.metrics
        assert collect_run(store, run("r1", first, False)) is None
        models = [m for m in store.list_models() if m.path == str(folder)]
        assert [(m.name, m.metrics) for m in models] == [("twice", second.metrics)]
        # A run whose folder is gone has nothing to register either.
        gone = run("r3", TrainingRecord(metrics={"val_ndcg@10": 0.3}), False)
        gone.job["out"], gone.job["name"] = str(tmp_path / "gone"), "gone"
        assert collect_run(store, gone) is None and store.find_model("gone") is None
    finally:
        store.close()


# --------------------------------------------------------------------------- CLI


def _cli(capsys, db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--db", str(db), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_cli_on_a_reingested_model_warns_and_works(db, tmp_path, capsys) -> None:
    store = Store(db)
    _reingest(store, tmp_path)
    store.close()
    for args in (
        ("recommend", "--user", "u001"),
        ("interests", "--user", "u001"),
        ("export", "--out", str(tmp_path / "top.csv")),
    ):
        code, out, err = _cli(capsys, db, *args[:1], "--model", MODEL, *args[1:])
        assert code == 0, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("warning: ") and EARLIER in lines[0], err
        assert out.strip()
    # an evaluation needs the items the model was trained on: they changed
    code, out, err = _cli(capsys, db, "evaluate", "--model", MODEL, "--baselines", "pop")
    _one_error(code, out, err, "whose items differ from today's; train it again")


def test_cli_on_a_model_of_a_deleted_dataset_says_so(db, capsys) -> None:
    store = Store(db)
    path = store.get_model(MODEL).path
    store.drop_dataset(NAME)
    store.close()
    for args in (
        ("recommend", "--user", "u001"),
        ("interests", "--user", "u001"),
        ("export", "--out", "top.csv"),
        ("evaluate",),
    ):
        code, out, err = _cli(capsys, db, *args[:1], "--model", MODEL, *args[1:])
        _one_error(code, out, err, DELETED)
    # named by its directory instead of its name
    for args in (("recommend", "--user", "u001"), ("interests", "--user", "u001"), ("evaluate",)):
        code, out, err = _cli(capsys, db, *args[:1], "--model", path, *args[1:])
        _one_error(code, out, err, "which is not in this database")
    # as a user runs it: a subprocess, one line, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), "recommend", "--model", MODEL]
        + ["--user", "u001"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    _one_error(proc.returncode, proc.stdout, proc.stderr, DELETED)


# --------------------------------------------------------------------------- pages


def _shown(elements) -> list[str]:
    """The texts of elements as a reader sees them (Markdown escapes removed)."""
    return [e.value.replace("\\", "") for e in elements]


def _page(app: AppTest, page: str) -> AppTest:
    app.switch_page(f"ui/pages/{page}.py").run()
    assert not app.exception, (page, app.exception)
    return app


def test_pages_warn_about_a_model_of_a_reingested_dataset(db, tmp_path, start_app) -> None:
    app = start_app(db, TIMEOUT)
    assert app.sidebar.selectbox(key="active_model_picker").value == MODEL
    _page(app, "interests")
    assert not app.warning
    _reingest(open_store(), tmp_path)  # as another session or the CLI would

    for page in ("interests", "recommendations"):
        app = _page(app, page)
        assert not app.error, [e.value for e in app.error]
        assert any(EARLIER in w for w in _shown(app.warning)), page
        assert next(h.value for h in app.subheader if h.value.startswith("User "))
        assert not any("There is no trained model" in i.value for i in app.info)
    top = next(d.value for d in app.dataframe if "popularity_rank" in d.value.columns)
    assert len(top) == 10

    app = _page(app, "train")
    saved = next(d.value for d in app.dataframe if "val NDCG@10" in d.value.columns)
    assert EARLIER in saved.set_index("name").at[MODEL, "warning"]

    app = _page(app, "metrics")
    assert any(EARLIER in w for w in _shown(app.warning))
    app.button(key="run_eval").click().run()
    assert not app.exception, app.exception
    assert any("whose items differ from today's; train it again" in e.value for e in app.error)


def test_pages_say_why_the_model_is_gone_when_its_dataset_is_deleted(
    db, tmp_path, start_app
) -> None:
    store = Store(db)
    load_shape(store, ids_only_changed(), tmp_path / "other", name="other")
    store.close()
    app = start_app(db, TIMEOUT)
    app.sidebar.selectbox(key="active_dataset_picker").set_value(NAME).run()
    assert app.sidebar.selectbox(key="active_model_picker").value == MODEL
    _page(app, "recommendations")
    assert not app.sidebar.warning

    # deleted on the Data page
    app = _page(app, "data")
    app.selectbox(key="drop_name").set_value(NAME).run()
    app.checkbox(key="drop_confirm").check().run()
    app.button(key="drop_button").click().run()
    assert not app.exception, app.exception
    assert any("ids_only-model can no longer be used" in s for s in _shown(app.success))

    for page in ("interests", "recommendations", "metrics"):
        app = _page(app, page)
        assert not app.error, (page, [e.value for e in app.error])
        assert app.sidebar.selectbox(key="active_dataset_picker").value == "other"
        notices = _shown(app.sidebar.warning)
        assert len(notices) == 1 and MODEL in notices[0] and DELETED in notices[0], (page, notices)
        assert "was deleted" in notices[0]
    for page in ("interests", "recommendations"):
        app = _page(app, page)
        assert any("There is no trained model" in i.value for i in app.info), page
