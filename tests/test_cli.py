"""Tests of ``python -m core``, run as a user would: a subprocess in the project root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.store import Store

REPO_ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok_json(*args: str, db: Path):
    proc = cli(*args, "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one ``error: ...`` line on stderr, no traceback, nothing on stdout."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_demo_datasets_stats_drop(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    demo = ok_json("demo", "--dataset", "shop", "--users", "40", "--seed", "3", db=db)
    assert demo["dataset"] == "shop" and demo["users"] == 40 and demo["events"] > 40
    assert set(demo["dropped"]) >= {"duplicates", "missing_id", "bad_time"}

    listed = ok_json("datasets", db=db)
    assert isinstance(listed, list) and len(listed) == 1
    assert {k: listed[0][k] for k in ("name", "events", "users", "items")} == {
        "name": "shop",
        "events": demo["events"],
        "users": demo["users"],
        "items": demo["items"],
    }

    stats = ok_json("stats", "--dataset", "shop", db=db)
    assert {k: stats[k] for k in ("events", "users", "items")} == {
        k: demo[k] for k in ("events", "users", "items")
    }
    assert 0 < len(stats["sample_users"]) <= 10 and 0 < len(stats["sample_items"]) <= 10
    st = Store(db, read_only=True)
    info = st.get_dataset("shop")
    known_users = set(st.query_df("SELECT DISTINCT user_id FROM events")["user_id"])
    known_items = set(st.query_df("SELECT DISTINCT item_id FROM events")["item_id"])
    st.close()
    assert set(stats["sample_users"]) <= known_users
    assert set(stats["sample_items"]) <= known_items
    assert stats["fingerprint"] == info.fingerprint

    again = cli("demo", "--dataset", "shop", "--users", "40", db=db)
    assert_user_error(again, "already exists")

    dropped = cli("drop", "--dataset", "shop", db=db)
    assert dropped.returncode == 0, dropped.stderr
    st = Store(db, read_only=True)
    assert st.list_datasets() == []
    assert st.table_fingerprints()["events"][0] == 0
    st.close()


def test_ingest_json_keys_and_counts(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    events = tmp_path / "ratings.csv"
    events.write_text(
        "userId,movieId,rating,timestamp\n1,10,4,100\n1,11,2,200\n2,10,5,300\n2,10,5,300\n3,12,x,400\n"
    )
    items = tmp_path / "movies.csv"
    items.write_text('movieId,title,genres\n10,"Heat, The",Action|Crime\n11,Up,Animation\n')
    out = ok_json(
        "ingest", "--dataset", "ml", "--events", str(events), "--items", str(items), db=db
    )
    assert {"dataset", "events", "users", "items", "dropped"} <= set(out)
    assert (out["dataset"], out["events"], out["users"], out["items"]) == ("ml", 4, 3, 3)
    assert out["dropped"]["duplicates"] == 1
    assert out["item_rows"] == 2

    positive = ok_json(
        "ingest", "--dataset", "ml-pos", "--events", str(events), "--min-value", "4", db=db
    )
    assert (positive["events"], positive["users"]) == (2, 2)
    assert positive["dropped"]["below_min_value"] == 2

    listed = {d["name"]: d for d in ok_json("datasets", db=db)}
    assert sorted(listed) == ["ml", "ml-pos"]
    assert {k: listed["ml-pos"][k] for k in ("events", "users", "items")} == {
        "events": 2,
        "users": 2,
        "items": 1,
    }


def test_ingest_headerless_with_sep_and_positions(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    log = tmp_path / "log.txt"
    log.write_text("a;1;x\na;2;y\nb;1;z\n")
    out = ok_json(
        "ingest", "--dataset", "semi", "--events", str(log), "--sep", ";", "--no-header",
        "--user-col", "3", "--item-col", "1",
        db=db,
    )  # fmt: skip
    assert (out["events"], out["users"], out["items"]) == (3, 3, 2)
    st = Store(db, read_only=True)
    users = set(st.query_df("SELECT user_id FROM events")["user_id"])
    st.close()
    assert users == {"x", "y", "z"}


def test_ingest_named_columns_keep_the_other_suggestions(tmp_path: Path) -> None:
    """Naming the id columns must not silently drop the time (order) or the items' ids."""
    db = tmp_path / "cli.duckdb"
    events = tmp_path / "ratings.csv"
    events.write_text("userId,movieId,rating,timestamp\n1,10,4,300\n1,11,2,100\n1,12,5,200\n")
    items = tmp_path / "movies.csv"
    items.write_text("movieId,title,genres\n10,Heat,Action|Crime\n11,Up,Animation\n")
    out = ok_json(
        "ingest", "--dataset", "ml", "--events", str(events), "--items", str(items),
        "--user-col", "userId", "--item-col", "movieId", "--category-col", "genres",
        db=db,
    )  # fmt: skip
    assert out["events"] == 3 and out["item_rows"] == 2
    st = Store(db, read_only=True)
    info = st.get_dataset("ml")
    history = st.user_events(info.dataset_id, "1")
    st.close()
    assert history["item_id"].tolist() == ["11", "12", "10"]  # by time, not file order
    assert history["value"].tolist() == [2.0, 5.0, 4.0]
    assert history["title"].tolist()[::2] == ["Up", "Heat"]
    assert [list(c) for c in history["categories"].tolist()[::2]] == [
        ["Animation"],
        ["Action", "Crime"],
    ]


def test_ingest_human_output_and_replace(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    log = tmp_path / "log.csv"
    log.write_text("user,item\nu1,a\nu1,a\n")
    first = cli("ingest", "--dataset", "h", "--events", str(log), db=db)
    assert first.returncode == 0, first.stderr
    assert "loaded h: 1 events, 1 users, 1 items" in first.stdout
    assert "duplicates=1" in first.stdout
    refused = cli("ingest", "--dataset", "h", "--events", str(log), db=db)
    assert_user_error(refused, "already exists")
    log.write_text("user,item\nu1,a\nu2,b\n")
    replaced = ok_json("ingest", "--dataset", "h", "--events", str(log), "--replace", db=db)
    assert replaced["events"] == 2


BAD_INPUT = {
    "missing-file": (
        ["ingest", "--dataset", "x", "--events", "{tmp}/missing.csv"],
        ["file not found: missing.csv"],
    ),
    "bad-name": (
        ["ingest", "--dataset", "../evil", "--events", "{log}"],
        ["invalid dataset name '../evil'"],
    ),
    "unknown-column": (
        ["ingest", "--dataset", "x", "--events", "{log}", "--user-col", "userId"],
        ["column 'userId' not found; the file's columns are: user, movie, score"],
    ),
    "bad-sep": (
        ["ingest", "--dataset", "x", "--events", "{log}", "--sep", "ab"],
        ["single character"],
    ),
    "unknown-dataset": (["stats", "--dataset", "nope"], ["no dataset called 'nope'"]),
    "unknown-command": (["frobnicate"], ["invalid choice"]),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Run every bad command line at once (they are independent): case -> (proc, db)."""
    running = {}
    for case, (args, _) in BAD_INPUT.items():
        tmp = tmp_path_factory.mktemp(case)
        log = tmp / "log.csv"
        log.write_text("user,movie,score\nu1,m1,5\n")
        db = tmp / "cli.duckdb"
        argv = [a.format(tmp=tmp, log=log) for a in args]
        running[case] = (
            subprocess.Popen(
                [sys.executable, "-m", "core", "--db", str(db), *argv],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            db,
        )
    done = {}
    for case, (proc, db) in running.items():
        out, err = proc.communicate(timeout=120)
        done[case] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), db)
    return done


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_error_line(case: str, bad_input_runs) -> None:
    proc, db = bad_input_runs[case]
    assert_user_error(proc, *BAD_INPUT[case][1])
    if db.exists():
        st = Store(db)
        assert st.list_datasets() == []
        st.close()


def test_main_in_process_reports_multiline_errors_on_one_line(tmp_path: Path, capsys) -> None:
    """Whatever a message holds, stderr gets exactly one line."""
    bad = tmp_path / "ragged.csv"
    bad.write_bytes(b"a,b,c\n" + b"x\n" * 50)
    status = main(
        ["--db", str(tmp_path / "m.duckdb"), "ingest", "--dataset", "r", "--events", str(bad)]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_unusable_db_path_is_a_user_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--db", str(blocker / "sub" / "x.duckdb"), "datasets"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create the folder") and err.count("\n") == 1
    for size in (1, 100):  # DuckDB alone opens a small text file as an empty database
        not_a_db = tmp_path / f"ratings{size}.csv"
        not_a_db.write_text("user,item\n" + "u1,a\n" * size)
        before = not_a_db.read_bytes()
        assert main(["--db", str(not_a_db), "datasets"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert str(not_a_db) in err and "not a RecLens database" in err
        assert not_a_db.read_bytes() == before


def test_train_out_never_replaces_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    ok_json("demo", "--dataset", "shop", "--users", "40", "--seed", "3", db=db)
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    refused = cli("train", "--dataset", "shop", "--epochs", "1", "--out", str(precious), db=db)
    assert_user_error(refused, "refusing to replace", str(precious))
    assert (precious / "chapter1.tex").read_text() == "years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.tex"]
    # an empty folder, and then the model it now holds, may be (re)written
    model = tmp_path / "model"
    model.mkdir()
    args = ("train", "--dataset", "shop", "--epochs", "1", "--text-encoder", "none")
    first = ok_json(*args, "--name", "m1", "--out", str(model), db=db)
    second = ok_json(*args, "--name", "m2", "--out", str(model), db=db)
    assert first["path"] == second["path"] and (model / "config.json").exists()
