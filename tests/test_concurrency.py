"""Several sessions at once: AppTest sessions in threads render the Data overview and
the Train page while another thread ingests through ``core`` and a background
training worker runs. One writer process (this one), many readers: no "database is
locked", no exception, no error box, and the ingests and the run all complete.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.demo import load_demo
from core.ingest import ingest
from core.jobs import collect_run, run_status, start_run
from core.store import Store, open_store
from core.train import TrainConfig

# Every AppTest rerun goes through app.py, as on the real server (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("navigation_mode")

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
                for page in ("pages/data.py", "pages/train.py"):
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
