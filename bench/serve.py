"""Benchmark: serving a trained preference model on Amazon Beauty (CPU).

    .venv/bin/python bench/serve.py [--data PATH] [--model DIR] [--epochs N] [--time-budget S]
                                    [--requests N] [--k K] [--threads T]

Loads ``beauty.txt`` (``user item``, space-delimited, no header, file order = time;
40,226 users, 54,542 items) into a temporary store with ``core.data.ingest.ingest``,
trains a small model in the ``fast`` preset's shape (no text; ``--epochs 1`` and a
``--time-budget``, default 120 s: quality is not the point here) unless ``--model``
names a trained model directory of that file, then measures:

* **single-user top-10 latency**, warm, on the CPU: ``core.serving.recommend.recommend``
  for ``--requests`` random users (history already in memory), after 20 warm-up
  calls; p50/p95/mean in milliseconds. Also the same with the user's history read
  from the database first (``Store.user_history``), as the CLI does;
* **all users' interest vectors**: ``core.serving.interests.all_interest_vectors`` computing
  and caching every vector in DuckDB, then reading them back from the cache;
* **top-20 export of every user**: ``core.serving.exports.export_top_k`` to Parquet (seen
  items excluded), rows and seconds.

Targets (issue 5, 2 CPU cores): p50 under 15 ms; the whole Beauty export under 60 s.
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, code_state, ingest_beauty, loadavg, log  # noqa: E402  (bench/common.py)
from common import machine as machine_facts  # noqa: E402

from core.models.registry import resolve_model  # noqa: E402
from core.serving import interests  # noqa: E402
from core.serving.exports import export_top_k  # noqa: E402
from core.serving.model_data import load_model_data  # noqa: E402
from core.serving.recommend import recommend  # noqa: E402
from core.store import Store  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.runs import train_dataset  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "amazon-beauty" / "beauty.txt"
MEASURED_CODE = (
    "core/serving/",
    "core/models/bert.py",
    "core/models/dropout.py",
    "core/models/inputs.py",
    "core/store/",
)
TARGETS = {"p50_ms": 15.0, "export_s": 60.0}


def r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def percentiles(values_s: list[float]) -> dict:
    ms = np.asarray(values_s) * 1000
    return {
        "p50_ms": r(np.percentile(ms, 50)),
        "p95_ms": r(np.percentile(ms, 95)),
        "mean_ms": r(ms.mean()),
        "max_ms": r(ms.max()),
        "requests": len(ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="beauty.txt")
    parser.add_argument("--model", type=Path, help="a trained model directory (skip training)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--time-budget", type=float, default=120.0, help="training seconds")
    parser.add_argument("--requests", type=int, default=300, help="timed single-user calls")
    parser.add_argument("--k", type=int, default=20, help="export: items per user")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="temporary folder parent")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data} not found (the shared datasets live in ../shared/datasets)")
    if args.threads:
        torch.set_num_threads(args.threads)

    load_start = loadavg()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="reclens-bench-serve-", dir=args.workdir))
    report: dict = {"benchmark": "serve"}
    try:
        store = Store(work / "bench.duckdb")
        t0 = time.perf_counter()
        ingest_beauty(store, args.data)
        info = store.get_dataset("beauty")
        report["dataset"] = {
            "file": str(args.data),
            "users": int(info.n_users),
            "items": int(info.n_items),
            "events": int(info.n_events),
            "ingest_s": r(time.perf_counter() - t0, 2),
        }
        log(f"ingested {info.n_events:,} events in {report['dataset']['ingest_s']} s")

        if args.model:
            saved_dir = args.model
            store.register_model("bench-serve", "beauty", str(saved_dir), {}, {})
            report["model"] = {"path": str(saved_dir), "trained_here": False}
        else:
            config = TrainConfig.from_preset(
                "fast",
                epochs=args.epochs,
                time_budget=args.time_budget,
                text_encoder="none",
                seed=args.seed,
            )
            log(f"training: {args.epochs} epoch(s), at most {args.time_budget:.0f} s")
            t0 = time.perf_counter()
            model_info, result = train_dataset(
                store, "beauty", config, name="bench-serve", out_dir=work / "model"
            )
            report["model"] = {
                "trained_here": True,
                "train_s": r(time.perf_counter() - t0, 1),
                "val_ndcg@10": r(result.best_val_ndcg10, 4),
                "config": {
                    k: v
                    for k, v in config.to_dict().items()
                    if k in ("max_len", "hidden", "layers", "heads", "epochs", "time_budget")
                },
            }
        t0 = time.perf_counter()
        saved = resolve_model(store, "bench-serve")
        data = load_model_data(store, saved)
        report["load_s"] = r(time.perf_counter() - t0, 2)
        report["model"]["loss"] = saved.training.loss_mode
        report["model"]["items"] = saved.config.n_items
        report["model"]["transition_pairs"] = saved.config.transitions  # 0 = no memory
        log(f"model and histories loaded in {report['load_s']} s")

        # ---- single-user top-10, warm
        rng = np.random.default_rng(args.seed)
        users = rng.choice(data.histories.n_users, size=args.requests + 20, replace=True)
        ids = [str(data.histories.user_ids[u]) for u in users]
        histories = [data.history_ids(u) for u in ids]
        for h in histories[:20]:
            recommend(saved, h, 10)
        times = []
        for h in histories[20:]:
            t0 = time.perf_counter()
            recommend(saved, h, 10)
            times.append(time.perf_counter() - t0)
        single = percentiles(times)
        times_db = []
        for u in ids[20:]:
            t0 = time.perf_counter()
            recommend(saved, store.user_history(data.dataset_id, u), 10)
            times_db.append(time.perf_counter() - t0)
        report["single_user_top10"] = {
            "what": "recommend(saved, history, 10): encode, one forward pass, full softmax "
            "over all items, seen items excluded, top-10; history already in memory",
            **single,
            "with_history_from_db": percentiles(times_db),
            "mean_history_length": r(np.mean([len(h) for h in histories[20:]]), 1),
        }
        log(f"single user top-10: p50 {single['p50_ms']} ms, p95 {single['p95_ms']} ms")

        # ---- all users' interest vectors (compute + cache, then read the cache)
        t0 = time.perf_counter()
        vectors = interests.all_interest_vectors(store, data)
        compute_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = interests.all_interest_vectors(store, data)
        read_s = time.perf_counter() - t0
        assert again.cached and again.matrix.shape == vectors.matrix.shape
        report["interest_vectors"] = {
            "users": int(len(vectors.user_ids)),
            "dim": int(vectors.matrix.shape[1]),
            "compute_and_cache_s": r(compute_s, 2),
            "read_from_cache_s": r(read_s, 2),
        }
        log(f"interest vectors: {compute_s:.1f} s (cache read {read_s:.2f} s)")

        # ---- top-K export of every user
        out = work / f"top{args.k}.parquet"
        t0 = time.perf_counter()
        c0 = time.process_time()
        result = export_top_k(data, out, k=args.k)
        export_s = time.perf_counter() - t0
        report["export"] = {
            "what": f"top-{args.k} of every user, seen items excluded, scores = softmax "
            "probabilities, written to Parquet (user_id, rank, item_id, score)",
            "rows": result["rows"],
            "users": result["users"],
            "seconds": r(export_s, 2),
            "cpu_seconds": r(time.process_time() - c0, 2),
            "file_mb": r(out.stat().st_size / 2**20, 2),
        }
        log(f"export: {result['rows']:,} rows in {export_s:.1f} s")
        report["all_users_vectors_plus_export_s"] = r(compute_s + export_s, 2)
        report["targets"] = {
            **TARGETS,
            "p50_met": single["p50_ms"] < TARGETS["p50_ms"],
            "export_met": export_s < TARGETS["export_s"],
        }
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report.update(
        {
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "total_s": r(time.perf_counter() - started, 1),
            "loadavg_1min": {"start": load_start, "end": loadavg()},
            "code": code_state(MEASURED_CODE),
            "machine": machine_facts(
                torch=torch.__version__,
                torch_threads=torch.get_num_threads(),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                device="cpu",
            ),
        }
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
