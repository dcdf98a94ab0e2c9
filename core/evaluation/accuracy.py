"""Accuracy metrics of a full ranking with one relevant item per user: HR, NDCG, MRR,
Recall and Precision at K.

Each is computed per user from two counts the ranking gives (:mod:`core.evaluation.ranking`):
``g`` items scored above the target and ``t`` other items tied with it. Ties are broken
uniformly at random, so a metric is its expectation over the ``t + 1`` equally likely
0-based positions ``g .. g + t`` of the target (a constant scorer gets chance-level
figures, not perfect ones). The beyond-accuracy family (coverage, novelty...) is in
:mod:`core.evaluation.beyond_accuracy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS: tuple[int, ...] = (1, 5, 10, 20, 50)


def _discounts(n: int) -> np.ndarray:
    """``C[m] = sum_{p < m} 1 / log2(p + 2)``, m = 0..n (prefix sums of NDCG discounts)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(n) + 2.0))])


def hit_rate(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user HR@k = P(target in the top k), ties broken uniformly at random.

    With ``g`` items scored above the target and ``t`` others tied with it, the
    target's 0-based position is uniform on ``g .. g + t``:
    ``HR@k = clip(k - g, 0, t + 1) / (t + 1)``.

    >>> hit_rate(np.array([0, 9, 10, 8]), np.array([0, 0, 0, 3]), 10).tolist()
    [1.0, 1.0, 0.0, 0.5]
    """
    g, t = np.asarray(greater, np.float64), np.asarray(ties, np.float64)
    return np.clip(k - g, 0, t + 1) / (t + 1)


def ndcg(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k with one relevant item: ``1 / log2(position + 2)`` inside the top k.

    The ideal DCG is 1 (the target first). With ties, the mean over the equally
    likely positions ``g .. g + t``:
    ``NDCG@k = (C[min(g + t + 1, k)] - C[min(g, k)]) / (t + 1)``, ``C`` the prefix sums
    of the discounts.

    >>> [round(float(x), 4) for x in ndcg(np.array([0, 1, 10, 0]), np.array([0, 0, 0, 1]), 10)]
    [1.0, 0.6309, 0.0, 0.8155]
    """
    g = np.asarray(greater, np.int64)
    t = np.asarray(ties, np.int64)
    c = _discounts(k)
    return (c[np.minimum(g + t + 1, k)] - c[np.minimum(g, k)]) / (t + 1)


def reciprocal_rank(greater: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Per-user reciprocal rank ``1 / (position + 1)`` over the full ranking (no cut-off).

    With ties, the mean over positions ``g .. g + t``: ``(H[g + t + 1] - H[g]) / (t + 1)``,
    ``H`` the harmonic numbers. MRR is its mean over users.

    >>> [round(float(x), 4) for x in reciprocal_rank(np.array([0, 3, 0]), np.array([0, 0, 1]))]
    [1.0, 0.25, 0.75]
    """
    g = np.asarray(greater, np.int64)
    t = np.asarray(ties, np.int64)
    top = int((g + t).max()) + 2 if len(g) else 1
    h = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, top + 1))])
    return (h[g + t + 1] - h[g]) / (t + 1)


def recall(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user Recall@k = |relevant in top k| / |relevant|; one relevant item, so HR@k.

    >>> recall(np.array([3]), np.array([0]), 5).tolist()
    [1.0]
    """
    return hit_rate(greater, ties, k)


def precision(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user Precision@k = |relevant in top k| / k; one relevant item, so HR@k / k.

    >>> precision(np.array([3]), np.array([0]), 5).tolist()
    [0.2]
    """
    return hit_rate(greater, ties, k) / k


def per_user_metrics(greater: np.ndarray, ties: np.ndarray, ks: Sequence[int] = KS) -> dict:
    """Every per-user ranking metric, keyed ``hr@10``, ``ndcg@10``, ..., ``mrr``.

    >>> m = per_user_metrics(np.array([0, 4]), np.array([0, 0]), ks=(5,))
    >>> list(m)
    ['hr@5', 'ndcg@5', 'recall@5', 'precision@5', 'mrr']
    >>> m["hr@5"].tolist(), m["precision@5"].tolist()
    ([1.0, 1.0], [0.2, 0.2])
    """
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hr = hit_rate(greater, ties, k)
        out[f"hr@{k}"] = hr
        out[f"ndcg@{k}"] = ndcg(greater, ties, k)
        out[f"recall@{k}"] = hr
        out[f"precision@{k}"] = hr / k
    out["mrr"] = reciprocal_rank(greater, ties)
    return out
