"""Several sessions at once: AppTest sessions in threads render the Data overview and
the Train page while another thread ingests through ``core`` and a background
training worker runs. One writer process (this one), many readers: no "database is
locked", no exception, no error box, and the ingests and the run all complete.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from core.data.demo import load_demo
from core.data.ingest import ingest
from core.store import Store, open_store
from core.training.config import TrainConfig
from core.training.runs import collect_run, run_status, start_run

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 600  # a bound against a hang, never a speed requirement


def test_sessions_read_while_one_ingests_and_a_worker_trains(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "shared.duckdb"
    seed = Store(db)
    load_demo(seed, "demo", n_users=200)
    seed.close()
    monkeypatch.setenv("RECLENS_DB", str(db))
    monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")
    st.cache_resource.clear()
    st.cache_data.clear()
    store = open_store(db)  # the same process-wide store the sessions use
    log = tmp_path / "log.csv"
    log.write_text(
        "user,item,timestamp\n"
        + "".join(f"u{i % 500},i{i * 7 % 301},{1600000000 + i}\n" for i in range(60_000))
    )
    config = TrainConfig.from_preset(
        "fast",
        epochs=3,
        hidden=16,
        layers=1,
        heads=2,
        max_len=20,
        text_encoder="none",
        next_item_share=0.0,
    )
    run_id = start_run(store, "demo", config, name="busy-model")

    problems: list[str] = []
    rendered: list[int] = []

    # AppTest is not thread-safe: every run installs its own mock as Streamlit's global
    # Runtime and clears it at the end. So the sessions take turns for one script run
    # each (as a real server's sessions interleave), while the ingest thread and the
    # training worker run freely underneath them.
    harness = threading.Lock()

    def session(n: int) -> None:
        try:
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=LIMIT)
            with harness:
                at.run()
            for _ in range(2):
                for page in ("ui/pages/data.py", "ui/pages/train.py"):
                    with harness:
                        at.switch_page(page).run()
                    problems.extend(f"session {n} {page}: {e.value}" for e in at.exception)
                    problems.extend(f"session {n} {page}: {e.value}" for e in at.error)
                    rendered.append(n)
        except Exception as exc:  # reported below, with the session
            problems.append(f"session {n}: {type(exc).__name__}: {exc}")

    def ingester() -> None:
        try:
            for round_ in range(3):
                result = ingest(store, "busy", log, replace_existing=round_ > 0)
                assert result.dataset.n_events == 60_000
        except Exception as exc:
            problems.append(f"ingest: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=session, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=ingester))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT)
        assert not thread.is_alive(), "a session hung"
    assert problems == [], problems
    assert len(rendered) == 3 * 2 * 2
    assert not any("locked" in p for p in problems)

    deadline = time.monotonic() + LIMIT
    while run_status(store, run_id).state == "running":
        assert time.monotonic() < deadline, "the training run hung"
        time.sleep(0.5)
    status = run_status(store, run_id)
    assert status.state == "finished", status.error
    assert collect_run(store, status).name == "busy-model"
    assert store.get_dataset("busy").n_events == 60_000


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_runs_wait_in_a_queue_and_start_one_after_another(
    tmp_path: Path, start_app, monkeypatch
) -> None:
    """One run trains at a time: the next one waits (the Train page shows it queued) and
    the ending worker starts it, with no page open; a queued run can be taken out."""
    from core.training.runs import list_runs, stop_run

    db = tmp_path / "queue.duckdb"
    seed = Store(db)
    load_demo(seed, "demo", n_users=200)
    seed.close()
    store = open_store(db)
    tiny = dict(hidden=16, layers=1, heads=2, max_len=20, text_encoder="none")
    long = TrainConfig.from_preset("fast", epochs=200, patience=200, **tiny)
    short = TrainConfig.from_preset("fast", epochs=1, **tiny)
    first = start_run(store, "demo", long, name="first")
    second = start_run(store, "demo", short, name="second")
    third = start_run(store, "demo", short, name="third")
    assert run_status(store, first).state == "running"
    assert [run_status(store, r).state for r in (second, third)] == ["queued", "queued"]

    app = start_app(db)
    app.switch_page("ui/pages/train.py").run()
    assert not app.exception, app.exception
    assert app.button(key="start_train").label == "Queue training"
    # newest first on the page: the third run waits behind the second
    waiting = [c.value for c in app.caption if "in the queue" in c.value]
    assert [("number 2" in w, "number 1" in w) for w in waiting] == [(True, False), (False, True)]
    app.button(key=f"unqueue_{third}").click().run()
    assert run_status(store, third).state == "stopped"

    stop_run(store, first)  # the first run ends: its worker starts the second
    _wait(lambda: run_status(store, second).state != "queued", "the queued run to start")
    _wait(lambda: run_status(store, second).state == "finished", "the second run")
    states = {r.run_id: r.state for r in list_runs(store)}
    assert states == {first: "stopped", second: "finished", third: "stopped"}
    # never two at once: the second started only after the first had stopped
    assert (store_runs := tmp_path / "runs") and (
        (store_runs / second / "pid").stat().st_mtime
        >= (store_runs / first / "stopped").stat().st_mtime
    )
    assert collect_run(store, run_status(store, second)).name == "second"
