"""Tests of ingestion: every format, option and failure a user can meet, on small real files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from core.data.ingest import ingest, suggest_item_mapping, suggest_mapping
from core.data.inspection import inspect
from core.data.mapping import Cleaning, EventMapping, IngestError, ItemMapping
from core.data.sources import ReadOptions, _refuse_very_wide_lines
from core.store import Store

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets next to the project (read by path, never copied into it).
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def events_of(store: Store, name: str) -> list[tuple]:
    """(user, item, time, pos, type, value) of a dataset, by user then pos."""
    frame = store.query_df(
        """SELECT user_id, item_id, ts, pos, event_type, value FROM events
           WHERE dataset_id = (SELECT dataset_id FROM datasets WHERE name = ?)
           ORDER BY user_id, pos""",
        [store.get_dataset(name).name],
    )
    frame["ts"] = frame["ts"].astype(object).where(frame["ts"].notna(), None)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return [tuple(r) for r in frame.itertuples(index=False)]


def histories(store: Store, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for user, item, *_ in events_of(store, name):
        out.setdefault(user, []).append(item)
    return out


def items_of(store: Store, name: str) -> dict[str, tuple]:
    frame = store.items_frame(store.get_dataset(name).dataset_id)
    frame = frame.astype(object).where(frame.notna(), None)
    return {
        r.item_id: (r.title, None if r.categories is None else list(r.categories), r.text)
        for r in frame.itertuples(index=False)
    }


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- delimiters, header


@pytest.mark.parametrize(
    "sep", [",", ";", "\t", "|", " "], ids=["comma", "semi", "tab", "pipe", "space"]
)
def test_delimiter_is_sniffed_with_header(sep: str, store: Store, write) -> None:
    rows = [["user_id", "item_id", "timestamp"], ["u1", "a", "100"], ["u1", "b", "200"]]
    rows += [["u2", "a", "300"]]
    path = write("log.csv", "".join(sep.join(r) + "\n" for r in rows))
    insp = inspect(store, path)
    assert insp.delimiter == sep
    assert insp.has_header is True
    assert insp.columns == ["user_id", "item_id", "timestamp"]
    result = ingest(store, "d", path)
    assert result.report["delimiter"] == sep
    assert histories(store, "d") == {"u1": ["a", "b"], "u2": ["a"]}


@pytest.mark.parametrize(
    "sep", [",", ";", "\t", "|", " "], ids=["comma", "semi", "tab", "pipe", "space"]
)
def test_delimiter_is_sniffed_without_header(sep: str, store: Store, write) -> None:
    path = write("log.txt", f"1{sep}10\n1{sep}20\n2{sep}10\n2{sep}30\n")
    insp = inspect(store, path)
    assert (insp.delimiter, insp.has_header, len(insp.columns)) == (sep, False, 2)
    result = ingest(store, "d", path)
    assert result.dataset.n_events == 4  # the first line is data, not a header
    assert histories(store, "d") == {"1": ["10", "20"], "2": ["10", "30"]}


def test_headerless_two_columns_are_user_then_item_in_file_order(store: Store, write) -> None:
    path = write("pairs.txt", "7 300\n7 100\n5 200\n7 200\n5 100\n")
    insp = inspect(store, path)
    mapping = suggest_mapping(insp)
    assert (mapping.user, mapping.item, mapping.time) == (insp.columns[0], insp.columns[1], None)
    ingest(store, "pairs", path)
    assert histories(store, "pairs") == {"5": ["200", "100"], "7": ["300", "100", "200"]}
    assert store.get_dataset("pairs").has_time is False


def test_headerless_text_ids_keep_the_first_line(store: Store, write) -> None:
    """All-text columns confuse DuckDB's header sniffer; a repeated id shows it is data."""
    path = write("text.csv", "alice,apple\nalice,pear\nbob,apple\n")
    insp = inspect(store, path)
    assert insp.has_header is False
    ingest(store, "t", path)
    assert histories(store, "t") == {"alice": ["apple", "pear"], "bob": ["apple"]}


def test_text_header_is_still_a_header(store: Store, write) -> None:
    path = write("h.csv", "customer,product\nalice,apple\nalice,pear\nbob,apple\n")
    assert inspect(store, path).has_header is True
    ingest(store, "h", path)
    assert histories(store, "h") == {"alice": ["apple", "pear"], "bob": ["apple"]}


@pytest.mark.parametrize("spec", [("1", "2"), (1, 2)])
def test_columns_by_one_based_position(spec, store: Store, write) -> None:
    path = write("p.csv", "1,100,5\n1,200,4\n2,100,3\n")
    ingest(
        store,
        "p",
        path,
        EventMapping(user=spec[0], item=spec[1]),
        read=ReadOptions(header=False),
    )
    assert histories(store, "p") == {"1": ["100", "200"], "2": ["100"]}


def test_swapped_positions_swap_roles(store: Store, write) -> None:
    path = write("p.csv", "1,100\n1,200\n2,100\n")
    ingest(store, "p", path, EventMapping(user="2", item="1"))
    assert histories(store, "p") == {"100": ["1", "2"], "200": ["1"]}


def test_position_out_of_range_names_the_columns(store: Store, write) -> None:
    path = write("p.csv", "1,100\n1,200\n")
    with pytest.raises(IngestError, match=r"position 3 is out of range: the file has 2 columns"):
        ingest(store, "p", path, EventMapping(user=1, item=3))


def test_column_not_found_lists_the_files_columns(store: Store, write) -> None:
    path = write("r.csv", "user,movie,score\nu1,m1,5\n")
    with pytest.raises(IngestError) as info:
        ingest(store, "r", path, EventMapping(user="userId", item="movie"))
    assert "column 'userId' not found; the file's columns are: user, movie, score" in str(
        info.value
    )
    assert store.find_dataset("r") is None


def test_column_names_match_case_insensitively(store: Store, write) -> None:
    path = write("c.csv", "UserID,ItemID\nu1,a\nu2,b\n")
    ingest(store, "c", path, EventMapping(user="userid", item="itemid"))
    assert histories(store, "c") == {"u1": ["a"], "u2": ["b"]}


def test_a_column_can_play_only_one_role(store: Store, write) -> None:
    path = write("c.csv", "user,item\nu1,a\n")
    with pytest.raises(IngestError, match="only one role"):
        ingest(store, "c", path, EventMapping(user="user", item="user"))


def test_ids_stay_text_with_leading_zeros(store: Store, write) -> None:
    path = write("z.csv", "user,item\n007,0042\n007,42\n")
    ingest(store, "z", path)
    assert histories(store, "z") == {"007": ["0042", "42"]}


# --------------------------------------------------------------------------- encodings, compression


def test_utf8_with_bom(store: Store, write) -> None:
    path = write("bom.csv", "\ufeffuser_id,item_id,title\nu1,a,Crème brûlée\nu2,b,x\n")
    insp = inspect(store, path)
    assert insp.columns[0] == "user_id"  # the BOM is not part of the first name
    assert suggest_mapping(insp).user == "user_id"
    ingest(store, "bom", path)
    assert histories(store, "bom") == {"u1": ["a"], "u2": ["b"]}


def test_latin1_falls_back_and_keeps_accents(store: Store, write) -> None:
    events = write("ev.csv", "user,item\nzoé,m1\nzoé,m2\n".encode("latin-1"))
    items = write(
        "movies.csv",
        (
            'item,title,genres\nm1,"Amélie, Le fabuleux destin",Comedy|Romance\nm2,Señor,Drama\n'
        ).encode("latin-1"),
    )
    result = ingest(store, "latin", events, items_path=items)
    assert histories(store, "latin") == {"zoé": ["m1", "m2"]}
    assert items_of(store, "latin") == {
        "m1": ("Amélie, Le fabuleux destin", ["Comedy", "Romance"], None),
        "m2": ("Señor", ["Drama"], None),
    }
    assert result.report["encoding"] == "latin-1"
    assert any("Latin-1" in note for note in result.report["notes"])
    assert result.report["dropped"]["unparseable_rows"] == 0


def test_latin1_after_the_sniffed_start_is_read_again(store: Store, write) -> None:
    """The first 64 KB are plain ASCII; the accented line comes after them."""
    body = "".join(f"u{i % 50},i{i}\n" for i in range(8000))
    path = write("late.csv", ("user,item\n" + body + "renée,zz\n").encode("latin-1"))
    assert path.stat().st_size > 65536
    result = ingest(store, "late", path)
    assert result.dataset.n_events == 8001
    assert result.report["dropped"]["unparseable_rows"] == 0
    assert histories(store, "late")["renée"] == ["zz"]


def test_explicit_utf8_reports_undecodable_lines(store: Store, write) -> None:
    path = write("l.csv", "user,item\nu1,café\nu2,b\n".encode("latin-1"))
    result = ingest(store, "l", path, read=ReadOptions(encoding="utf-8"))
    assert histories(store, "l") == {"u2": ["b"]}
    assert result.report["dropped"]["unparseable_rows"] == 1
    assert result.report["examples"][0]["line"] == 2
    assert "encoding" in result.report["examples"][0]["problem"]


def test_gzip_compressed_csv(store: Store, write) -> None:
    text = "user,item,timestamp\nu1,a,100\nu1,b,200\nu2,a,300\n"
    ingest(store, "plain", write("log.csv", text))
    ingest(store, "gz", write("log.csv.gz", gzip.compress(text.encode())))
    assert events_of(store, "gz") == events_of(store, "plain")


def test_truncated_gzip_is_a_clear_error_and_changes_nothing(store: Store, write) -> None:
    ingest(store, "before", write("ok.csv", "user,item\nu1,a\n"))
    snapshot = store.table_fingerprints()
    body = "user,item\n" + "".join(f"u{i},i{i % 97}\n" for i in range(20000))
    data = gzip.compress(body.encode())
    path = write("cut.csv.gz", data[: len(data) // 2])
    with pytest.raises(IngestError) as info:
        ingest(store, "cut", path)
    message = str(info.value)
    assert "cut.csv.gz" in message and "truncated or corrupt" in message
    assert "\n" not in message
    assert store.table_fingerprints() == snapshot


def _wide_line_refusal(path: Path, chunk: int, gzipped: bool) -> str | None:
    """The wide-line scan's message for ``path`` read ``chunk`` bytes at a time, if any."""
    try:
        _refuse_very_wide_lines(path, path.name, None, gzipped=gzipped, chunk=chunk)
    except IngestError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("chunk", [97, 4096, 1 << 24])
def test_wide_line_scan_counts_across_chunks_plain_and_gzip(chunk: int, write) -> None:
    """A line spanning many (decompressed) chunks is counted whole, with its line number.

    10,000 fields pass, 10,001 do not; narrow lines either side of a chunk boundary are
    never added together; the gzip scan agrees with the plain one at every chunk size.
    """
    narrow = "".join(f"u{i},i{i}\n" for i in range(3000))  # crosses chunk boundaries
    cases = {
        "edge.csv": (f"user,item\n{narrow}" + ",".join(["v"] * 10_000) + f"\n{narrow}", None),
        "wide.csv": (f"user,item\n{narrow}" + ",".join(["v"] * 10_001) + "\nu,b\n", 3002),
        "last.csv": (f"user,item\n{narrow}" + ";".join(["v"] * 20_000), 3002),  # no newline
    }
    for name, (text, line) in cases.items():
        plain = write(name, text)
        packed = write(name + ".gz", gzip.compress(text.encode()))
        for path, gzipped in ((plain, False), (packed, True)):
            message = _wide_line_refusal(path, chunk, gzipped)
            if line is None:
                assert message is None, (name, gzipped, message)
            else:
                assert message is not None, (name, gzipped)
                assert message.startswith(f"line {line} of {path.name} has more than 10,000")


def test_wide_line_in_a_truncated_gzip_is_still_found(write) -> None:
    """All that decompresses is scanned; a cut after the wide line does not hide it."""
    wide = ",".join(["v"] * 20_000)
    data = gzip.compress(f"user,item\nu1,a\n{wide}\n".encode() + os.urandom(200_000))
    path = write("cut_wide.csv.gz", data[: len(data) - 1000])
    assert _wide_line_refusal(path, 1 << 24, True).startswith("line 3 of cut_wide.csv.gz")


def test_large_gzip_csv_loads_after_the_scan(store: Store, write) -> None:
    """A gzip file bigger than one scan chunk still loads, every row of it."""
    body = "user,item\n" + "".join(f"u{i % 5000},i{i % 811}\n" for i in range(300_000))
    path = write("many.csv.gz", gzip.compress(body.encode(), compresslevel=1))
    _refuse_very_wide_lines(path, path.name, None, gzipped=True, chunk=1 << 16)
    result = ingest(store, "many", path)
    assert result.dataset.n_events == 300_000


# --------------------------------------------------------------------------- parquet


def test_parquet_events_and_items_with_list_categories(store: Store, tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "customer": [1, 1, 2],
            "product": [7, 8, 7],
            "event_time": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03"]),
            "event_type": ["view", "cart", "view"],
            "rating": [1.0, 2.5, 3.0],
        }
    ).to_parquet(tmp_path / "ev.parquet")
    pd.DataFrame(
        {
            "product": [7, 8],
            "name": ["Lamp, tall", "Desk"],
            "categories": [["Home", " Light "], ["Office"]],
            "description": ["a lamp", None],
        }
    ).to_parquet(tmp_path / "items.parquet")
    result = ingest(store, "pq", tmp_path / "ev.parquet", items_path=tmp_path / "items.parquet")
    assert result.summary()["events"] == 3
    assert events_of(store, "pq") == [
        ("1", "8", ts("2024-01-01"), 0, "cart", 2.5),
        ("1", "7", ts("2024-01-02"), 1, "view", 1.0),
        ("2", "7", ts("2024-01-03"), 0, "view", 3.0),
    ]
    assert items_of(store, "pq") == {
        "7": ("Lamp, tall", ["Home", "Light"], "a lamp"),
        "8": ("Desk", ["Office"], None),
    }


# --------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1700000000", "1600000000"], ["2023-11-14 22:13:20", "2020-09-13 12:26:40"]),
        (["1700000000123", "1600000000000"], ["2023-11-14 22:13:20.123", "2020-09-13 12:26:40"]),
        (
            ["2024-01-02T03:04:05Z", "2024-01-02T03:04:06Z"],
            ["2024-01-02 03:04:05", "2024-01-02 03:04:06"],
        ),
        (
            ["2024-01-02T03:04:05+02:00", "2024-01-02T03:04:05-01:30"],
            ["2024-01-02 01:04:05", "2024-01-02 04:34:05"],
        ),
        (
            ["2024-01-02 03:04:05+02:00", "2024-01-02T03:04:05"],  # mixed: one has an offset
            ["2024-01-02 01:04:05", "2024-01-02 03:04:05"],
        ),
        (
            ["2024-01-02T03:04:05+02:00", "1700000000"],  # mixed kinds: read as text
            ["2024-01-02 01:04:05", "2023-11-14 22:13:20"],
        ),
        (
            ["2024-01-02 03:04:05-0130", "2024-01-02"],  # mixed kinds: read as text
            ["2024-01-02 04:34:05", "2024-01-02 00:00:00"],
        ),
        (
            ["2024-01-02 03:04:05", "2024-01-02T03:04:06"],
            ["2024-01-02 03:04:05", "2024-01-02 03:04:06"],
        ),
        (["2024-01-02", "2023-12-31"], ["2024-01-02 00:00:00", "2023-12-31 00:00:00"]),
    ],
    ids=[
        "unix-s",
        "unix-ms",
        "iso-z",
        "iso-offset",
        "iso-mixed",
        "text-offset-and-unix",
        "text-offset-and-date",
        "iso-naive",
        "date",
    ],
)
def test_time_formats(values, expected, store: Store, write) -> None:
    path = write("t.csv", f"user,item,timestamp\nu1,a,{values[0]}\nu2,b,{values[1]}\n")
    ingest(store, "t", path)
    got = {user: t for user, _, t, *_ in events_of(store, "t")}
    assert got == {"u1": ts(expected[0]), "u2": ts(expected[1])}


def test_times_do_not_depend_on_the_machines_time_zone(tmp_path: Path) -> None:
    """Naive times are UTC even when the sniffer reads the column as TIMESTAMPTZ."""
    path = tmp_path / "mixed.csv"
    path.write_text("user,item,time\nu1,a,2024-01-02 03:04:05+02:00\nu2,b,2024-01-02T03:04:05\n")
    script = (
        "import sys; from core.store import Store; from core.data.ingest import ingest; "
        "s = Store(sys.argv[1]); ingest(s, 'm', sys.argv[2]); "
        "print(*s.cursor().execute('SELECT CAST(ts AS VARCHAR) FROM events ORDER BY user_id')"
        ".fetchall(), sep='|')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tz.duckdb"), str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, "TZ": "America/New_York"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('2024-01-02 01:04:05',)|('2024-01-02 03:04:05',)"


def test_unparseable_times_are_rejected_with_their_lines(store: Store, write) -> None:
    lines = [
        "user,item,time",  # line 1
        "u1,a,2024-01-01",  # 2
        "u1,b,yesterday",  # 3 bad
        "u2,a,2024-01-02",  # 4
        "u2,b,2024-13-45",  # 5 bad (no such date)
        "u3,c,2024-01-03",  # 6
        "u3,d,soon",  # 7 bad
    ]
    result = ingest(store, "t", write("t.csv", "\n".join(lines) + "\n"))
    assert result.report["dropped"]["bad_time"] == 3
    examples = result.report["examples"]
    assert [e["line"] for e in examples] == [3, 5, 7]
    for example in examples:
        user, item, raw = lines[example["line"] - 1].split(",")
        assert (example["user"], example["item"], example["time"]) == (user, item, raw)
        assert example["problem"] == "unparseable time"
    assert result.dataset.n_events == 3


def test_example_lines_count_lines_the_reader_rejected(store: Store, write) -> None:
    lines = [
        "user,item,time",  # 1
        "u1,a,2024-01-01",  # 2
        "u1,b",  # 3 ragged: rejected by the reader
        "u2,a,2024-01-02,extra",  # 4 ragged
        "u2,b,never",  # 5 bad time
        "u3,c,2024-01-03",  # 6
    ]
    result = ingest(store, "t", write("t.csv", "\n".join(lines) + "\n"))
    dropped = result.report["dropped"]
    assert (dropped["unparseable_rows"], dropped["bad_time"]) == (2, 1)
    examples = result.report["examples"]
    assert [e["line"] for e in examples] == [3, 4, 5]
    assert examples[0]["text"] == "u1,b"
    assert examples[2]["time"] == "never"
    assert histories(store, "t") == {"u1": ["a"], "u3": ["c"]}


def test_missing_ids_are_rejected_with_at_most_five_examples(store: Store, write) -> None:
    rows = ["user,item", "u1,a"]
    rows += [",x" if i % 2 else "u9," for i in range(8)]  # lines 3..10 miss an id
    rows += ["u2,b", "  ,c"]  # line 12: blank id counts as missing
    result = ingest(store, "m", write("m.csv", "\n".join(rows) + "\n"))
    assert result.report["dropped"]["missing_id"] == 9
    examples = result.report["examples"]
    assert len(examples) == 5
    assert [e["line"] for e in examples] == [3, 4, 5, 6, 7]
    assert all(e["problem"] == "missing user or item id" for e in examples)
    assert histories(store, "m") == {"u1": ["a"], "u2": ["b"]}


# --------------------------------------------------------------------------- cleaning


def test_exact_duplicates_are_dropped_and_counted(store: Store, write) -> None:
    text = (
        "user,item,time,type\n"
        "u1,a,100,view\n"
        "u1,a,100,view\n"  # exact duplicate
        "u1,a,100,cart\n"  # other type: kept
        "u1,a,200,view\n"  # other time: kept
        "u1,a,100,view\n"  # exact duplicate
    )
    result = ingest(store, "dup", write("d.csv", text))
    assert result.report["dropped"]["duplicates"] == 2
    assert result.dataset.n_events == 3
    assert [(e[3], e[4]) for e in events_of(store, "dup")] == [
        (0, "view"),
        (1, "cart"),
        (2, "view"),
    ]


def test_min_value_keeps_only_positive_events(store: Store, write) -> None:
    text = "user,item,rating\nu1,a,5\nu1,b,3.5\nu1,c,4\nu2,a,1\nu2,b,\nu3,c,4.5\n"
    result = ingest(
        store,
        "pos",
        write("r.csv", text),
        EventMapping(user="user", item="item", value="rating", min_value=4),
    )
    assert result.report["dropped"]["below_min_value"] == 3  # 3.5, 1 and the empty rating
    assert histories(store, "pos") == {"u1": ["a", "c"], "u3": ["c"]}
    assert {e[5] for e in events_of(store, "pos")} == {5.0, 4.0, 4.5}


def test_values_that_are_not_numbers_are_reported(store: Store, write) -> None:
    text = "user;item;rating\nu1;a;4,5\nu1;b;3,0\nu2;c;5\nu3;d;\n"
    result = ingest(store, "eu", write("eu.csv", text))
    assert [e[5] for e in events_of(store, "eu")] == [None, None, 5.0, None]
    notes = " ".join(result.report["notes"])
    assert "2 values of the value column 'rating' are not numbers" in notes
    assert "'3,0'" in notes  # an example of the problem


def test_min_value_needs_a_value_column(store: Store, write) -> None:
    with pytest.raises(IngestError, match="needs a value column"):
        ingest(
            store,
            "x",
            write("r.csv", "user,item\nu1,a\n"),
            EventMapping("user", "item", min_value=4),
        )


def test_k_core_leaves_only_users_and_items_meeting_the_limits(store: Store, write) -> None:
    # 40 users with 3..6 of 10 items; "chain" meets the user limit only through "rare",
    # an item too rare to stay, so the filter must run again after dropping it.
    pairs = [(f"u{u}", f"i{(u + k) % 10}") for u in range(40) for k in range(3 + u % 4)]
    pairs += [("lonely", "i0"), ("chain", "i1"), ("chain", "i2"), ("chain", "i3")]
    pairs += [("chain", "rare"), ("u5", "rare")]
    path = write("k.csv", "user,item\n" + "".join(f"{u},{i}\n" for u, i in pairs))
    result = ingest(store, "k", path, cleaning=Cleaning(min_user_events=4, min_item_events=5))
    counts = store.query_df(
        "SELECT user_id, item_id FROM events WHERE dataset_id = ?", [result.dataset.dataset_id]
    )
    assert len(counts) > 0
    assert counts.groupby("user_id").size().min() >= 4
    assert counts.groupby("item_id").size().min() >= 5
    kept_users = set(counts["user_id"])
    assert "rare" not in set(counts["item_id"])
    assert "lonely" not in kept_users and "chain" not in kept_users and "u5" in kept_users
    assert result.report["dropped"]["k_core"] == len(set(pairs)) - len(counts)
    assert result.dataset.n_users == counts["user_id"].nunique()
    assert result.dataset.n_items == counts["item_id"].nunique()
    # The same result as the textbook fixed point computed in pandas.
    frame = pd.DataFrame(sorted(set(pairs)), columns=["user_id", "item_id"])
    while True:
        u = frame.groupby("user_id")["item_id"].transform("size")
        i = frame.groupby("item_id")["user_id"].transform("size")
        keep = (u >= 4) & (i >= 5)
        if keep.all():
            break
        frame = frame[keep]
    assert sorted(map(tuple, counts.values)) == sorted(map(tuple, frame.values))


def test_k_core_that_removes_everything_is_a_clear_error(store: Store, write) -> None:
    path = write("k.csv", "user,item\nu1,a\nu2,b\n")
    with pytest.raises(IngestError, match="no events are left after cleaning"):
        ingest(store, "k", path, cleaning=Cleaning(min_user_events=3))
    assert store.find_dataset("k") is None


def test_collapse_repeats_drops_consecutive_repeats_only(store: Store, write) -> None:
    text = "user,item,time\nu1,a,1\nu1,a,2\nu1,b,3\nu1,a,4\nu1,a,5\nu2,a,1\nu2,a,9\nu2,c,5\n"
    result = ingest(store, "c", write("c.csv", text), cleaning=Cleaning(collapse_repeats=True))
    assert result.report["dropped"]["repeats"] == 2
    # u2 in time order is a(1), c(5), a(9): no consecutive repeat.
    assert histories(store, "c") == {"u1": ["a", "b", "a"], "u2": ["a", "c", "a"]}
    assert [e[3] for e in events_of(store, "c")] == [0, 1, 2, 0, 1, 2]


# --------------------------------------------------------------------------- item files


def test_item_file_with_delimited_categories_and_quoted_titles(store: Store, write) -> None:
    events = write("r.csv", "userId,movieId,rating\n1,1,4\n1,2,5\n2,3,3\n")
    items = write(
        "movies.csv",
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Adventure|Comedy\n'
        "2,Heat (1995),Action|Crime|Thriller\n"
        '3,"Say ""Hi"", then go",(no genres listed)\n'
        "4,Unrated,Drama\n",
    )
    insp = inspect(store, items)
    assert suggest_item_mapping(insp) == ItemMapping(
        item="movieId", title="title", categories="genres"
    )
    result = ingest(store, "ml", events, items_path=items)
    assert items_of(store, "ml") == {
        "1": ("American President, The (1995)", ["Adventure", "Comedy"], None),
        "2": ("Heat (1995)", ["Action", "Crime", "Thriller"], None),
        "3": ('Say "Hi", then go', [], None),
        "4": ("Unrated", ["Drama"], None),
    }
    assert result.dataset.n_item_rows == 4
    assert result.report["items"]["item_rows_read"] == 4


def test_item_file_with_another_category_separator_and_duplicate_ids(store: Store, write) -> None:
    events = write("e.csv", "user,item\nu1,p1\n")
    items = write(
        "i.tsv", "sku\tname\ttags\tblurb\np1\tMug\tkitchen; gifts\tA mug\np1\tMug 2\tx\ty\n"
    )
    result = ingest(
        store,
        "shop",
        events,
        items_path=items,
        item_mapping=ItemMapping(
            item="sku", title="name", categories="tags", text="blurb", category_sep=";"
        ),
    )
    assert items_of(store, "shop") == {"p1": ("Mug", ["kitchen", "gifts"], "A mug")}
    assert result.report["items"]["duplicate_items"] == 1


# --------------------------------------------------------------------------- bad files


def test_empty_file(store: Store, write) -> None:
    with pytest.raises(IngestError, match="empty.csv is empty"):
        ingest(store, "e", write("empty.csv", ""))


def test_header_only_file(store: Store, write) -> None:
    with pytest.raises(IngestError, match="head.csv has no data rows, only a header line"):
        ingest(store, "h", write("head.csv", "user,item,timestamp\n"))
    assert store.list_datasets() == []


def test_binary_file_with_nul_bytes(store: Store, write) -> None:
    with pytest.raises(IngestError, match="binary data"):
        ingest(store, "b", write("data.csv", b"\x00\x01\x02\x03user\x00item\n" * 10))


def test_utf16_file_is_named_as_such(store: Store, write) -> None:
    with pytest.raises(IngestError, match="UTF-16"):
        ingest(store, "u", write("u16.csv", "user,item\nu1,a\n".encode("utf-16")))


def test_excel_workbook_renamed_to_csv(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/workbook.xml", "<workbook/>")
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    with pytest.raises(IngestError, match="export.csv is an Excel workbook") as info:
        ingest(store, "x", path)
    assert "save it as CSV" in str(info.value)


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="file not found: nope.csv"):
        ingest(store, "x", tmp_path / "nope.csv")


def test_bad_delimiter_option(store: Store, write) -> None:
    with pytest.raises(IngestError, match="single character"):
        ingest(store, "x", write("a.csv", "user,item\nu1,a\n"), read=ReadOptions(delimiter="ab"))


def test_ragged_rows_are_rejected_and_reported(store: Store, write) -> None:
    text = "user,item,time\nu1,a,100\nu1,b\nu2,c,300,extra\nu2,d,400\nu9\nu3,e,500\n"
    items = write("i.csv", "item,title,genres\na,A,X\nd\ne,E,Y,extra\n")
    result = ingest(store, "r", write("r.csv", text), items_path=items)
    # Line 6 misses two columns: one bad line, counted once.
    assert result.report["dropped"]["unparseable_rows"] == 3
    examples = result.report["examples"]
    assert [e["line"] for e in examples] == [3, 4, 6]
    assert [e["text"] for e in examples] == ["u1,b", "u2,c,300,extra", "u9"]
    assert "missing columns" in examples[0]["problem"]
    assert "too many columns" in examples[1]["problem"]
    assert histories(store, "r") == {"u1": ["a"], "u2": ["d"], "u3": ["e"]}
    assert result.report["items"]["unparseable_rows"] == 2
    assert list(items_of(store, "r")) == ["a"]


def test_bad_lines_of_one_file_are_not_reported_for_the_next(store: Store, write) -> None:
    ragged = write("r.csv", "user,item,time\nu1,a,1\nu1,b\nu2,c,3\n")
    assert ingest(store, "r", ragged).report["dropped"]["unparseable_rows"] == 1
    inspect(store, ragged)  # a preview reads the bad line again
    clean = ingest(store, "c", write("c.csv", "user,item,time\nu1,a,1\nu2,b,2\n"))
    assert clean.report["dropped"]["unparseable_rows"] == 0
    assert clean.report["examples"] == []


def test_mostly_unparseable_file_is_refused(store: Store, write) -> None:
    text = "a,b,c\n" + "".join(f"x{i}\n" if i % 10 else f"x{i},y,z,w\n" for i in range(30))
    with pytest.raises(IngestError):
        ingest(store, "bad", write("bad.csv", text), EventMapping(user="a", item="b"))
    assert store.find_dataset("bad") is None


def test_quoted_fields_with_newlines_and_delimiters(store: Store, write) -> None:
    text = 'user,item,note\nu1,a,"one, two"\nu1,"b,c","multi\nline; note"\nu2,"say ""hi""",plain\n'
    result = ingest(store, "q", write("q.csv", text))
    assert result.report["dropped"]["unparseable_rows"] == 0
    assert histories(store, "q") == {"u1": ["a", "b,c"], "u2": ['say "hi"']}


def test_hostile_column_names_are_only_identifiers(store: Store, write) -> None:
    text = '"user""; DROP TABLE events; --",item:id\nu1,a\nu2,b\n'
    result = ingest(store, "h", write("h.csv", text), EventMapping(user=1, item=2))
    assert result.dataset.n_events == 2
    assert histories(store, "h") == {"u1": ["a"], "u2": ["b"]}
    assert result.dataset.mapping["events"]["user"] == 'user"; DROP TABLE events; --'


# --------------------------------------------------------------------------- names, replacing


def test_bad_dataset_name_is_refused_before_reading(store: Store, write) -> None:
    with pytest.raises(IngestError, match="invalid dataset name '../x'"):
        ingest(store, "../x", write("a.csv", "user,item\nu1,a\n"))


def test_reingest_under_the_same_name_needs_replace(store: Store, write) -> None:
    first = ingest(store, "same", write("a.csv", "user,item\nu1,a\nu1,b\n"))
    snapshot = store.table_fingerprints()
    with pytest.raises(IngestError, match="already exists"):
        ingest(store, "same", write("b.csv", "user,item\nu9,z\n"))
    assert store.table_fingerprints() == snapshot

    second = ingest(store, "same", write("b.csv", "user,item\nu9,z\n"), replace_existing=True)
    assert [d.name for d in store.list_datasets()] == ["same"]
    assert histories(store, "same") == {"u9": ["z"]}
    assert second.dataset.n_events == 1
    assert second.dataset.sources == ["b.csv"]
    old = (
        store.cursor()
        .execute("SELECT count(*) FROM events WHERE dataset_id = ?", [first.dataset.dataset_id])
        .fetchone()
    )
    assert old == (0,)


# --------------------------------------------------------------------------- order


def test_pos_orders_by_time_then_file_order(store: Store, write) -> None:
    text = (
        "user,item,time\n"
        "u1,late,300\n"
        "u2,x,5\n"
        "u1,tie-first,100\n"
        "u1,early,50\n"
        "u1,tie-second,100\n"
        "u2,y,1\n"
    )
    ingest(store, "o", write("o.csv", text))
    assert [(e[0], e[1], e[3]) for e in events_of(store, "o")] == [
        ("u1", "early", 0),
        ("u1", "tie-first", 1),
        ("u1", "tie-second", 2),
        ("u1", "late", 3),
        ("u2", "y", 0),
        ("u2", "x", 1),
    ]


def test_no_time_column_keeps_file_order(store: Store, write) -> None:
    text = "user,item\nu2,z\nu1,m\nu2,a\nu1,c\nu1,b\n"
    result = ingest(store, "f", write("f.csv", text))
    assert [(e[0], e[1], e[2], e[3]) for e in events_of(store, "f")] == [
        ("u1", "m", None, 0),
        ("u1", "c", None, 1),
        ("u1", "b", None, 2),
        ("u2", "z", None, 0),
        ("u2", "a", None, 1),
    ]
    assert "as they appear in the file" in result.report["time"]


def test_pos_is_contiguous_per_user_on_a_bigger_file(store: Store, write) -> None:
    rows = "".join(f"u{i % 37},i{(i * 13) % 101},{(i * 7919) % 1000}\n" for i in range(3000))
    result = ingest(store, "big", write("big.csv", "user,item,time\n" + rows))
    frame = store.query_df(
        "SELECT user_id, pos, ts FROM events WHERE dataset_id = ? ORDER BY user_id, pos",
        [result.dataset.dataset_id],
    )
    for _, group in frame.groupby("user_id"):
        assert group["pos"].tolist() == list(range(len(group)))
        assert group["ts"].is_monotonic_increasing


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_for_identical_data_and_changes_with_it(store: Store, write) -> None:
    text = "user,item,time\nu1,a,1\nu1,b,2\nu2,a,3\n"
    a = ingest(store, "a", write("a.csv", text)).dataset.fingerprint
    b = ingest(store, "b", write("b.csv", text)).dataset.fingerprint
    again = ingest(store, "a", write("a2.csv", text), replace_existing=True).dataset.fingerprint
    assert a == b == again
    changed_item = ingest(store, "c", write("c.csv", text.replace("u2,a", "u2,c"))).dataset
    changed_time = ingest(store, "d", write("d.csv", text.replace(",3", ",4"))).dataset
    fewer = ingest(store, "e", write("e.csv", text.rsplit("u2", 1)[0])).dataset
    assert len({a, changed_item.fingerprint, changed_time.fingerprint, fewer.fingerprint}) == 4


def test_fingerprint_changes_when_only_the_items_change(store: Store, write) -> None:
    events = write("e.csv", "user,item\nu1,a\nu2,a\n")
    one = write("i1.csv", "item,title,genres\na,Alpha,X\n")
    two = write("i2.csv", "item,title,genres\na,Alpha,X|Y\n")
    first = ingest(store, "a", events, items_path=one).dataset.fingerprint
    same = ingest(store, "b", events, items_path=one).dataset.fingerprint
    other = ingest(store, "c", events, items_path=two).dataset.fingerprint
    none = ingest(store, "d", events).dataset.fingerprint
    assert first == same
    assert len({first, other, none}) == 3


# --------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("user_id,item_id,timestamp,rating", ("user_id", "item_id", "timestamp", None, "rating")),
        ("userId,movieId,rating,timestamp", ("userId", "movieId", "timestamp", None, "rating")),
        (
            "customer,product,event_time,event_type",
            ("customer", "product", "event_time", "event_type", None),
        ),
        (
            "Customer ID;Product ID;Event Time;Event Type;Rating",
            ("Customer ID", "Product ID", "Event Time", "Event Type", "Rating"),
        ),
        ("visitorid,itemid,event,timestamp", ("visitorid", "itemid", "timestamp", "event", None)),
    ],
)
def test_suggest_mapping_from_common_names(
    header: str, expected: tuple, store: Store, write
) -> None:
    sep = ";" if ";" in header else ","
    value = {"user": "u1", "item": "p1", "time": "1700000000", "type": "view", "value": "4"}
    roles = dict(zip(expected, ("user", "item", "time", "type", "value"), strict=True))
    row = sep.join(value[roles[name]] for name in header.split(sep))
    insp = inspect(store, write("s.csv", f"{header}\n{row}\n{row}\n"))
    m = suggest_mapping(insp)
    assert (m.user, m.item, m.time, m.type, m.value) == expected


def test_suggest_mapping_for_headerless_columns_by_shape(store: Store, write) -> None:
    path = write("s.csv", "1,10,1700000000,4.5\n1,11,1700000100,3.0\n2,10,1700000200,5.0\n")
    insp = inspect(store, path)
    m = suggest_mapping(insp)
    cols = insp.columns
    assert (m.user, m.item, m.time, m.value) == (cols[0], cols[1], cols[2], cols[3])


# --------------------------------------------------------------------------- real datasets

MOVIELENS = DATASETS / "movielens-latest-small"
BEAUTY = DATASETS / "amazon-beauty" / "beauty.txt"


@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").exists(),
    reason=f"MovieLens not found at {MOVIELENS} (the shared datasets live next to the project)",
)
def test_movielens_ratings_and_movies(store: Store) -> None:
    result = ingest(
        store, "movielens", MOVIELENS / "ratings.csv", items_path=MOVIELENS / "movies.csv"
    )
    summary = result.summary()
    assert (summary["events"], summary["users"], summary["items"]) == (100_896, 611, 9_724)
    assert sum(summary["dropped"].values()) == 0
    info = store.get_dataset("movielens")
    assert info.has_time and info.mapping["events"]["value"] == "rating"
    items = store.items_frame(info.dataset_id).set_index("item_id")
    assert list(items.loc["1", "categories"]) == [
        "Adventure",
        "Animation",
        "Children",
        "Comedy",
        "Fantasy",
    ]
    assert items.loc["1", "title"] == "Toy Story (1995)"
    # Titles with commas inside quotes stay whole.
    assert items["title"].str.contains(", The (", regex=False).sum() > 100
    assert all(isinstance(c, str) for cats in items["categories"] for c in cats)
    first = store.user_events(info.dataset_id, "1", limit=3)
    assert first["pos"].tolist() == [0, 1, 2]
    assert first["time"].is_monotonic_increasing


@pytest.mark.skipif(
    not BEAUTY.exists(),
    reason=f"Amazon beauty not found at {BEAUTY} (the shared datasets live next to the project)",
)
def test_amazon_beauty_space_delimited_headerless(store: Store) -> None:
    result = ingest(store, "beauty", BEAUTY)
    summary = result.summary()
    assert (summary["events"], summary["users"], summary["items"]) == (353_962, 40_226, 54_542)
    assert result.report["header"] is False and result.report["delimiter"] == " "
    raw = pd.read_csv(BEAUTY, sep=" ", header=None, names=["user", "item"], dtype=str)
    first_in_file = raw.drop_duplicates("user").set_index("user")["item"]
    firsts = store.query_df(
        "SELECT user_id, item_id FROM events WHERE dataset_id = ? AND pos = 0",
        [result.dataset.dataset_id],
    ).set_index("user_id")["item_id"]
    assert len(firsts) == 40_226
    assert firsts.sort_index().equals(
        first_in_file.sort_index().rename("item_id").rename_axis("user_id")
    )
