"""Hostile input stays data: SQL text and file paths never come from users, uploads are
capped and never named by the client, the app listens on localhost, and markup in
item titles reaches the page escaped. (Model loading never unpickles: see
tests/test_model.py::test_model_loading_never_unpickles.)
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.data.ingest import ingest
from core.data.mapping import EventMapping, IngestError, ItemMapping
from core.store import Store, StoreError, open_store

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = [
    "'; DROP TABLE events; --",
    'x"; DROP TABLE datasets; --',
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "Robert'); DELETE FROM models;--",
]


def test_hostile_ids_and_column_names_round_trip_as_data(store: Store, tmp_path: Path) -> None:
    columns = ['us"er; DROP TABLE events', "it'em -- SELECT 1"]
    rows = [(u, i) for u in HOSTILE for i in HOSTILE[:2]]
    text = ",".join('"' + c.replace('"', '""') + '"' for c in columns) + "\n"
    text += "".join(",".join('"' + v.replace('"', '""') + '"' for v in r) + "\n" for r in rows)
    log = tmp_path / "hostile.csv"
    log.write_text(text)
    result = ingest(store, "hostile", log, EventMapping(user=columns[0], item=columns[1]))
    assert result.dataset.n_events == len(rows)
    did = result.dataset.dataset_id
    for user in HOSTILE:
        assert store.user_history(did, user) == HOSTILE[:2]
    assert store.user_events(did, HOSTILE[0])["item_id"].tolist() == HOSTILE[:2]
    assert set(store.table_fingerprints()) >= {"events", "datasets", "models"}
    assert result.dataset.mapping["events"]["user"] == columns[0]


@pytest.mark.parametrize("name", HOSTILE + ["..", "a/b", "DEMO", "x" * 64, ""])
def test_hostile_dataset_and_model_names_are_refused(name: str, store: Store, tmp_path) -> None:
    log = tmp_path / "a.csv"
    log.write_text("user,item\nu1,a\n")
    before = store.table_fingerprints()
    with pytest.raises(IngestError, match="invalid dataset name"):
        ingest(store, name, log)
    ingest(store, "fine", log)
    from core.store import StoreError

    with pytest.raises(StoreError, match="invalid dataset name"):
        store.register_model(name, "fine", str(tmp_path), {}, {})
    store.drop_dataset("fine")
    assert store.table_fingerprints() == before


def _data_page(tmp_path: Path, monkeypatch) -> AppTest:
    """The Data page of a fresh app on a database in ``tmp_path`` holding dataset "seed"."""
    monkeypatch.setenv("RECLENS_DB", str(tmp_path / "app.duckdb"))
    monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")
    seed = Store(tmp_path / "app.duckdb")
    (tmp_path / "seed.csv").write_text("user,item\nu1,a\n")
    ingest(seed, "seed", tmp_path / "seed.csv")
    seed.close()
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("ui/pages/data.py").run()
    return at


def _spooled(tmp_path: Path) -> list[Path]:
    """Every file under the page's upload folder (beside the database)."""
    return [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


def test_uploaded_file_name_is_never_used_as_a_path(tmp_path: Path, monkeypatch) -> None:
    """The Data page spools an upload to its own file under uploads/; the client's name
    is shown and stored as a source name only, and the copy is deleted once loaded."""
    at = _data_page(tmp_path, monkeypatch)
    evil = "../../../../tmp/reclens-evil-upload.csv"
    target = Path("/tmp/reclens-evil-upload.csv")
    target.unlink(missing_ok=True)
    at.file_uploader(key="events_upload").upload(evil, b"user,item\nu1,a\nu2,b\n", "text/csv")
    at.run()
    (spooled,) = _spooled(tmp_path)
    assert spooled.name == "upload.bin" and spooled.parent.name.startswith("reclens-upload-")
    at.text_input(key="ds_name").set_value("evil").run()
    at.button(key="ingest_button").click().run()
    assert not at.exception, at.exception
    assert not target.exists()
    info = open_store(tmp_path / "app.duckdb").get_dataset("evil")
    assert info.sources == [evil] and info.n_events == 2
    assert _spooled(tmp_path) == []
    # The page says the file is loaded instead of offering to load it twice.
    assert any("is loaded as dataset **evil**" in i.value for i in at.info)
    at.button(key="reload_upload").click().run()
    assert at.text_input(key="ds_name").value and len(_spooled(tmp_path)) == 1


def test_twenty_uploads_in_a_row_leave_no_spooled_file(tmp_path: Path, monkeypatch) -> None:
    at = _data_page(tmp_path, monkeypatch)
    for i in range(20):
        body = f"user,item\nu{i},a\nu{i},b\n".encode()
        at.file_uploader(key="events_upload").upload(f"log{i}.csv", body, "text/csv").run()
        if i % 2:
            items = at.file_uploader(key="items_upload")
            items.upload("items.csv", b"item,title\na,A\n", "text/csv").run()
        # at most the two files now shown in the two uploaders
        assert 1 <= len(_spooled(tmp_path)) <= 2, i
        assert not at.error, at.error[0].value
    at.text_input(key="ds_name").set_value("last").run()
    at.button(key="ingest_button").click().run()
    assert not at.exception, at.exception
    assert open_store(tmp_path / "app.duckdb").get_dataset("last").n_events == 2
    assert _spooled(tmp_path) == []
    # A file left behind by a crash is swept when the app starts again.
    leftover = tmp_path / "uploads" / "reclens-upload-crashed" / "upload.bin"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"user,item\n")
    export = tmp_path / "exports" / "reclens-export-crashed" / "top.csv"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"user_id,rank,item_id,score\n")
    st.cache_resource.clear()
    AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not leftover.parent.exists() and not export.parent.exists()


def test_a_closed_sessions_uploads_are_deleted(tmp_path: Path) -> None:
    import gc
    import io

    from core.data.uploads import Spool

    spool = Spool(tmp_path)
    first = spool.path("events", "id-1", io.BytesIO(b"user,item\nu,a\n"))
    assert first.read_bytes() == b"user,item\nu,a\n"
    assert spool.path("events", "id-1", io.BytesIO(b"other")) == first  # copied once
    second = spool.path("events", "id-2", io.BytesIO(b"user,item\nv,b\n"))
    assert not first.exists() and second.exists()  # replaced
    items = spool.path("items", "id-3", io.BytesIO(b"item\na\n"))
    assert sorted(spool.files()) == sorted([second, items])
    del spool  # Streamlit drops a closed session's state
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_upload_size_is_capped_by_configuration() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    cap = config["server"]["maxUploadSize"]
    assert isinstance(cap, int) and 0 < cap <= 1024
    readme = (ROOT / "README.md").read_text()
    assert "server.maxUploadSize" in readme and f"{cap} MB" in readme


def test_the_app_binds_to_localhost_by_default() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^ADDRESS \?= (localhost|127\.0\.0\.1)$", makefile, re.M)
    assert "--server.address $(ADDRESS)" in makefile
    readme = (ROOT / "README.md").read_text()
    assert "Exposing the app" in readme and "reverse proxy" in readme


def test_item_titles_with_markup_are_rendered_escaped(tmp_path: Path, monkeypatch) -> None:
    """No HTML from data reaches a page as HTML: markdown gets it escaped, tables as text."""
    monkeypatch.setenv("RECLENS_DB", str(tmp_path / "app.duckdb"))
    monkeypatch.setenv("RECLENS_AUTOTRAIN", "0")
    seed = Store(tmp_path / "app.duckdb")
    corpus = ROOT / "tests" / "data" / "bad_input"
    ingest(
        seed,
        "html",
        corpus / "html_items_events.csv",
        items_path=corpus / "html_items.csv",
        item_mapping=ItemMapping(item="item", title="title", categories="genres"),
        source_names=["<script>alert('src')</script>.csv", "items.csv"],
    )
    seed.close()
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    for page in ("ui/pages/home.py", "ui/pages/data.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        for element in list(at.markdown) + list(at.caption):
            body = element.value
            if getattr(element.proto, "allow_html", False):
                assert "<script" not in body.lower() and "onerror" not in body.lower(), body
            assert not re.search(r"(?<!\\)<(script|img)\b", body, re.I), body
    events = next(d.value for d in at.dataframe if "title" in d.value.columns)
    assert "<script>alert('x')</script>" in set(events["title"])  # shown as text in a table
    assert any("\\<script\\>" in c.value for c in at.caption)  # the source name, escaped


# --------------------------------------------------------------------------- model folders


def _folder_fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def trained_copy(tmp_path: Path) -> Store:
    """A private copy of the trained demo database; its model folder is shared (read only)."""
    from tests._trained import copy_of_trained

    store = Store(copy_of_trained(tmp_path))
    yield store
    store.close()


@pytest.mark.parametrize(
    "claim",
    [{"n_items": 10**9}, {"hidden": 2**20, "heads": 1}, {"max_len": 10**9}, {"layers": 10**6}],
)
def test_a_config_claiming_huge_sizes_fails_before_allocating(
    claim: dict, trained_copy: Store, tmp_path: Path
) -> None:
    from core.models.checkpoint import CheckpointError, load_model

    folder = tmp_path / "hostile-model"
    shutil.copytree(trained_copy.get_model("demo-test").path, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **claim}))
    before = _folder_fingerprint(folder)
    with pytest.raises(CheckpointError, match="items.json|does not match config.json"):
        load_model(folder)  # a real allocation of these sizes would take terabytes
    assert _folder_fingerprint(folder) == before


def test_a_run_named_like_another_datasets_model_is_refused(trained_copy: Store) -> None:
    from core.data.demo import load_demo
    from core.models.registry import claim_model_name, free_model_name

    load_demo(trained_copy, "shop", n_users=40)
    before = trained_copy.table_fingerprints()
    for replace in (False, True):
        with pytest.raises(StoreError, match="taken by a model of dataset 'demo'"):
            claim_model_name(trained_copy, "shop", "demo-test", replace=replace)
    with pytest.raises(StoreError, match="already registered"):
        trained_copy.register_model("demo-test", "shop", "/elsewhere", {}, {}, replace=True)
    assert trained_copy.table_fingerprints() == before
    assert trained_copy.get_model("demo-test").dataset == "demo"
    # the same dataset may replace its own model only when asked to
    with pytest.raises(StoreError, match="demo-test-2"):
        claim_model_name(trained_copy, "demo", "demo-test")
    assert claim_model_name(trained_copy, "demo", "demo-test", replace=True) == "demo-test"
    assert free_model_name(trained_copy, "demo-test") == "demo-test-2"


def test_the_app_imports_models_only_from_its_model_home(
    trained_copy: Store, tmp_path: Path
) -> None:
    from core.models.registry import import_model, importable_models, model_home

    source = Path(trained_copy.get_model("demo-test").path)
    home = model_home(trained_copy)
    home.mkdir(exist_ok=True)
    outside = tmp_path / "outside-model"
    shutil.copytree(source, outside)
    (home / "escape").symlink_to(outside, target_is_directory=True)
    shutil.copytree(source, home / "copied")
    assert importable_models(trained_copy) == ["copied"]  # the symlink is not offered
    before = trained_copy.table_fingerprints()
    folders = {f: _folder_fingerprint(f) for f in (home, outside)}
    for hostile in ("escape", "../outside-model", str(outside), "/etc", "", "..", "nothing"):
        with pytest.raises(StoreError, match="not a model folder in the model home"):
            import_model(trained_copy, hostile)
    assert trained_copy.table_fingerprints() == before
    assert {f: _folder_fingerprint(f) for f in (home, outside)} == folders
    # a model saved as "demo-test" arrives under a free name: the import replaces nothing
    model, warnings = import_model(trained_copy, "copied")
    assert model.name == "demo-test-2" and warnings == []
    assert Path(trained_copy.get_model("demo-test").path) == source
    assert importable_models(trained_copy) == []


def _gzip_bomb(path: Path, expanded: int) -> Path:
    """A small gzip file of valid "user,item" rows that expands to ``expanded`` bytes."""
    import gzip

    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b"user,item\n")
        block = b"1,2\n" * (1 << 18)
        for _ in range(expanded // len(block)):
            out.write(block)
    return path


def _parquet(path: Path, rows: int, users: int = 0) -> Path:
    """A Parquet file of ``rows`` events: one repeated event (run-length encoding keeps
    300 million of them under a megabyte), or ``users`` users on 10 items."""
    import duckdb

    if users:
        pair = f"'u' || (range % {users}) AS user_id, 'i' || (range // {users} % 10) AS item_id"
    else:
        pair = "'u' AS user_id, 'i' AS item_id"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT {pair} FROM range({rows})) TO '{path}' (FORMAT parquet)")
    return path


def test_a_gzip_bomb_and_a_huge_parquet_are_refused_before_reading(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    from core.data.sources import Limits

    before = store.table_fingerprints()
    bomb = _gzip_bomb(tmp_path / "bomb.csv.gz", 200 * 10**6)
    assert bomb.stat().st_size < 10**6
    with pytest.raises(IngestError, match=r"expands to more than 50 MB.*RECLENS_MAX_FILE_BYTES"):
        ingest(store, "bomb", bomb, limits=Limits(max_bytes=50 * 10**6))
    monkeypatch.setenv("RECLENS_MAX_FILE_ROWS", "1_000_000")  # the same cap from the environment
    lines = r"more than 1,000,000 lines, the most one file.*RECLENS_MAX_FILE_ROWS"
    with pytest.raises(IngestError, match=lines):
        ingest(store, "bomb", bomb)
    monkeypatch.delenv("RECLENS_MAX_FILE_ROWS")
    # 300 million rows in under a megabyte, refused from the metadata at the default cap
    huge = _parquet(tmp_path / "huge.parquet", 300_000_000)
    assert huge.stat().st_size < 2 * 10**6
    rows = r"holds 300,000,000 rows, more than the 200,000,000 one file"
    with pytest.raises(IngestError, match=rows):
        ingest(store, "huge", huge)
    assert store.table_fingerprints() == before
    # Below the caps the same kind of file loads.
    small = _parquet(tmp_path / "small.parquet", 1000, users=100)
    assert ingest(store, "small", small).dataset.n_events == 1000


def test_the_page_refuses_a_gzip_bomb_with_a_message(tmp_path: Path, monkeypatch) -> None:
    at = _data_page(tmp_path, monkeypatch)
    monkeypatch.setenv("RECLENS_MAX_FILE_BYTES", str(50 * 10**6))
    before = open_store(tmp_path / "app.duckdb").table_fingerprints()
    bomb = _gzip_bomb(tmp_path / "bomb.csv.gz", 200 * 10**6)
    at.file_uploader(key="events_upload").upload("bomb.csv.gz", bomb.read_bytes(), "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert "expands to more than 50 MB" in at.error[0].value
    assert "ingest_button" not in [b.key for b in at.button]
    assert open_store(tmp_path / "app.duckdb").table_fingerprints() == before


# --------------------------------------------------------------------------- markup from data


def _strings(node) -> list[str]:
    """Every string inside a Plotly figure's JSON."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


_PLOTLY_TAG = re.compile(r"<(a|span|img)\b", re.I)  # px itself writes <b> and <br>


def test_markup_in_ids_titles_categories_and_types_is_escaped_everywhere(
    tmp_path: Path, start_app
) -> None:
    """Markdown and HTML from data reach no page and no chart as markup: every piece of
    text Streamlit renders as Markdown holds the payloads only escaped, and every
    string in every figure has its tags and entities escaped for Plotly."""
    from shapes import MARKUP, copy_of_shape

    at = start_app(copy_of_shape("markup", tmp_path), 180)
    seen_in_charts, seen_in_text, charts_per_page = 0, 0, {}
    for page in ("home", "data", "train", "interests", "recommendations", "metrics", "metrics"):
        at.switch_page(f"ui/pages/{page}.py").run()
        if page == "interests":  # a click on the map picks a user whose id holds markup
            from test_app_interests import _click_map

            from core.common.escape import plotly as plotly_text

            clicked = f"{MARKUP[0]} u5"
            at = _click_map(at, plotly_text(clicked))  # what the chart sends back
            assert at.session_state["selected_user"] == clicked
        if page == "metrics" and "run_eval" in [b.key for b in at.button]:
            at.button(key="run_eval").click().run()  # the second visit shows its charts
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
        texts = [
            e.value
            for kind in ("markdown", "caption", "title", "header", "subheader")
            for e in getattr(at, kind)
        ]
        texts += [
            e.value for kind in ("success", "info", "warning", "error") for e in getattr(at, kind)
        ]
        texts += [str(m.label) for m in at.metric] + [str(m.value) for m in at.metric]
        for widget in ("checkbox", "radio", "button", "expander", "tabs"):
            texts += [str(getattr(w, "label", "")) for w in getattr(at, widget, [])]
        texts += [str(o) for r in at.radio for o in r.options]
        for body in texts:
            for payload in MARKUP + ["http://"]:
                assert payload not in body, (page, payload, body)
            seen_in_text += "\\*\\*bold\\*\\*" in body or "\\<a href" in body
        charts_per_page[page] = len(at.get("plotly_chart"))
        for chart in at.get("plotly_chart"):
            strings = _strings(json.loads(chart.proto.spec))
            for text in strings:
                assert not _PLOTLY_TAG.search(text), (page, text)
                assert "&lt;b&gt;" not in text.replace("&amp;lt;b&amp;gt;", ""), (page, text)
            seen_in_charts += sum("&lt;a href" in t for t in strings)
    # the data did reach the pages and the charts, escaped
    assert seen_in_text > 0 and seen_in_charts > 0
    assert charts_per_page["metrics"] >= 5 and charts_per_page["interests"] >= 4
