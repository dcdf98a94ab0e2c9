"""Who the figures hold for: evaluated users bucketed by the length of their input history
and by the popularity of their target, and the headline metrics per bucket.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data.splits import EvalSplit

HISTORY_BUCKETS = ((1, 1, "1"), (2, 4, "2–4"), (5, 9, "5–9"), (10, 19, "10–19"), (20, 49, "20–49"))
POPULARITY_BUCKETS = (
    (0.0, 0.01, "head (top 1%)"),
    (0.01, 0.1, "top 1–10%"),
    (0.1, 0.5, "top 10–50%"),
    (0.5, 1.01, "tail (bottom 50%)"),
)


def segment_labels(split: EvalSplit, item_count: np.ndarray) -> dict[str, np.ndarray]:
    """Bucket of every evaluated user by input-history length and by target popularity.

    Popularity buckets are by the target's rank among all items by training events
    (``unseen in training`` for items without any).
    """
    lengths = split.inputs.lengths[split.users]
    hist = np.full(len(lengths), "50+", dtype=object)
    for lo, hi, label in HISTORY_BUCKETS[::-1]:
        hist[(lengths >= lo) & (lengths <= hi)] = label
    n_items = split.inputs.n_items
    counts = np.asarray(item_count[1 : n_items + 1])
    order = np.argsort(-counts, kind="stable")
    rank_of = np.empty(n_items, dtype=np.int64)
    rank_of[order] = np.arange(n_items)
    frac = rank_of[split.targets - 1] / max(n_items, 1)
    pop = np.full(len(frac), "", dtype=object)
    for lo, hi, label in POPULARITY_BUCKETS:
        pop[(frac >= lo) & (frac < hi)] = label
    pop[counts[split.targets - 1] == 0] = "unseen in training"
    return {"history length": hist, "target popularity": pop}


def _bucket_order(segment: str) -> list[str]:
    """The buckets of ``segment`` in the order they are shown."""
    if segment == "history length":
        return [b[2] for b in HISTORY_BUCKETS] + ["50+"]
    return [b[2] for b in POPULARITY_BUCKETS] + ["unseen in training"]


def segment_figures(per_user: dict, segments: dict[str, np.ndarray], k: int) -> list[dict]:
    """NDCG@k, HR@k and MRR averaged over the users of each bucket of each segment.

    Args:
        per_user: per-user metrics (:func:`core.evaluation.accuracy.per_user_metrics`).
        segments: the users' buckets (:func:`segment_labels`).

    Returns:
        One row per non-empty bucket, in the buckets' order: segment, bucket, order, users
        and the three means.
    """
    rows = []
    frame = pd.DataFrame(
        {
            f"ndcg@{k}": per_user[f"ndcg@{k}"],
            f"hr@{k}": per_user[f"hr@{k}"],
            "mrr": per_user["mrr"],
            **segments,
        }
    )
    for segment in segments:
        grouped = frame.groupby(segment)[[f"ndcg@{k}", f"hr@{k}", "mrr"]]
        means, sizes = grouped.mean(), grouped.size()
        for order, bucket in enumerate(_bucket_order(segment)):
            if bucket in means.index:
                rows.append(
                    {
                        "segment": segment,
                        "bucket": bucket,
                        "order": order,
                        "users": int(sizes[bucket]),
                        **{c: float(means.at[bucket, c]) for c in means.columns},
                    }
                )
    return rows
