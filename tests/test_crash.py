"""Crashes and restarts with the real parts: SIGKILL of a CLI ingest and of a training
worker, damaged model files through the app's load path, and foreign or old databases.

After a kill the database must open, show no partial dataset and keep every table's
fingerprint; the model registry lists only complete models; a killed run resumes
from its last complete checkpoint (its epochs continue, they do not restart). That
holds for a kill in the middle of saving a model or a run checkpoint too, between
writing the new folder and renaming it into place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_cli import assert_user_error

from core.data.demo import load_demo
from core.data.ingest import ingest
from core.models.checkpoint import CheckpointError, load_model, save_model
from core.models.registry import resolve_model
from core.store import SCHEMA_VERSION, Store, StoreError
from core.training.config import TrainConfig
from core.training.runs import collect_run, run_status, start_run, train_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    hidden=16,
    layers=1,
    heads=2,
    max_len=20,
    batch=64,
    text_encoder="none",
    seed=1,
    next_item_share=0.0,
)
LIMIT = 600  # a bound against a hung process, never a speed requirement


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


# --------------------------------------------------------------------------- ingest


def test_sigkill_during_cli_ingest_leaves_no_partial_dataset(tmp_path: Path) -> None:
    db = tmp_path / "crash.duckdb"
    store = Store(db)
    (tmp_path / "base.csv").write_text("user,item,timestamp\nb1,x,1\nb1,y,2\nb2,x,3\n")
    ingest(store, "base", tmp_path / "base.csv")
    before = store.table_fingerprints()
    store.close()
    big = tmp_path / "big.csv"
    duckdb.sql(
        "COPY (SELECT 'u' || (i % 50000) AS user_id, 'i' || (i * 7 % 7919) AS item_id, "
        "1600000000 + i AS timestamp FROM range(3000000) t(i)) TO '"
        + str(big).replace("'", "''")
        + "' (HEADER)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "--db", str(db), "ingest"]
        + ["--dataset", "big", "--events", str(big), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Started (imports take well under a CPU second) and into reading the file.
        _wait_for(lambda: proc.poll() is not None or _cpu_seconds(proc.pid) > 2.5, "the ingest")
        assert proc.poll() is None, "the ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    again = Store(db)  # opens (and replays its log) without a complaint
    assert [d.name for d in again.list_datasets()] == ["base"]
    assert again.table_fingerprints() == before
    # ...and takes the same load afterwards.
    assert ingest(again, "small", tmp_path / "base.csv").dataset.n_events == 3
    again.close()


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A background run killed after its first checkpoint, then resumed to the end."""
    home = tmp_path_factory.mktemp("train-crash")
    store = Store(home / "reclens.duckdb")
    load_demo(store, "demo", n_users=200)
    config = TrainConfig.from_preset("fast", epochs=5, patience=10, **TINY)
    run_id = start_run(store, "demo", config, name="crash-model")
    folder = home / "runs" / run_id
    state = folder / "checkpoint" / "state.json"

    def checkpointed() -> bool:
        status = run_status(store, run_id)
        assert status.state != "failed", status.error
        return state.exists()

    _wait_for(checkpointed, "the first checkpoint")
    pid = int((folder / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: run_status(store, run_id).state != "running", "the worker to die")
    killed = run_status(store, run_id)
    checkpoint_epoch = json.loads(state.read_text())["epoch"]
    lines_before = len((folder / "progress.jsonl").read_text().splitlines())
    models_after_kill = [m.name for m in store.list_models()]
    collected_after_kill = collect_run(store, killed)

    start_run(store, "demo", config, resume_run=run_id)
    _wait_for(lambda: run_status(store, run_id).state not in ("running", "lost"), "the resume")
    done = run_status(store, run_id)
    resumed = [
        json.loads(line)
        for line in (folder / "progress.jsonl").read_text().splitlines()[lines_before:]
    ]
    model = collect_run(store, done)
    yield {
        "store": store,
        "killed": killed,
        "checkpoint_epoch": checkpoint_epoch,
        "models_after_kill": models_after_kill,
        "collected_after_kill": collected_after_kill,
        "done": done,
        "resumed": resumed,
        "model": model,
    }
    store.close()


def test_killed_worker_is_lost_and_registers_nothing(killed_and_resumed) -> None:
    assert killed_and_resumed["killed"].state == "lost"
    assert killed_and_resumed["killed"].result is None
    assert killed_and_resumed["checkpoint_epoch"] >= 1
    assert "crash-model" not in killed_and_resumed["models_after_kill"]
    assert killed_and_resumed["collected_after_kill"] is None


def test_resume_continues_from_the_last_complete_checkpoint(killed_and_resumed) -> None:
    done = killed_and_resumed["done"]
    assert done.state == "finished", done.error
    first = killed_and_resumed["checkpoint_epoch"]
    validated = [p["epoch"] for p in killed_and_resumed["resumed"] if p["phase"] == "validate"]
    assert validated == list(range(first + 1, 6))  # continued, not restarted
    assert [h["epoch"] for h in done.result.history] == [1, 2, 3, 4, 5]
    model = killed_and_resumed["model"]
    assert model is not None and model.name == "crash-model"
    assert [m.name for m in killed_and_resumed["store"].list_models()] == ["crash-model"]


# --------------------------------------------------------------------------- killed while saving

# The real CLI in a child process that SIGKILLs itself inside the real folder swap of
# the NTH save of a folder called NAME (a model directory, a run's "checkpoint"). The
# only thing patched is a tripwire on Path.rename; polling from outside cannot reach
# the gap between the swap's two renames, and a test model is written in milliseconds.
# WINDOW "written": the new version is whole in its temporary folder, nothing renamed;
# "swapping": the old version is moved aside, the new one not yet renamed into place.
KILL_IN_SWAP = r"""
import os, pathlib, runpy, signal, sys

name, window, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_rename, placed = pathlib.Path.rename, 0


def rename(self, target):
    global placed
    into_place = pathlib.Path(target).name == name
    if self.name == name or into_place:
        if placed == nth - 1 and (window == "written" or into_place):
            os.kill(os.getpid(), signal.SIGKILL)
        placed += into_place
    return real_rename(self, target)


pathlib.Path.rename = rename
sys.argv = ["core", *sys.argv[4:]]
runpy.run_module("core", run_name="__main__")
"""
TINY_ARGS = ["--preset", "fast", "--hidden", "16", "--layers", "1", "--heads", "2"]
TINY_ARGS += ["--max-len", "20", "--batch", "64", "--text-encoder", "none"]


def _cli_killed_in_swap(db: Path, name: str, window: str, nth: int, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_SWAP, name, window, str(nth), "--db", str(db), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


@pytest.mark.parametrize(
    "name, window",
    [("m", "written"), ("m", "swapping"), ("new", "written")],
    ids=["replace-written", "replace-swapping", "first-save"],
)
def test_sigkill_while_saving_a_model_leaves_only_complete_models(
    name: str, window: str, tmp_path: Path
) -> None:
    """A CLI train killed inside save_model: the registry lists only complete models.

    Replacing model "m": it still loads, as the complete version saved before (even
    killed between the two renames, when no "m" folder exists), with a note; a new
    model killed in its first save is not registered at all. The next save tidies up.
    """
    db = tmp_path / "reclens.duckdb"
    store = Store(db)
    load_demo(store, "demo", n_users=200)
    config = TrainConfig.from_preset("fast", epochs=1, min_steps_per_epoch=1, **TINY)
    first, _ = train_dataset(store, "demo", config, name="m")
    before = resolve_model(store, "m").training
    store.close()

    _cli_killed_in_swap(
        db,
        name,
        window,
        1,
        "train",
        "--dataset",
        "demo",
        "--name",
        name,
        "--replace",
        *TINY_ARGS,
        "--epochs",
        "1",
        "--seed",
        "2",
    )
    out = tmp_path / "models" / name
    new = json.loads((out.with_name(f".{name}.tmp") / "training.json").read_text())
    assert new["config"]["seed"] == 2  # the new version was whole when the process died
    assert out.exists() == (name == "m" and window == "written")

    store = Store(db)
    try:
        assert [(m.name, m.metrics) for m in store.list_models()] == [("m", first.metrics)]
        saved = resolve_model(store, "m")
        assert saved.training == before  # the whole previous version, nothing of the new one
        interrupted = [w for w in saved.warnings if "was interrupted" in w]
        assert len(interrupted) == (window == "swapping")
        if name == "new":
            with pytest.raises(StoreError, match="no model called 'new'"):
                resolve_model(store, "new")
            with pytest.raises(CheckpointError, match="no model directory"):
                load_model(out)
    finally:
        store.close()

    # The next save of "m" replaces whatever version is complete and leaves no debris.
    models = tmp_path / "models"
    save_model(models / "m", saved.model, saved.item_ids, replace(before, epochs=7))
    again = load_model(models / "m")
    assert again.training.epochs == 7 and again.warnings == []
    leftovers = {p.name for p in models.iterdir()} - {"m", ".new.tmp"}
    assert leftovers == set()


@pytest.mark.parametrize(
    "window",
    ["written", "swapping"],
)
def test_sigkill_while_writing_a_run_checkpoint_resumes_from_the_last_complete_one(
    window: str, tmp_path: Path
) -> None:
    """A CLI train killed inside its epoch-2 checkpoint write resumes after epoch 1."""
    db = tmp_path / "reclens.duckdb"
    store = Store(db)
    load_demo(store, "demo", n_users=200)
    store.close()
    _cli_killed_in_swap(
        db,
        "checkpoint",
        window,
        2,
        "train",
        "--dataset",
        "demo",
        "--name",
        "r",
        "--epochs",
        "2",
        "--seed",
        "1",
        *TINY_ARGS,
    )
    run = tmp_path / "runs" / "cli-r"
    written = [json.loads(p.read_text())["epoch"] for p in run.glob("*.tmp/state.json")]
    assert written == [2]  # epoch 2's checkpoint was whole when the process died
    assert (run / "checkpoint").exists() == (window == "written")

    store = Store(db)
    try:
        assert store.list_models() == []
        validated: list[int] = []
        config = TrainConfig.from_preset("fast", epochs=2, **TINY)
        _, result = train_dataset(
            store,
            "demo",
            config,
            name="r",
            resume=True,
            callback=lambda p: validated.append(p.epoch) if p.phase == "validate" else None,
        )
        assert validated == [2]  # from epoch 1's checkpoint, not from scratch
        assert [h["epoch"] for h in result.history] == [1, 2]
        assert [m.name for m in store.list_models()] == ["r"]
    finally:
        store.close()


# --------------------------------------------------------------------------- damaged models


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors is corrupt"),
        (lambda f: (f / "config.json").write_bytes(b""), "config.json is corrupt or truncated"),
        (lambda f: (f / "training.json").write_text("{"), "training.json is corrupt"),
    ],
)
def test_damaged_registered_model_gives_a_clear_error(
    killed_and_resumed, tmp_path: Path, damage, message
) -> None:
    """Through ``resolve_model`` (what every page and the CLI use), by registered name."""
    store: Store = killed_and_resumed["store"]
    model = store.get_model("crash-model")
    backup = tmp_path / "backup"
    shutil.copytree(model.path, backup)
    try:
        damage(Path(model.path))
        with pytest.raises(CheckpointError, match=message):
            resolve_model(store, "crash-model")
    finally:
        shutil.rmtree(model.path)
        shutil.copytree(backup, model.path)
    assert resolve_model(store, "crash-model").name == "crash-model"


def test_train_page_reports_a_truncated_model_without_a_traceback(
    killed_and_resumed, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "models" / "broken"  # the app's model home: beside its database
    shutil.copytree(killed_and_resumed["store"].get_model("crash-model").path, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    monkeypatch.setenv("RECLENS_DB", str(tmp_path / "app.duckdb"))
    monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")
    seed = Store(tmp_path / "app.duckdb")
    load_demo(seed, "demo", n_users=50)
    seed.close()
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("ui/pages/train.py").run()
    at.selectbox(key="load_dir").set_value("broken").run()
    at.button(key="load_model").click().run()
    assert not at.exception, at.exception
    assert any("corrupt or truncated" in e.value for e in at.error), [e.value for e in at.error]


# --------------------------------------------------------------------------- databases


def test_a_database_of_schema_version_0_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # what an interrupted first start leaves: meta, no version
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.list_datasets() == []
    store.close()


def test_another_programs_duckdb_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE events (a INTEGER)")
    con.execute("INSERT INTO events VALUES (42)")
    con.close()
    with pytest.raises(StoreError, match="not a RecLens database"):
        Store(path)
    con = duckdb.connect(str(path))
    assert con.execute("SELECT * FROM events").fetchall() == [(42,)]
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert tables == {"events"}  # the failed migration was rolled back
    con.close()
    proc = subprocess.run(
        [sys.executable, "-m", "core", "--db", str(path), "datasets"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_user_error(proc, "not a RecLens database")


def test_a_truncated_database_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS a FROM range(1000000)")
    con.close()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(path)
