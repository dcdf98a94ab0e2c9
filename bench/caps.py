"""Benchmark: how fast a file beyond the caps is refused, and what the check costs a
file within them.

    .venv/bin/python bench/caps.py [--lines N]

Writes, in a temporary folder: a gzip "bomb" of ``user,item`` rows that expands past
the 200-million-line cap (about 6 MB on disk, 6.3 GB expanded), a Parquet file of
300 million rows (under a megabyte: one repeated row), and a plain CSV of ``--lines``
rows within the caps. Times :func:`core.data.sources.detect_source` (the pass that runs
before DuckDB reads anything) on each at the default caps, and for the plain file
also DuckDB's own full read (``SELECT count(*) FROM read_csv``) for scale. Prints
one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - puts the repository root on sys.path
import duckdb
import numpy as np

from core.data.mapping import IngestError
from core.data.sources import Limits, detect_source


def _timed(fn) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        fn()
        outcome = "accepted"
    except IngestError as exc:
        outcome = str(exc)
    return round(time.perf_counter() - started, 3), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    args = parser.parse_args()
    limits = Limits()
    out: dict = {"caps": {"max_bytes": limits.max_bytes, "max_rows": limits.max_rows}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bomb = folder / "bomb.csv.gz"
        common.log("writing the gzip bomb")
        with gzip.open(bomb, "wb", compresslevel=9) as fh:
            fh.write(b"user,item\n")
            block = b"1,2\n" * (1 << 18)
            for _ in range(6000):
                fh.write(block)
        huge = folder / "huge.parquet"
        common.log("writing the Parquet file")
        with duckdb.connect() as con:
            con.execute(
                "COPY (SELECT 'u' AS user_id, 'i' AS item_id FROM range(300000000)) "
                f"TO '{huge}' (FORMAT parquet)"
            )
        plain = folder / "plain.csv"
        common.log(f"writing {args.lines:,} plain rows")
        rng = np.random.default_rng(0)
        users = rng.integers(0, 100_000, args.lines)
        items = rng.integers(0, 50_000, args.lines)
        with open(plain, "w") as fh:
            fh.write("user_id,item_id\n")
            for start in range(0, args.lines, 1_000_000):
                stop = start + 1_000_000
                part = zip(users[start:stop], items[start:stop], strict=True)
                fh.write("".join(f"{u},{i}\n" for u, i in part))
        for name, path in (("gzip_bomb", bomb), ("huge_parquet", huge), ("plain_csv", plain)):
            common.log(f"checking {name}")
            seconds, outcome = _timed(lambda p=path: detect_source(p, limits=limits))
            out[name] = {"bytes": path.stat().st_size, "check_s": seconds, "outcome": outcome}
        started = time.perf_counter()
        with duckdb.connect() as con:
            con.execute(f"SELECT count(*) FROM read_csv('{plain}')").fetchone()
        out["plain_csv"]["duckdb_read_s"] = round(time.perf_counter() - started, 3)
        out["plain_csv"]["check_share_of_read"] = round(
            out["plain_csv"]["check_s"] / out["plain_csv"]["duckdb_read_s"], 3
        )
    out["machine"] = common.machine()
    out["code"] = common.code_state(["core/data/sources.py"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
