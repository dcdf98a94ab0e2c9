"""Beyond-accuracy metrics of the top-K lists: catalogue coverage, Gini of exposure,
novelty, average recommended popularity and intra-list diversity.

They read what was recommended (a ``(users, K)`` matrix of item indices, 0 for an empty
slot), not where the target landed; the accuracy family (HR, NDCG, MRR...) is in
:mod:`core.evaluation.accuracy`. Popularity is measured on the training data of the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

BEYOND_METRICS = ("coverage", "gini", "novelty", "diversity", "arp")


def coverage(top: np.ndarray, n_items: int) -> float:
    """Catalogue coverage: share of the ``n_items`` items in at least one user's list.

    >>> coverage(np.array([[1, 2], [2, 3]]), 10)
    0.3
    """
    return float(len(np.unique(top[top > 0]))) / max(n_items, 1)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure (0 = every item recommended equally often, 1 = one item
    takes all): ``sum_i (2i - n - 1) x_(i) / (n sum x)`` over counts sorted ascending.

    >>> gini(np.array([5, 5, 5, 5])), round(gini(np.array([0, 0, 0, 8])), 2)
    (0.0, 0.75)
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def exposure_gini(top: np.ndarray, n_items: int) -> float:
    """:func:`gini` of how often each of the ``n_items`` items (indices 1..n) is recommended:
    ``x_i = #{lists containing item i}``, items never recommended counting 0.

    >>> exposure_gini(np.array([[1, 2], [1, 2]]), 4)
    0.5
    """
    counts = np.bincount(top[top > 0].ravel(), minlength=n_items + 1)[1 : n_items + 1]
    return gini(counts)


def novelty(top: np.ndarray, item_users: np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2 p(i)`` of recommended items, in bits.

    ``p(i)`` is the share of training users who interacted with item ``i``; an item no
    training user had counts as one user (so its information is finite).

    >>> round(novelty(np.array([[1, 2]]), np.array([0, 4, 1]), 4), 3)
    1.0
    """
    p = np.maximum(np.asarray(item_users, np.float64), 1.0) / max(n_users, 1)
    items = top[top > 0]
    return float((-np.log2(p[items])).mean()) if len(items) else 0.0


def average_popularity(top: np.ndarray, item_count: np.ndarray) -> float:
    """Average recommended popularity (ARP): mean training event count of recommended items.

    >>> average_popularity(np.array([[1, 2]]), np.array([0, 10, 2]))
    6.0
    """
    items = top[top > 0]
    return float(np.asarray(item_count, np.float64)[items].mean()) if len(items) else 0.0


def intra_list_diversity(top: np.ndarray, features: np.ndarray) -> float:
    """Mean over users of the average pairwise ``1 - cosine`` of the listed items' features.

    Features are category indicator vectors (or text embeddings), normalised; an item
    without features is a zero vector, dissimilar to everything. With unit vectors
    ``e_1..e_K`` the mean pairwise cosine is ``(|sum e|^2 - sum |e|^2) / (K (K - 1))``,
    so no K x K matrix is formed.

    >>> f = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=float)
    >>> intra_list_diversity(np.array([[1, 2]]), f), intra_list_diversity(np.array([[1, 3]]), f)
    (0.0, 1.0)
    """
    k = top.shape[1]
    if k < 2 or len(top) == 0:
        return 0.0
    feats = torch.as_tensor(features, dtype=torch.float32)
    norms = feats.norm(dim=1, keepdim=True)
    feats = torch.where(norms > 0, feats / norms.clamp_min(1e-12), feats)
    total = 0.0
    for start in range(0, len(top), 4096):
        e = feats[torch.as_tensor(top[start : start + 4096], dtype=torch.long)]
        summed = e.sum(1).pow(2).sum(1)
        self_sim = e.pow(2).sum((1, 2))
        total += float((1.0 - (summed - self_sim) / (k * (k - 1))).sum())
    return total / len(top)


def list_metrics(
    top: np.ndarray,
    ks: Sequence[int],
    *,
    n_items: int,
    item_count: np.ndarray,
    item_users: np.ndarray,
    n_users: int,
    features: np.ndarray | None = None,
) -> dict[str, float]:
    """Every beyond-accuracy metric of the first k items of each list, for every k in ``ks``.

    Args:
        top: (users, max K) recommended item indices, best first (0 = no item).
        n_items: items in the catalogue (for coverage and exposure).
        item_count: (n_items + 2,) training events per item (popularity, for ARP).
        item_users: (n_items + 2,) training users per item (for novelty).
        n_users: training users (for novelty).
        features: (n_items + 2, d) item features for diversity, or None (then no diversity).

    Returns:
        ``{"coverage@k", "gini@k", "novelty@k", "arp@k"[, "diversity@k"]}`` for each k.

    >>> counts, users = np.array([0, 10, 2, 0]), np.array([0, 2, 1, 0])
    >>> list_metrics(np.array([[1, 2]]), (2,), n_items=2, item_count=counts, item_users=users,
    ...              n_users=2)
    {'coverage@2': 1.0, 'gini@2': 0.0, 'novelty@2': 0.5, 'arp@2': 6.0}
    """
    out: dict[str, float] = {}
    for k in ks:
        head = top[:, :k]
        out[f"coverage@{k}"] = coverage(head, n_items)
        out[f"gini@{k}"] = exposure_gini(head, n_items)
        out[f"novelty@{k}"] = novelty(head, item_users, n_users)
        out[f"arp@{k}"] = average_popularity(head, item_count)
        if features is not None:
            out[f"diversity@{k}"] = intra_list_diversity(head, features)
    return out
