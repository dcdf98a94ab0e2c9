"""Shared fixtures: a fresh store per test, one small demo store per session, file helpers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.demo import load_demo
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]

DEMO_USERS = 300


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
