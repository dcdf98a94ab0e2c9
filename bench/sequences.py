"""Benchmark: per-user sequences from the store (``load_sequences`` + ``padded(200)``).

    .venv/bin/python bench/sequences.py [--rows N] [--repeat R] [--subset-users-mod M]

Builds a store with the behaviour log of ``bench/ingest.py`` (same generator and
cache) ingested through ``core.data.ingest.ingest`` (untimed setup), then times

* ``load_sequences(store, "bench")`` (DuckDB vocabulary + ordered list aggregation
  to Arrow, then numpy CSR) and ``Sequences.padded(200)`` separately and in total,
  on the full dataset;
* on a subset dataset (the events of every user whose id is divisible by M, about
  1/M of the events, with whole histories), the same fast path against a naive
  one: read the events into pandas, rank items by popularity, sort, ``groupby``
  into Python lists, left-pad each list in Python. Both are timed on the same
  subset and their padded matrices are checked to be identical; the naive time
  scaled linearly to the full size is reported as an estimate only.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, code_state, loadavg, log, machine  # noqa: E402  (bench/common.py)
from ingest import MEASURED_CODE, behaviour_csv  # noqa: E402  (bench/ingest.py)

from core.data.ingest import ingest  # noqa: E402
from core.data.sequences import PAD, load_sequences  # noqa: E402
from core.store import Store  # noqa: E402

MAX_LEN = 200
TARGET_S = 10.0


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def cpu_timed(fn, *args):
    """(value, wall s, process CPU s): CPU time counts every DuckDB thread."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn(*args)
    return value, time.perf_counter() - start, time.process_time() - cpu


def fast(store: Store, name: str) -> tuple[np.ndarray, float, float]:
    seqs, t_load = timed(load_sequences, store, name)
    padded, t_pad = timed(seqs.padded, MAX_LEN)
    return padded, t_load, t_pad


def naive(store: Store, name: str) -> tuple[np.ndarray, float]:
    """The obvious pandas version: frame, groupby into lists, pad in Python."""
    start = time.perf_counter()
    did = store.get_dataset(name).dataset_id
    df = store.query_df("SELECT user_id, item_id, pos FROM events WHERE dataset_id = ?", [did])
    counts = df["item_id"].value_counts()
    # Same vocabulary as the store: most popular first, ties by id; 0 is padding.
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = {item: i + 1 for i, (item, _) in enumerate(order)}
    df["idx"] = df["item_id"].map(vocab)
    df = df.sort_values(["user_id", "pos"])
    lists = df.groupby("user_id", sort=True)["idx"].apply(list)
    rows = []
    for history in lists:
        tail = history[-MAX_LEN:]
        rows.append([PAD] * (MAX_LEN - len(tail)) + tail)
    out = np.array(rows, dtype=np.int32)
    return out, time.perf_counter() - start


def summarise(times: list[float]) -> dict:
    return {
        "runs_s": [round(t, 3) for t in times],
        "best_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the log")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--subset-users-mod",
        type=int,
        default=10,
        help="the naive comparison uses users whose id %% M == 0 (default 10: ~1/10 of events)",
    )
    parser.add_argument(
        "--workdir", default=None, help="where the database file goes (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1 or args.subset_users_mod < 1:
        parser.error("--rows, --repeat and --subset-users-mod must be at least 1")

    csv, facts, _ = behaviour_csv(args.rows, args.seed)
    work = Path(tempfile.mkdtemp(prefix="reclens-bench-seq-", dir=args.workdir))
    try:
        subset_csv = work / "subset.csv"
        target = str(subset_csv).replace("'", "''")
        duckdb.sql(
            f"""COPY (SELECT * FROM read_csv($path) WHERE user_id % {args.subset_users_mod} = 0)
                TO '{target}' (HEADER)""",
            params={"path": str(csv)},
        )
        db = work / "seq.duckdb"
        store = Store(db)
        log(f"setup: ingesting {args.rows:,} rows (untimed)")
        start = time.perf_counter()
        full = ingest(store, "bench", csv).summary()
        setup_s = time.perf_counter() - start
        sub = ingest(store, "bench-subset", subset_csv).summary()
        log(f"setup done in {setup_s:.1f} s; subset has {sub['events']:,} events")

        load_t, pad_t, total_t, cpu_t = [], [], [], []
        shape = None
        load_start = loadavg()
        for i in range(args.repeat):
            (padded, t_load, t_pad), _, t_cpu = cpu_timed(fast, store, "bench")
            cpu_t.append(t_cpu)
            shape = list(padded.shape)
            del padded
            load_t.append(t_load)
            pad_t.append(t_pad)
            total_t.append(t_load + t_pad)
            log(f"full run {i + 1}: load {t_load:.2f} s + padded {t_pad:.2f} s (cpu {t_cpu:.2f} s)")

        sub_fast_t, sub_naive_t = [], []
        identical = True
        for i in range(args.repeat):
            # Alternate the order so neither variant always runs on a warmer cache.
            variants = ("fast", "naive") if i % 2 == 0 else ("naive", "fast")
            results = {}
            for v in variants:
                if v == "fast":
                    p, t_load, t_pad = fast(store, "bench-subset")
                    sub_fast_t.append(t_load + t_pad)
                    results[v] = p
                else:
                    p, t = naive(store, "bench-subset")
                    sub_naive_t.append(t)
                    results[v] = p
            identical = identical and np.array_equal(results["fast"], results["naive"])
            log(f"subset run {i + 1}: fast {sub_fast_t[-1]:.2f} s, naive {sub_naive_t[-1]:.2f} s")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = summarise(total_t)
    naive_med = statistics.median(sub_naive_t)
    fast_med = statistics.median(sub_fast_t)
    report = {
        "benchmark": "sequences",
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "rows": args.rows,
        "max_len": MAX_LEN,
        "dataset": {
            "events": full["events"],
            "users": full["users"],
            "items": full["items"],
            "padded_shape": shape,
            "ingest_setup_s": round(setup_s, 2),
            "file": str(csv.relative_to(ROOT)),
        },
        "repeat": args.repeat,
        "load_sequences": summarise(load_t),
        "padded": summarise(pad_t),
        "total": {**total, "cpu_runs_s": [round(t, 3) for t in cpu_t]},
        "target_total_s": TARGET_S,
        "target_met": total["median_s"] < TARGET_S,
        "naive_comparison": {
            "what": (
                f"same subset dataset (users with id % {args.subset_users_mod} == 0, whole "
                "histories) through load_sequences+padded(200) vs pandas frame + value_counts "
                "vocabulary + sort + groupby(list) + Python padding loop; outputs checked equal"
            ),
            "subset_events": sub["events"],
            "subset_users": sub["users"],
            "fast": summarise(sub_fast_t),
            "naive": summarise(sub_naive_t),
            "speedup_median": round(naive_med / fast_med, 2),
            "outputs_identical": bool(identical),
            "naive_full_size_estimate_s": round(naive_med * full["events"] / sub["events"], 1),
            "naive_full_size_estimate_note": "linear scaling of the subset median; not measured",
        },
        "loadavg_1min": {"start": load_start, "end": loadavg()},
        "code": code_state(MEASURED_CODE),
        "machine": machine(duckdb=duckdb.__version__),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
