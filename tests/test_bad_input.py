"""The bad-input corpus through every door: ``core.data.ingest``, the CLI and the Data page.

Every file of ``tests/data/bad_input/`` (plus the large ones that
``tests/data/make_bad_input.py`` writes at test time) has its expected outcome in
``tests/data/bad_input/expected.json``: awkward-but-valid files load with the
stated counts and values; bad ones are refused with a specific message and leave
the database exactly as it was (every table's fingerprint compared before and after,
on a database that already holds a dataset, items, a model entry, an evaluation and
cached vectors).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_cli import assert_user_error

from core.data.ingest import ingest
from core.data.mapping import IngestError, ItemMapping
from core.store import Store, open_store, slugify

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "bad_input"
sys.path.insert(0, str(ROOT / "tests" / "data"))
from make_bad_input import make_all  # noqa: E402

CASES = {c["id"]: c for c in json.loads((CORPUS / "expected.json").read_text())["cases"]}
PAGE_CASES = [cid for cid, c in CASES.items() if c.get("page")]


def dataset_name(case: dict) -> str:
    return case.get("dataset", slugify(case["id"]))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    make_all(folder)
    return folder


def paths(case: dict, generated: Path) -> tuple[Path, Path | None]:
    """The events file (and item file) of a case."""
    name = case["file"]
    events = generated / name[1:] if name.startswith("@") else CORPUS / name
    return events, (CORPUS / case["items"] if "items" in case else None)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A database with something in every table, and its fingerprints."""
    path = tmp_path_factory.mktemp("template") / "base.duckdb"
    store = Store(path)
    folder = path.parent
    (folder / "base.csv").write_text("user,item,timestamp\nb1,x,1\nb1,y,2\nb2,x,3\n")
    (folder / "base_items.csv").write_text("item,title\nx,Ex\ny,Why\n")
    ingest(store, "base", folder / "base.csv", items_path=folder / "base_items.csv")
    store.register_model("base-model", "base", str(folder / "models" / "m"), {}, {"m": 1})
    store.save_evaluation("e1", "base-model", 1, {"run_id": "r"}, {"ndcg@10": 0.1}, None)
    store.put_vectors("text", "enc", {"x": [0.1, 0.2]})
    fingerprints = store.table_fingerprints()
    filled = ("datasets", "events", "items", "models", "evaluations", "vectors")
    assert all(fingerprints[table][0] > 0 for table in filled), fingerprints
    store.close()
    return path, fingerprints


def fresh_db(template: tuple[Path, dict], folder: Path) -> Path:
    target = folder / "db.duckdb"
    shutil.copyfile(template[0], target)
    return target


# --------------------------------------------------------------------------- checks


def check_loaded(store: Store, case: dict, name: str) -> None:
    """The dataset ``name`` holds what the manifest says."""
    want = case["ok"]
    info = store.get_dataset(name)
    assert (info.n_events, info.n_users, info.n_items) == (
        want["events"],
        want["users"],
        want["items"],
    )
    for reason, count in want.get("dropped", {}).items():
        assert info.report["dropped"][reason] == count, info.report["dropped"]
    if "note" in want:
        assert any(want["note"] in note for note in info.report["notes"]), info.report["notes"]
    events = store.query_df(
        "SELECT user_id, item_id, CAST(ts AS VARCHAR) AS ts, value FROM events "
        "WHERE dataset_id = ? ORDER BY user_id, pos",
        [info.dataset_id],
    )
    events = events.astype(object).where(events.notna(), None)
    by_user: dict[str, list] = {}
    for column, key in (("item_id", "histories"), ("ts", "times"), ("value", "values")):
        if key in want:
            by_user = {}
            for user, value in zip(events["user_id"], events[column], strict=True):
                by_user.setdefault(user, []).append(value)
            assert by_user == want[key], (key, by_user)
    if "titles" in want:
        items = store.items_frame(info.dataset_id)
        assert dict(zip(items["item_id"], items["title"], strict=True)) == want["titles"]
    if "user_column" in want:
        assert info.mapping["events"]["user"] == want["user_column"]


def unchanged_but_for(store: Store, template: tuple[Path, dict], name: str) -> None:
    """Every table exactly as in the template, apart from the rows of the new dataset."""
    new = store.get_dataset(name).dataset_id
    now = store.table_fingerprints()
    for table, before in template[1].items():
        if table in ("datasets", "events", "items"):
            count, digest = (
                store.cursor()
                .execute(
                    f"SELECT count(*), coalesce(bit_xor(hash(t)), 0) FROM {table} AS t "
                    "WHERE dataset_id <> ?",
                    [new],
                )
                .fetchall()[0]
            )
            assert (int(count), int(digest)) == before, table
        else:
            assert now[table] == before, table


# --------------------------------------------------------------------------- core.data.ingest


@pytest.mark.parametrize("case_id", list(CASES))
def test_core_ingest(case_id: str, template, generated: Path, tmp_path: Path) -> None:
    case = CASES[case_id]
    events, items = paths(case, generated)
    store = Store(fresh_db(template, tmp_path))
    name = dataset_name(case)
    try:
        if "error" in case:
            with pytest.raises(IngestError) as info:
                ingest(store, name, events, items_path=items)
            for fragment in case["error"]:
                assert fragment in str(info.value), str(info.value)
            assert "\n" not in str(info.value).strip()
            assert store.table_fingerprints() == template[1]
        else:
            result = ingest(store, name, events, items_path=items)
            assert result.dataset.name == name
            check_loaded(store, case, name)
            unchanged_but_for(store, template, name)
    finally:
        store.close()


def test_item_mapping_of_html_titles_is_kept_verbatim(template, tmp_path: Path) -> None:
    """Titles are data: stored exactly as written, whatever markup they hold."""
    store = Store(fresh_db(template, tmp_path))
    ingest(
        store,
        "html",
        CORPUS / "html_items_events.csv",
        items_path=CORPUS / "html_items.csv",
        item_mapping=ItemMapping(item="item", title="title", categories="genres"),
    )
    items = store.items_frame(store.get_dataset("html").dataset_id)
    cats = dict(zip(items["item_id"], items["categories"], strict=True))
    assert list(cats["i1"]) == ["Drama", "<b>Bold</b>"]
    store.close()


# --------------------------------------------------------------------------- the CLI


def _cli_args(case: dict, generated: Path, db: Path) -> list[str]:
    events, items = paths(case, generated)
    args = [sys.executable, "-m", "core", "--db", str(db), "ingest"]
    args += ["--dataset", dataset_name(case), "--events", str(events), "--json"]
    return args + (["--items", str(items)] if items else [])


@pytest.fixture(scope="module")
def cli_runs(template, generated: Path, tmp_path_factory) -> dict[str, tuple]:
    """Every case through ``python -m core ingest``, two at a time: id -> (proc, db)."""

    def run(case_id: str) -> tuple[subprocess.CompletedProcess, Path]:
        db = fresh_db(template, tmp_path_factory.mktemp(f"cli-{case_id}"))
        proc = subprocess.run(
            _cli_args(CASES[case_id], generated, db),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return proc, db

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CASES, pool.map(run, CASES), strict=True))


@pytest.mark.parametrize("case_id", list(CASES))
def test_cli_ingest(case_id: str, cli_runs, template) -> None:
    case = CASES[case_id]
    proc, db = cli_runs[case_id]
    if "error" in case:
        assert_user_error(proc, *case["error"])
        store = Store(db)
        assert store.table_fingerprints() == template[1]
    else:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        want = case["ok"]
        assert (summary["events"], summary["users"], summary["items"]) == (
            want["events"],
            want["users"],
            want["items"],
        )
        store = Store(db)
        check_loaded(store, case, dataset_name(case))
    store.close()


# --------------------------------------------------------------------------- the Data page


def _unescape(text: str) -> str:
    """A message as written before ``md_escape`` (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.mark.parametrize("case_id", PAGE_CASES)
def test_data_page(case_id: str, template, generated: Path, tmp_path: Path, monkeypatch) -> None:
    case = CASES[case_id]
    events, items = paths(case, generated)
    db = fresh_db(template, tmp_path)
    monkeypatch.setenv("RECLENS_DB", str(db))
    monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("ui/pages/data.py").run()
    at.file_uploader(key="events_upload").upload(events.name, events.read_bytes(), "text/csv")
    at.run()
    if items:
        at.file_uploader(key="items_upload").upload(items.name, items.read_bytes(), "text/csv")
        at.run()
    assert not at.exception, at.exception
    errors = [_unescape(e.value) for e in at.error]
    name = dataset_name(case)
    if not errors:
        at.text_input(key="ds_name").set_value(name).run()
        at.button(key="ingest_button").click().run()
        assert not at.exception, at.exception
        errors = [_unescape(e.value) for e in at.error]
    store = open_store(db)
    if "error" in case:
        assert len(errors) == 1, errors
        for fragment in case["error"]:
            assert fragment in errors[0], errors[0]
        assert store.table_fingerprints() == template[1]
    else:
        assert not errors, errors
        assert any(f"Loaded **{name}**" in s.value for s in at.success)
        check_loaded(store, case, name)
