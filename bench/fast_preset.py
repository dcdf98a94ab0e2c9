"""Benchmark: the ``fast`` preset on the demo dataset, as the app's first start trains it.

    .venv/bin/python bench/fast_preset.py [--users N] [--text-encoder auto|none] [--compare]

Generates the demo dataset (3,000 users, 800 items by default) into a temporary
store and trains the ``fast`` preset on it with ``core.training.loop.train``, reporting wall
and process CPU seconds, the validation NDCG@10 of every epoch and the best one, and
a most-popular ranking's validation NDCG@10 on the same protocol. With ``--compare``
it also trains the preset's earlier settings (the same prefix attention, without the
items' own states trained on the next item) in the same run, so the two can be
compared on the same machine state. The best validation figure is
the model's as saved, with its transition memory when training kept one; the
Transformer's own is under ``transitions``. Text vectors are encoded
before the clock starts (the app caches them too). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from common import code_state, loadavg, log, machine  # noqa: E402

from core.data.demo import load_demo  # noqa: E402
from core.data.sequences import dataset_sequences  # noqa: E402
from core.data.splits import leave_one_out  # noqa: E402
from core.models.text import item_text_vectors  # noqa: E402
from core.store import Store  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.loop import train  # noqa: E402
from core.training.validation import ndcg_hr_at  # noqa: E402


def popularity_val_ndcg(seqs) -> float:
    """Validation NDCG@10 of most-popular (training counts, the user's items excluded)."""
    import numpy as np

    split = leave_one_out(seqs)
    pop = np.bincount(split.train.items, minlength=seqs.n_items + 2).astype(float)
    pop[0] = pop[-1] = -np.inf
    ranks = np.empty(len(split.val_users), dtype=np.int64)
    for row, (user, target) in enumerate(zip(split.val_users, split.val_targets, strict=True)):
        scores = pop.copy()
        scores[split.train.history(user)] = -np.inf
        ranks[row] = int((scores > pop[target]).sum())
    return ndcg_hr_at(ranks)[0]


def run(seqs, vectors, **overrides) -> dict:
    config = TrainConfig.from_preset("fast", **overrides)
    load = loadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(seqs, config, text_vectors=vectors)
    return {
        "settings": {
            "batch": config.batch,
            "lr": config.lr,
            "epochs": config.epochs,
            "attention": config.attention,
            "item_targets": config.item_targets,
            "next_item_share": config.next_item_share,
        },
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "val_ndcg@10_by_epoch": [round(h["val_ndcg@10"], 4) for h in result.history],
        "best_val_ndcg@10": round(result.best_val_ndcg10, 4),
        "transitions": {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in result.transitions.items()
            if k in ("kept", "alpha", "pairs", "val_ndcg@10", "val_ndcg@10_without")
        },
        "load_average": [load, loadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--text-encoder", default="auto")
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reclens-bench-fast-") as work:
        store = Store(os.path.join(work, "demo.duckdb"))
        load_demo(store, n_users=args.users)
        seqs = dataset_sequences(store, "demo")
        info = store.get_dataset("demo")
        vectors, encoder = item_text_vectors(
            store, info.dataset_id, list(seqs.item_ids), args.text_encoder
        )
        store.close()
        log(f"{seqs.n_users} users, {seqs.n_items} items, text encoder {encoder}")
        report = {
            "benchmark": "fast_preset",
            "machine": machine(),
            "code": code_state(["core/training/", "core/models/bert.py", "core/models/dropout.py"]),
            "data": {"users": seqs.n_users, "items": seqs.n_items, "events": len(seqs.items)},
            "text_encoder": encoder,
            "most_popular_val_ndcg@10": round(popularity_val_ndcg(seqs), 4),
            "fast": run(seqs, vectors, text_encoder=args.text_encoder),
        }
        log(f"fast: {report['fast']}")
        if args.compare:  # the preset before item targets (issue 14)
            report["earlier_fast"] = run(
                seqs, vectors, text_encoder=args.text_encoder, item_targets=False
            )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
