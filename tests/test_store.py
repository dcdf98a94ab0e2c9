"""Tests of the DuckDB behaviour store: schema, names, transactions, threads, locking."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from core.data.ingest import ingest
from core.data.mapping import IngestError, ItemMapping
from core.store import (
    SCHEMA_VERSION,
    DatabaseLockedError,
    Store,
    StoreError,
    quote_ident,
    slugify,
    validate_dataset_name,
)

EVENTS = "user,item,timestamp\nu1,a,100\nu1,b,200\nu2,a,300\n"

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load(store: Store, write, name: str, text: str = EVENTS):
    return ingest(store, name, write(f"{name}.csv", text))


# --------------------------------------------------------------------------- schema


def test_new_database_records_the_schema_version(tmp_path: Path) -> None:
    st = Store(tmp_path / "new.duckdb")
    assert st.schema_version() == SCHEMA_VERSION
    rows = st.cursor().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert rows == [(str(SCHEMA_VERSION),)]
    assert {"datasets", "events", "items", "models", "evaluations", "vectors"} <= set(
        st.table_fingerprints()
    )
    st.close()


def test_reopening_migrates_nothing_and_keeps_the_data(tmp_path: Path, write) -> None:
    path = tmp_path / "keep.duckdb"
    st = Store(path)
    _load(st, write, "first")
    before = st.table_fingerprints()
    st.close()

    again = Store(path)
    assert again.migrate() == SCHEMA_VERSION  # nothing left to apply
    assert again.schema_version() == SCHEMA_VERSION
    assert again.table_fingerprints() == before
    assert [d.name for d in again.list_datasets()] == ["first"]
    again.close()


def test_a_newer_schema_version_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()

    with pytest.raises(StoreError, match="newer RecLens") as info:
        Store(path)
    assert str(path) in str(info.value)


def test_read_only_store_refuses_writes(tmp_path: Path, write) -> None:
    path = tmp_path / "ro.duckdb"
    st = Store(path)
    _load(st, write, "one")
    st.close()
    ro = Store(path, read_only=True)
    assert [d.name for d in ro.list_datasets()] == ["one"]
    with pytest.raises(StoreError, match="read-only"):
        ro.drop_dataset("one")
    ro.close()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("user", '"user"'),
        ('we"ird', '"we""ird"'),
        ('x"; DROP TABLE events; --', '"x""; DROP TABLE events; --"'),
        ("a;b", '"a;b"'),
    ],
)
def test_quote_ident_escapes_quotes(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize("name", ['x"; DROP TABLE events; --', "semi;colon", "sp ace", 'q"q'])
def test_quote_ident_makes_hostile_names_harmless_columns(name: str, store: Store) -> None:
    cur = store.cursor()
    cur.execute(f"CREATE TEMP TABLE hostile ({quote_ident(name)} INTEGER)")
    cur.execute(f"INSERT INTO hostile ({quote_ident(name)}) VALUES (42)")
    assert cur.execute(f"SELECT {quote_ident(name)} FROM hostile").fetchall() == [(42,)]
    assert cur.execute("SELECT column_name FROM (DESCRIBE hostile)").fetchall() == [(name,)]
    assert "events" in store.table_fingerprints()  # nothing was dropped


@pytest.mark.parametrize("bad", ["", "a\x00b", None])
def test_quote_ident_rejects_empty_and_nul(bad) -> None:
    with pytest.raises(StoreError):
        quote_ident(bad)


@pytest.mark.parametrize("good", ["demo", "movielens-small", "a", "beauty_2019", "0", "x" * 63])
def test_validate_dataset_name_accepts_slugs(good: str) -> None:
    assert validate_dataset_name(good) == good


@pytest.mark.parametrize(
    "bad",
    ["../x", "..", "a/b", "x'", 'x"', "x;y", "Demo", "UPPER", "", " ", "x" * 64, "-x", "_x"],
)
def test_validate_dataset_name_rejects_unsafe_names(bad: str) -> None:
    with pytest.raises(StoreError, match="invalid dataset name"):
        validate_dataset_name(bad)


def test_slugify_suggests_a_valid_name() -> None:
    assert slugify("My Ratings.csv.gz") == "my-ratings"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("???") == "dataset"
    for text in ("My Ratings.csv.gz", "../../etc/passwd", "???", "É" * 100):
        validate_dataset_name(slugify(text))


# --------------------------------------------------------------------------- datasets


def _rows(store: Store, table: str, dataset_id: int) -> int:
    return (
        store.cursor()
        .execute(f"SELECT count(*) FROM {table} WHERE dataset_id = ?", [dataset_id])
        .fetchall()[0][0]
    )


def test_drop_dataset_removes_every_row_of_that_dataset_only(store: Store, write) -> None:
    items = write("items.csv", "item,title,genres\na,Alpha,X|Y\nb,Beta,Z\n")
    keep = ingest(store, "keep", write("k.csv", EVENTS), items_path=items).dataset
    gone = ingest(store, "gone", write("g.csv", EVENTS + "u3,c,400\n"), items_path=items).dataset
    keep_before = {t: _rows(store, t, keep.dataset_id) for t in ("events", "items", "datasets")}
    assert _rows(store, "events", gone.dataset_id) == 4
    assert _rows(store, "items", gone.dataset_id) == 2

    store.drop_dataset("gone")

    for table in ("events", "items", "datasets", "planted_interests"):
        assert _rows(store, table, gone.dataset_id) == 0
    assert {t: _rows(store, t, keep.dataset_id) for t in keep_before} == keep_before
    assert [d.name for d in store.list_datasets()] == ["keep"]
    assert store.find_dataset("gone") is None


def test_drop_dataset_removes_planted_interests(tmp_path: Path) -> None:
    from core.data.demo import load_demo

    st = Store(tmp_path / "p.duckdb")
    info = load_demo(st, "small", n_users=20).dataset
    assert _rows(st, "planted_interests", info.dataset_id) == 20
    st.drop_dataset("small")
    assert st.table_fingerprints()["planted_interests"][0] == 0
    assert st.table_fingerprints()["events"][0] == 0
    st.close()


def test_unknown_dataset_error_lists_the_known_ones(store: Store, write) -> None:
    _load(store, write, "alpha")
    with pytest.raises(StoreError, match="no dataset called 'beta'; the datasets are: alpha"):
        store.drop_dataset("beta")
    with pytest.raises(StoreError, match="none yet"):
        Store(":memory:").get_dataset("x")


def test_a_failing_load_leaves_every_table_unchanged(store: Store, write) -> None:
    _load(store, write, "existing")
    before = store.table_fingerprints()
    items = write("items.csv", "item,title\na,Alpha\n")
    # Fails late, after the events were staged: the item column does not exist.
    with pytest.raises(IngestError, match="not found"):
        ingest(
            store,
            "broken",
            write("e.csv", EVENTS),
            items_path=items,
            item_mapping=ItemMapping(item="nope"),
        )
    assert store.table_fingerprints() == before
    # Fails on replace: the old dataset must survive a failed replacement too.
    with pytest.raises(IngestError):
        ingest(store, "existing", write("bad.csv", "user,item\n"), replace_existing=True)
    assert store.table_fingerprints() == before
    assert store.find_dataset("broken") is None


def test_failed_transaction_rolls_back(store: Store) -> None:
    before = store.table_fingerprints()
    with pytest.raises(RuntimeError), store.transaction() as cur:
        cur.execute(
            "INSERT INTO events VALUES (99, 'u', 'i', NULL, 0, NULL, NULL)",
        )
        raise RuntimeError("boom")
    assert store.table_fingerprints() == before


def test_table_fingerprints_see_content_changes(store: Store, write) -> None:
    _load(store, write, "fp")
    before = store.table_fingerprints()
    with store.transaction() as cur:
        cur.execute("UPDATE events SET item_id = 'zzz' WHERE pos = 0 AND user_id = 'u2'")
    after = store.table_fingerprints()
    assert after["events"][0] == before["events"][0]  # same count...
    assert after["events"] != before["events"]  # ...different content


def test_dataset_stats_are_computed_from_the_events(store: Store, write) -> None:
    # Item popularity 1, 1, 1, 9 (Gini 0.5); users with 3, 4 and 5 events.
    rows = ["u1,a,2024-01-01", "u1,b,2024-01-02", "u1,c,2024-01-03"]
    rows += [f"u2,d,2024-02-0{d}" for d in range(1, 5)]
    rows += [f"u3,d,2024-03-0{d}" for d in range(1, 6)]
    info = ingest(store, "s", write("s.csv", "user,item,time\n" + "\n".join(rows) + "\n")).dataset
    stats = store.dataset_stats("s")
    assert (stats["events"], stats["users"], stats["items"]) == (12, 3, 4)
    assert stats["density"] == pytest.approx(12 / (3 * 4))
    assert stats["popularity_gini"] == pytest.approx(0.5)
    assert stats["events_per_user"] == {"min": 3, "median": 4, "mean": 4, "max": 5}
    assert (stats["first_event"], stats["last_event"]) == (
        "2024-01-01 00:00:00",
        "2024-03-05 00:00:00",
    )
    assert stats["sample_users"] == ["u3", "u2", "u1"]  # most active first
    assert stats["sample_items"] == ["d", "a", "b", "c"]
    assert stats["fingerprint"] == info.fingerprint
    popularity = store.item_popularity(info.dataset_id)
    assert popularity["events"].tolist() == [9, 1, 1, 1]


def test_open_store_gives_one_store_per_file(tmp_path: Path, monkeypatch) -> None:
    import core.store.store as store_module

    stores: dict[str, Store] = {}
    monkeypatch.setattr(store_module, "_STORES", stores)  # leave the real registry alone
    monkeypatch.chdir(tmp_path)
    first = store_module.open_store(tmp_path / "one.duckdb")
    assert store_module.open_store("one.duckdb") is first  # the same file, spelled another way
    assert store_module.open_store(tmp_path / "two.duckdb") is not first
    for st in stores.values():
        st.close()


# --------------------------------------------------------------------------- concurrency


def test_readers_on_their_own_cursors_while_a_writer_writes(store: Store, write) -> None:
    _load(store, write, "base")
    n_writes, errors, seen = 15, [], []
    done = threading.Event()

    def reader() -> None:
        try:
            cursor = store.cursor()
            while not done.is_set():
                (count,) = store.cursor().execute("SELECT count(*) FROM events").fetchone()
                assert store.cursor() is cursor  # one cursor per thread
                seen.append(count)
                assert count % 3 == 0  # a half-written transaction is never visible
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(n_writes):
                with store.transaction() as cur:
                    for j in range(3):
                        cur.execute(
                            "INSERT INTO events VALUES (999, ?, 'x', NULL, ?, NULL, NULL)",
                            [f"w{i}", j],
                        )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=reader) for _ in range(2)] + [
        threading.Thread(target=writer)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert seen, "the readers never ran"
    final = store.cursor().execute("SELECT count(*) FROM events WHERE dataset_id = 999").fetchone()
    assert final == (3 * n_writes,)


# --------------------------------------------------------------------------- locking


def test_a_second_process_gets_a_clear_locked_error(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    st = Store(path)  # held by this process for writing
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "core", "--db", str(path), "datasets"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        st.close()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "in use" in lines[0]
    assert "Traceback" not in proc.stderr


def test_locked_error_type_in_process(tmp_path: Path) -> None:
    """The same situation from Python: another process holds the file."""
    path = tmp_path / "held2.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError, match="in use by another process"):
            Store(path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def _setting(store: Store, name: str) -> str:
    return store.cursor().execute("SELECT current_setting(?)", [name]).fetchone()[0]


def test_store_caps_memory_and_spill_and_loads_no_extension_by_itself(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("RECLENS_DUCKDB_MEMORY", raising=False)
    store = Store(tmp_path / "a.duckdb")
    assert _setting(store, "autoload_known_extensions") is False
    assert _setting(store, "autoinstall_known_extensions") is False
    # a remote read does not install and load httpfs behind the analyst's back
    with pytest.raises(duckdb.Error):
        store.cursor().execute("SELECT * FROM read_csv('https://example.com/x.csv')").fetchall()
    loaded = (
        store.cursor()
        .execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded")
        .fetchall()
    )
    assert ("httpfs",) not in loaded
    assert _setting(store, "memory_limit") != "" and _setting(store, "max_temp_directory_size")
    store.close()

    monkeypatch.setenv("RECLENS_DUCKDB_MEMORY", "2GiB")
    monkeypatch.setenv("RECLENS_DUCKDB_TEMP", "3GiB")
    store = Store(tmp_path / "b.duckdb")
    assert _setting(store, "memory_limit") == "2.0 GiB"
    assert _setting(store, "max_temp_directory_size") == "3.0 GiB"
    store.close()

    monkeypatch.setenv("RECLENS_DUCKDB_MEMORY", "lots")
    with pytest.raises(StoreError, match="RECLENS_DUCKDB_MEMORY"):
        Store(tmp_path / "c.duckdb")
    assert not (tmp_path / "c.duckdb").exists()  # nothing was created
