"""Benchmark: building the shareable HTML report (core.reports.page) of a stored dataset.

    .venv/bin/python bench/report.py --db PATH --dataset NAME [--model NAME]
                                     [--evaluation RUN_ID] [--users U1,U2] [--repeat R]
                                     [--out FILE.html] [--read-only]

Opens the database ``--db`` (no copy: the report only reads, except that the first
build caches every user's interest vector when no cache exists yet; ``--read-only``
opens it without the write lock and then caches nothing), then times
:func:`core.reports.page.write_report` ``--repeat`` times (default 2): the first build may
compute the interest vectors, the later ones read them from the cache, as a report
made after the Interests page was opened does. Nothing is trained or evaluated.

Prints one JSON object on stdout: ``seconds`` (the last build), ``first_seconds``,
``cpu_seconds`` (the last build), ``bytes`` (the file), ``figures``, the dataset's
size (users, items, events), whether the interest vectors were cached before the first
build, the machine, the load average at start and end and the code measured; progress
goes to stderr. The file is written to ``--out`` when given, else to a temporary folder
removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import code_state, loadavg, log  # noqa: E402  (bench/common.py)
from common import machine as machine_facts  # noqa: E402

from core.reports.page import write_report  # noqa: E402
from core.store import Store  # noqa: E402

MEASURED_CODE = (
    "core/reports/page.py",
    "core/reports/markup.py",
    "core/reports/users.py",
    "core/reports/charts.py",
    "core/serving/",
    "core/store/",
)


def r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def vectors_cached(store: Store, model: str | None) -> bool | None:
    """Whether the model's interest vectors are in the cache already (None: no model)."""
    if model is None:
        return None
    from core.models.registry import resolve_model
    from core.serving import interests
    from core.serving.model_data import load_model_data

    data = load_model_data(store, resolve_model(store, model))
    return store.vector_matrix(interests.KIND, data.owner) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a RecLens database file")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", help="a registered model name (or a model directory)")
    parser.add_argument("--evaluation", help="a stored evaluation run id (default: the latest)")
    parser.add_argument("--users", help="U1,U2,...: example users (default: one per segment)")
    parser.add_argument("--repeat", type=int, default=2, help="builds timed (default 2)")
    parser.add_argument("--out", type=Path, help="keep the report here (default: temporary)")
    parser.add_argument("--read-only", action="store_true", help="open without the write lock")
    args = parser.parse_args(argv)
    if not args.db.exists():
        parser.error(f"{args.db} not found")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None

    load_start = loadavg()
    work = Path(tempfile.mkdtemp(prefix="reclens-bench-report-"))
    out = args.out or work / "report.html"
    report: dict = {"benchmark": "report"}
    store = Store(args.db, read_only=args.read_only)
    try:
        info = store.get_dataset(args.dataset)
        report["dataset"] = {
            "name": info.name,
            "users": int(info.n_users),
            "items": int(info.n_items),
            "events": int(info.n_events),
        }
        report["model"] = args.model
        report["vectors_cached_before"] = vectors_cached(store, args.model)
        runs = []
        for n in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            summary = write_report(store, args.dataset, args.model, args.evaluation, users, out=out)
            runs.append((time.perf_counter() - t0, time.process_time() - c0))
            log(f"build {n + 1}/{args.repeat}: {runs[-1][0]:.2f} s, {summary['bytes']:,} bytes")
        report.update(
            {
                "seconds": r(runs[-1][0], 2),
                "first_seconds": r(runs[0][0], 2),
                "cpu_seconds": r(runs[-1][1], 2),
                "all_seconds": [r(s, 2) for s, _ in runs],
                "bytes": summary["bytes"],
                "figures": summary["figures"],
                "evaluation": summary["evaluation"],
                "out": str(args.out) if args.out else None,
            }
        )
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    report["machine"] = machine_facts(read_only=args.read_only)
    report["load_avg"] = {"start": load_start, "end": loadavg()}
    report["code"] = code_state(MEASURED_CODE)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
