"""Shared fixtures: a fresh store per test, one small demo store per session, file helpers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from _helpers import ALL_CPUS
from streamlit.testing.v1 import AppTest

from core.data.demo import load_demo
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]

DEMO_USERS = 300


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs a worker per CPU), pin each worker to its
    share of the CPUs. Its torch threads, and the CLI and app processes it starts (which
    inherit the pin and size their threads to it, see ``core.models.text.usable_cpus``), then
    stay off the other workers' cores instead of oversubscribing every core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    index = int(worker[2:])
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0))
    os.environ[ALL_CPUS] = ",".join(map(str, cpus))  # for tests that unpin (every_cpu)
    share = cpus[index::count] or [cpus[index % len(cpus)]]
    os.sched_setaffinity(0, share)
    import torch

    torch.set_num_threads(len(share))


@pytest.fixture(scope="session")
def _empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated database file, made once (migrating costs more than copying)."""
    path = tmp_path_factory.mktemp("template") / "empty.duckdb"
    Store(path).close()
    return path


@pytest.fixture
def store(tmp_path: Path, _empty_db: Path) -> Iterator[Store]:
    """A fresh, empty store in a temporary database file."""
    path = tmp_path / "t.duckdb"
    shutil.copyfile(_empty_db, path)
    st = Store(path)
    yield st
    st.close()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store holding the demo dataset ``demo`` with 300 users; shared, do not write to it."""
    st = Store(tmp_path_factory.mktemp("demo") / "demo.duckdb")
    load_demo(st, n_users=DEMO_USERS)
    yield st
    st.close()


@pytest.fixture
def write(tmp_path: Path):
    """``write(name, content)``: create ``tmp_path / name`` from text (UTF-8) or bytes."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
        return path

    return _write


@pytest.fixture
def start_app(monkeypatch: pytest.MonkeyPatch):
    """``start_app(db, timeout)``: AppTest of app.py on database file ``db`` (the demo
    is seeded on first start; no automatic training), run once without exceptions."""

    def _start(db: Path, timeout: float = 180) -> AppTest:
        monkeypatch.setenv("RECLENS_DB", str(db))
        monkeypatch.setenv("RECLENS_HOME", str(db.parent))
        monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")  # tests start their own runs
        st.cache_resource.clear()
        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        at.run()
        assert not at.exception, at.exception
        return at

    return _start
