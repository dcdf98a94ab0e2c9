"""Honest offline evaluation: splits, full-ranking metrics, beyond accuracy, significance.

The protocol (shared by the app, the CLI, the tests and the benchmarks):

* **Splits.** Leave-one-out (default): per user the last item is the test target;
  the one before it is the validation target of a fixed sample of users (all of them
  up to 2,000; :func:`core.data.splits.validation_users`) and training data for the rest;
  everything earlier is what every model may learn from (exactly
  :func:`core.data.splits.leave_one_out`'s training part). Users with fewer than 3 events
  are not evaluated (their last item is training data). Global
  temporal split: everything before a cut-off time is training data, and each user
  with events on both sides is tested on their first item after it.
* **Full ranking.** The target is ranked against every item; by default the items
  of the user's input history are left out of the ranking (``exclude_seen``).
  *Sampled* ranking (the target against N negatives drawn uniformly or by
  popularity, as in many papers) is computed only when asked and always labelled.
* **Ties** are handled exactly: when ``t`` other items share the target's score
  and ``g`` score higher, every metric is its expectation over the ``t + 1``
  equally likely positions ``g .. g + t`` (a constant scorer gets chance-level
  figures, not perfect ones). Every scorer's ties are counted, the neural models'
  too: items they cannot tell apart (never seen in training, they start alike)
  score exactly alike.
* **Every scorer ranks the same way** (:class:`Scorer`): a batch of histories in,
  a (batch, n_items + 2) score matrix out; the evaluation loop sets excluded
  columns to ``-inf``, counts items above the target by comparison and takes
  ``topk`` for the beyond-accuracy metrics, a batch of users at a time.
* **Uncertainty.** 95 % confidence intervals by a Poisson bootstrap over users
  (each user weighted by a Poisson(1) draw per resample, 1,000 resamples);
  significance of each model against the best baseline by a paired sign-flip
  permutation test on per-user NDCG@K (two-sided, 2,000 flips).

Results are stored in DuckDB (``evaluations``, one row per model or baseline, the
rows of one run sharing ``settings.run_id``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.data.sequences import Sequences, dataset_sequences
from core.data.splits import EvalSplit, event_times, make_split
from core.evaluation.baselines import EASE_MAX_ITEMS, fit_baselines, sasrec_config
from core.models.registry import model_dataset, resolve_model
from core.models.scoring import ModelScorer, Scorer
from core.store import ProgressFn

KS: tuple[int, ...] = (1, 5, 10, 20, 50)
RANK_METRICS = ("hr", "ndcg", "recall", "precision")
BEYOND_METRICS = ("coverage", "gini", "novelty", "diversity", "arp")
METRIC_LABELS = {
    "hr": "HR",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "recall": "Recall",
    "precision": "Precision",
    "coverage": "Catalogue coverage",
    "gini": "Gini of exposure",
    "novelty": "Novelty (bits)",
    "diversity": "Intra-list diversity",
    "arp": "Avg. recommended popularity",
}


# --------------------------------------------------------------------------- metrics


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
    """Every per-user ranking metric, keyed ``hr@10``, ``ndcg@10``, ..., ``mrr``."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hr = hit_rate(greater, ties, k)
        out[f"hr@{k}"] = hr
        out[f"ndcg@{k}"] = ndcg(greater, ties, k)
        out[f"recall@{k}"] = hr
        out[f"precision@{k}"] = hr / k
    out["mrr"] = reciprocal_rank(greater, ties)
    return out


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
    """:func:`gini` of how often each of the ``n_items`` items (indices 1..n) is recommended."""
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


# --------------------------------------------------------------------------- ranking


@dataclass
class Ranked:
    """What ranking one scorer produced for every evaluated user.

    Attributes:
        greater, ties: (n,) items scored above / tied with the target (full ranking).
        top: (n, max K) recommended item indices, best first (exclusions applied).
        sampled_greater, sampled_ties: the same among the sampled negatives, or None.
        seconds: wall time of the ranking.
    """

    greater: np.ndarray
    ties: np.ndarray
    top: np.ndarray
    sampled_greater: np.ndarray | None = None
    sampled_ties: np.ndarray | None = None
    seconds: float = 0.0


def _rows_and_cols(inputs: Sequences, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in batch, item) of every event of the given users' input histories."""
    starts, ends = inputs.offsets[users], inputs.offsets[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, inputs.items[np.repeat(starts, lengths) + within].astype(np.int64)


@torch.no_grad()
def rank(
    scorer: Scorer,
    split: EvalSplit,
    *,
    max_k: int = max(KS),
    exclude_seen: bool = True,
    sampled: int = 0,
    sampling: str = "popularity",
    popularity: np.ndarray | None = None,
    batch: int = 1024,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Ranked:
    """Rank every evaluated user's target with ``scorer`` (batched, no loop over users).

    Args:
        max_k: length of the top-K lists kept.
        exclude_seen: leave the items of the input history out of the ranking.
        sampled: also rank the target against this many sampled negatives (0 = no).
        sampling: ``popularity`` (proportional to training events) or ``uniform``.
        popularity: (n_items + 2,) training event counts (for popularity sampling).
        batch: users per score matrix.
    """
    started = time.perf_counter()
    n_vocab = split.inputs.n_items + 2
    users, targets = split.users, split.targets
    n = len(users)
    max_k = min(max_k, split.inputs.n_items)
    # Shortest histories first: a neural scorer then trims padding per batch.
    lengths = np.minimum(split.inputs.lengths[users], scorer.history_len)
    order = np.argsort(lengths, kind="stable")
    greater = np.zeros(n, dtype=np.int64)
    ties = np.zeros(n, dtype=np.int64)
    top = np.zeros((n, max_k), dtype=np.int64)
    s_greater = np.zeros(n, dtype=np.int64) if sampled else None
    s_ties = np.zeros(n, dtype=np.int64) if sampled else None
    generator = torch.Generator().manual_seed(seed)
    if sampled:
        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"unknown sampling {sampling!r}: choose popularity or uniform")
        weights = (
            np.ones(n_vocab)
            if sampling == "uniform"
            else np.asarray(popularity, dtype=np.float64).copy()
        )
        weights[0] = weights[-1] = 0
        draw = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
        n_draw = 2 * sampled + 20  # candidates per user; seen items and repeats are dropped
    for start in range(0, n, batch):
        rows = order[start : start + batch]
        who = users[rows]
        hist = torch.as_tensor(split.inputs.padded(scorer.history_len, who), dtype=torch.long)
        scores = scorer.score(hist)
        device = scores.device
        tgt = torch.as_tensor(targets[rows], device=device)
        target_score = scores.gather(1, tgt[:, None])
        # Columns that are not ranked: padding, mask and (if asked) the history's items.
        # The target itself is set aside by index so that it never counts as a tie.
        scores[:, 0] = float("-inf")
        scores[:, -1] = float("-inf")
        if exclude_seen:
            r, c = _rows_and_cols(split.inputs, who)
            scores[torch.as_tensor(r, device=device), torch.as_tensor(c, device=device)] = float(
                "-inf"
            )
        scores.scatter_(1, tgt[:, None], float("-inf"))
        # int32 sums: the bool -> int64 path is several times slower on a CPU.
        g = (scores > target_score).sum(1, dtype=torch.int32)
        t = (scores == target_score).sum(1, dtype=torch.int32)
        greater[rows] = g.cpu().numpy()
        ties[rows] = t.cpu().numpy()
        if sampled:
            # Negatives drawn by weight, without the user's items, the target or repeats:
            # the first ``sampled`` valid ones of each row's candidates.
            cand, repeat = _draw_negatives(draw, len(rows), n_draw, generator)
            cand = cand.to(device)
            neg_scores = scores.gather(1, cand)
            valid = (neg_scores > float("-inf")) & ~repeat.to(device)
            valid &= valid.cumsum(1) <= sampled
            s_greater[rows] = ((neg_scores > target_score) & valid).sum(1).cpu().numpy()
            s_ties[rows] = ((neg_scores == target_score) & valid).sum(1).cpu().numpy()
        # The target competes in the top-K lists again (with its own score).
        scores.scatter_(1, tgt[:, None], target_score)
        best, idx = torch.topk(scores, max_k, dim=1)
        idx[best == float("-inf")] = 0  # a slot only excluded items could fill: no item
        top[rows] = idx.cpu().numpy()
        if progress:
            progress(min(1.0, (start + len(rows)) / max(n, 1)), f"{scorer.name}: ranking")
    return Ranked(greater, ties, top, s_greater, s_ties, time.perf_counter() - started)


def _draw_negatives(
    draw: torch.Tensor, n_rows: int, n_draw: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_rows, n_draw) candidate negatives drawn by ``draw`` and a mask of repeats
    (every later copy of an item already drawn in its row)."""
    cand = torch.multinomial(draw, n_rows * n_draw, replacement=True, generator=generator)
    cand = cand.view(n_rows, n_draw)
    ordered, where = cand.sort(dim=1, stable=True)
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return cand, torch.zeros_like(repeat).scatter_(1, where, repeat)


# --------------------------------------------------------------------------- uncertainty


_POISSON_CDF = torch.tensor(
    [sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) for k in range(16)]
)


def poisson_weights(n_boot: int, n: int, seed: int = 0) -> torch.Tensor:
    """(n_boot, n) float32 Poisson(1) counts, drawn by inverting the CDF of uniforms
    (several times faster than ``torch.poisson``)."""
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty(n_boot, n)
    chunk = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        u = torch.rand(min(chunk, n_boot - start), n, generator=generator)
        out[start : start + chunk] = torch.bucketize(u, _POISSON_CDF, right=True)
    return out


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    weights: torch.Tensor | None = None,
) -> np.ndarray:
    """Percentile confidence intervals of column means by a Poisson bootstrap over users.

    Each resample weights every user by an independent Poisson(1) count (a close,
    vectorisable stand-in for drawing n users with replacement); the resampled mean
    is ``sum(w * x) / sum(w)``.

    Args:
        values: (n_users, n_metrics) per-user values.
        weights: precomputed :func:`poisson_weights` (n_boot, n_users), shared by every
            scorer of a run (then the intervals are paired too); None draws them here.

    Returns:
        (n_metrics, 2) lower and upper bounds.

    >>> lo, hi = bootstrap_ci(np.ones((50, 1)))[0]
    >>> float(lo), float(hi)
    (1.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if len(values) == 0:
        return np.zeros((values.shape[1], 2))
    if weights is None:
        weights = poisson_weights(n_boot, len(values), seed)
    x = torch.as_tensor(values, dtype=torch.float32)
    boot = ((weights @ x) / weights.sum(1, keepdim=True).clamp_min(1)).double().numpy()
    alpha = (1 - level) / 2
    return np.stack(np.quantile(boot, [alpha, 1 - alpha], axis=0), axis=1)


def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, n_perm: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value that per-user values ``a`` and ``b`` have the same mean.

    Sign-flip permutation test on the paired differences ``d = a - b``: under the
    null hypothesis each ``d_i`` is as likely to be ``-d_i``, so
    ``p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_perm)`` over random signs ``s``.

    >>> paired_permutation_test(np.ones(200), np.zeros(200)) < 0.01
    True
    >>> paired_permutation_test(np.ones(5), np.ones(5))
    1.0
    """
    d = torch.as_tensor(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if len(d) == 0:
        return 1.0
    observed = float(d.mean().abs())
    if observed == 0.0:
        return 1.0
    generator = torch.Generator().manual_seed(seed)
    extreme = 0
    chunk = max(1, min(n_perm, 4_000_000 // len(d)))
    for done in range(0, n_perm, chunk):
        m = min(chunk, n_perm - done)
        signs = torch.randint(0, 2, (m, len(d)), generator=generator, dtype=torch.float64) * 2 - 1
        flipped = (signs @ d).abs() / len(d)
        extreme += int((flipped >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + n_perm)


# --------------------------------------------------------------------------- the run


@dataclass
class EvalConfig:
    """Settings of an evaluation run.

    Args:
        split (str): ``loo`` (default) or ``time``.
        k (int): the K of headline figures, segments and the significance test.
        exclude_seen (bool): leave the user's history out of the ranking (default).
        sampled (int): also report sampled-negative metrics against this many negatives.
        sampling (str): ``popularity`` or ``uniform`` negatives.
        batch (int): users per score matrix.
        bootstrap (int): bootstrap resamples for the confidence intervals.
        permutations (int): sign flips of the significance test.
        seed (int): seeds sampling, bootstrap and permutations.
    """

    split: str = "loo"
    k: int = 10
    exclude_seen: bool = True
    sampled: int = 0
    sampling: str = "popularity"
    batch: int = 1024
    bootstrap: int = 1000
    permutations: int = 2000
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """The results of one run: settings, metrics per scorer, segments, per-user NDCG.

    ``results[name]`` maps metric keys (``ndcg@10``, ``hr@10``, ``mrr``, ``coverage@10``...)
    to values, ``ci`` to ``{metric: [low, high]}``, ``sampled`` to sampled-ranking
    metrics (when asked), ``kind`` to ``model`` or ``baseline``, ``significance`` (models
    only) to the test against the best baseline.
    """

    settings: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    per_user: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"settings": ..., "results": ...}`` (what ``evaluate --json`` prints)."""
        return {"settings": self.settings, "results": self.results}

    # ---- frames for tables and charts

    def table(self, k: int | None = None) -> pd.DataFrame:
        """One row per scorer: headline metrics at ``k`` with 95 % CIs and significance."""
        k = k or self.settings["k"]
        rows = []
        for name, res in self.results.items():
            row: dict[str, Any] = {"name": name, "kind": res.get("kind", "")}
            for metric in (f"ndcg@{k}", f"hr@{k}", "mrr", f"recall@{k}", f"precision@{k}"):
                row[metric] = res.get(metric)
                lo, hi = res.get("ci", {}).get(metric, (None, None))
                row[f"{metric} low"], row[f"{metric} high"] = lo, hi
            for metric in BEYOND_METRICS:
                row[f"{metric}@{k}"] = res.get(f"{metric}@{k}")
            for key, value in res.get("sampled", {}).items():
                if key.endswith(f"@{k}") or key == "mrr":
                    row[f"sampled {key}"] = value
            sig = res.get("significance")
            row["vs best baseline"] = significance_label(sig)
            row["users"] = res.get("users")
            row["seconds"] = res.get("seconds")
            rows.append(row)
        return pd.DataFrame(rows)

    def long_frame(self) -> pd.DataFrame:
        """Every ranking metric at every K: name, kind, metric, k, value, low, high, ranking."""
        rows = []

        def row(name, res, key, value, low, high, ranking) -> dict:
            metric, _, k = key.partition("@")
            kind = res.get("kind", "")
            k = int(k) if k else None
            return dict(
                name=name,
                kind=kind,
                metric=metric,
                k=k,
                value=value,
                low=low,
                high=high,
                ranking=ranking,
            )

        for name, res in self.results.items():
            for key, value in res.items():
                if not isinstance(value, int | float) or key in ("users", "seconds", "fit_seconds"):
                    continue
                lo, hi = res.get("ci", {}).get(key, (value, value))
                rows.append(row(name, res, key, value, lo, hi, "full"))
            for key, value in res.get("sampled", {}).items():
                rows.append(row(name, res, key, value, value, value, "sampled"))
        return pd.DataFrame(
            rows, columns=["name", "kind", "metric", "k", "value", "low", "high", "ranking"]
        )

    def segment_frame(self) -> pd.DataFrame:
        """Per-segment figures: name, segment, bucket, order, users, and metric columns."""
        rows = [{"name": name, **row} for name, seg in self.segments.items() for row in seg or []]
        return pd.DataFrame(rows)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> Evaluation:
        """Rebuild a stored run from :meth:`core.store.Store.list_evaluations` rows."""
        rows = sorted(rows, key=lambda r: r["settings"].get("order", 0))
        settings = {
            k: v for k, v in rows[0]["settings"].items() if k not in ("order", "kind", "scorer")
        }
        ev = cls(settings)
        for row in rows:
            ev.results[row["model_name"]] = row["metrics"]
            ev.segments[row["model_name"]] = row["segments"] or []
        return ev


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
    if segment == "history length":
        return [b[2] for b in HISTORY_BUCKETS] + ["50+"]
    return [b[2] for b in POPULARITY_BUCKETS] + ["unseen in training"]


def evaluate(
    scorers: Sequence[Scorer],
    split: EvalSplit,
    config: EvalConfig | None = None,
    *,
    models: Sequence[str] = (),
    item_features: np.ndarray | None = None,
    diversity_basis: str | None = None,
    notes: Sequence[str] = (),
    extra_settings: dict | None = None,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Rank, score and compare every scorer on the same split.

    Args:
        scorers: our models and the baselines (see :class:`Scorer`).
        split: from :func:`make_split`.
        models: names of the scorers that are models (the rest are baselines); each is
            tested against the best baseline (highest NDCG@K).
        item_features: (n_items + 2, d) features for intra-list diversity, or None.
        diversity_basis: ``category`` or ``text embedding`` (for labels).
        notes: messages for the settings (skipped baselines...).
        progress: ``progress(fraction, message)``.
    """
    config = config or EvalConfig()
    say = progress or (lambda f, m: None)
    n_items = split.inputs.n_items
    item_count = np.bincount(split.fit.items, minlength=n_items + 2).astype(np.float64)
    item_count[0] = item_count[-1] = 0
    # Users per item (not events): self-information counts users.
    pairs = np.unique(
        np.repeat(np.arange(split.fit.n_users), split.fit.lengths).astype(np.int64) * (n_items + 2)
        + split.fit.items
    )
    item_users = np.bincount(pairs % (n_items + 2), minlength=n_items + 2)
    n_fit_users = int((split.fit.lengths > 0).sum())
    ks = tuple(k for k in KS if k <= n_items) or (1,)
    if config.k not in ks:
        ks = tuple(sorted({*ks, min(config.k, n_items)}))
    k_main = min(config.k, n_items)
    segments = segment_labels(split, item_count)
    settings = {
        "split": split.kind,
        "split_note": split.note,
        "ranking": "full",
        "exclude_seen": config.exclude_seen,
        "sampled": (
            {"negatives": config.sampled, "by": config.sampling} if config.sampled else None
        ),
        "users_evaluated": int(len(split.users)),
        "users_total": int(split.inputs.n_users),
        "items": int(n_items),
        "k": k_main,
        "ks": list(ks),
        "ties": "expected value over random tie-breaking",
        "ci": f"95% Poisson bootstrap over users ({config.bootstrap} resamples)",
        "significance": (
            f"paired sign-flip permutation test on per-user NDCG@{k_main} vs the best "
            f"baseline ({config.permutations} flips), two-sided, alpha 0.05"
        ),
        "diversity_basis": diversity_basis,
        "notes": list(notes),
        **(extra_settings or {}),
    }
    ev = Evaluation(settings)
    if len(split.users) == 0:
        raise ValueError("no user can be evaluated on this split (too few events per user)")
    # One set of bootstrap weights for every scorer (at most ~400 MB; else drawn per call).
    weights = (
        poisson_weights(config.bootstrap, len(split.users), config.seed)
        if config.bootstrap * len(split.users) <= 100_000_000
        else None
    )
    for i, scorer in enumerate(scorers):

        def step(fraction: float, message: str, i: int = i) -> None:
            say((i + fraction) / len(scorers), message)

        ranked = rank(
            scorer,
            split,
            max_k=max(ks),
            exclude_seen=config.exclude_seen,
            sampled=config.sampled,
            sampling=config.sampling,
            popularity=item_count,
            batch=config.batch,
            seed=config.seed,
            progress=step,
        )
        per_user = per_user_metrics(ranked.greater, ranked.ties, ks)
        keys = list(per_user)
        ci = bootstrap_ci(
            np.stack([per_user[k] for k in keys], axis=1),
            config.bootstrap,
            config.seed,
            weights=weights,
        )
        res: dict[str, Any] = {
            "kind": "model" if scorer.name in models else "baseline",
            "users": int(len(split.users)),
        }
        res.update({key: float(per_user[key].mean()) for key in keys})
        res["ci"] = {key: [float(lo), float(hi)] for key, (lo, hi) in zip(keys, ci, strict=True)}
        for k in ks:
            top = ranked.top[:, :k]
            res[f"coverage@{k}"] = coverage(top, n_items)
            res[f"gini@{k}"] = exposure_gini(top, n_items)
            res[f"novelty@{k}"] = novelty(top, item_users, n_fit_users)
            res[f"arp@{k}"] = average_popularity(top, item_count)
            if item_features is not None:
                res[f"diversity@{k}"] = intra_list_diversity(top, item_features)
        if config.sampled:
            sampled = per_user_metrics(ranked.sampled_greater, ranked.sampled_ties, ks)
            res["sampled"] = {key: float(v.mean()) for key, v in sampled.items()}
        res["seconds"] = round(ranked.seconds, 3)
        if hasattr(scorer, "fit_seconds"):
            res["fit_seconds"] = round(float(scorer.fit_seconds), 3)
        ev.results[scorer.name] = res
        ev.per_user[scorer.name] = per_user[f"ndcg@{k_main}"]
        ev.segments[scorer.name] = _segments(per_user, segments, k_main)
    _significance(ev, models, k_main, config, weights)
    say(1.0, "done")
    return ev


def _segments(per_user: dict, segments: dict[str, np.ndarray], k: int) -> list[dict]:
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


def _significance(
    ev: Evaluation,
    models: Sequence[str],
    k: int,
    config: EvalConfig,
    weights: torch.Tensor | None = None,
) -> None:
    baselines = [n for n, r in ev.results.items() if r["kind"] == "baseline"]
    if not baselines:
        return
    best = max(baselines, key=lambda n: ev.results[n][f"ndcg@{k}"])
    ev.settings["best_baseline"] = best
    for name in models:
        if name not in ev.per_user:
            continue
        a, b = ev.per_user[name], ev.per_user[best]
        diff = a - b
        lo, hi = bootstrap_ci(diff[:, None], config.bootstrap, config.seed, weights=weights)[0]
        p = paired_permutation_test(a, b, config.permutations, config.seed)
        ev.results[name]["significance"] = {
            "against": best,
            "metric": f"ndcg@{k}",
            "difference": float(diff.mean()),
            "ci": [float(lo), float(hi)],
            "p_value": float(p),
            "significant": bool(p < 0.05),
        }


# --------------------------------------------------------------------------- features, storage


def category_features(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray | None:
    """(len(item_ids) + 1, n_categories) indicator matrix from an item table with
    ``item_id`` and ``categories`` (lists); None when no item has a category.
    Row ``i`` belongs to item index ``i`` (row 0 and the mask row stay zero)."""
    if items is None or items.empty or "categories" not in items:
        return None
    exploded = items[["item_id", "categories"]].explode("categories").dropna()
    if exploded.empty:
        return None
    index = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids.astype(str)))
    rows = index.reindex(exploded["item_id"].astype(str)).to_numpy()
    cats, codes = np.unique(exploded["categories"].astype(str).to_numpy(), return_inverse=True)
    keep = ~np.isnan(rows)
    out = np.zeros((len(item_ids) + 1, len(cats)), dtype=np.float32)
    out[rows[keep].astype(np.int64), codes[keep]] = 1.0
    return out


def save(store, dataset_id: int, ev: Evaluation) -> str:
    """Store a run (one row per scorer); returns its run id."""
    run_id = ev.settings.get("run_id") or uuid.uuid4().hex[:12]
    ev.settings["run_id"] = run_id
    ev.settings.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
    for order, (name, res) in enumerate(ev.results.items()):
        store.save_evaluation(
            f"{run_id}-{order}",
            name,
            dataset_id,
            {**ev.settings, "order": order, "kind": res.get("kind"), "scorer": name},
            res,
            ev.segments.get(name),
        )
    return run_id


def stored_runs(store, dataset_id: int) -> pd.DataFrame:
    """Stored runs of a dataset, newest first: run_id, created, split, ranking, scorers."""
    rows = store.list_evaluations(dataset_id)
    runs: dict[str, dict] = {}
    for row in rows:
        s = row["settings"]
        run = runs.setdefault(
            s.get("run_id", row["evaluation_id"]),
            {
                "run_id": s.get("run_id", row["evaluation_id"]),
                "created": row["created"],
                "split": s.get("split"),
                "sampled": bool(s.get("sampled")),
                "users": s.get("users_evaluated"),
                "scorers": [],
            },
        )
        run["scorers"].append(row["model_name"])
    frame = pd.DataFrame(
        list(runs.values()),
        columns=["run_id", "created", "split", "sampled", "users", "scorers"],
    )
    return frame.sort_values("created", ascending=False, ignore_index=True)


def load(store, run_id: str) -> Evaluation | None:
    """A stored run, or None."""
    rows = store.list_evaluations(run_id=run_id)
    return Evaluation.from_rows(rows) if rows else None


def significance_label(sig: dict | None) -> str:
    """``+0.0123 (p=0.002) *``: the difference to the best baseline, its p-value, and a star
    when significant at 0.05; empty for baselines."""
    if not sig:
        return ""
    star = " *" if sig["significant"] else ""
    return f"{sig['difference']:+.4f} vs {sig['against']} (p={sig['p_value']:.3g}){star}"


def describe(settings: dict) -> str:
    """One line saying how a run was made (split, ranking, users)."""
    sampled = settings.get("sampled")
    ranking = "full ranking over all items" + (
        ", the user's own items excluded" if settings.get("exclude_seen", True) else ""
    )
    if sampled:
        ranking += f"; sampled figures: {sampled['negatives']} negatives by {sampled['by']}"
    split = {"loo": "leave-one-out", "time": "global temporal split"}.get(
        settings.get("split"), str(settings.get("split"))
    )
    return (
        f"{split} · {ranking} · {settings.get('users_evaluated', 0):,} users evaluated "
        f"· {settings.get('items', 0):,} items"
    )


# --------------------------------------------------------------------------- one call


def run(
    store,
    *,
    models: Sequence[str] = (),
    dataset: str | None = None,
    baselines: Sequence[str] = (),
    config: EvalConfig | None = None,
    ease_max_items: int | None = None,
    sasrec_settings: dict | None = None,
    save_results: bool = True,
    progress: ProgressFn | None = None,
) -> tuple[Evaluation, list[str]]:
    """Evaluate saved models (names or directories) and baselines on their dataset.

    What the CLI's ``evaluate`` and the Metrics page call. The dataset is the models'
    (they must share it) or ``dataset`` when only baselines are asked for. The run is
    stored in the database unless ``save_results`` is false.

    Returns:
        (the evaluation, warnings such as a model trained on older data).

    Raises:
        ValueError: nothing to evaluate, models of different datasets, a model whose
            items no longer match its dataset, or a split that cannot be made.
    """
    config = config or EvalConfig()
    say = progress or (lambda f, m: None)
    if not models and not baselines:
        raise ValueError("nothing to evaluate: name a model or at least one baseline")
    saved = [resolve_model(store, name) for name in models]
    datasets = {s.dataset for s in saved} | ({dataset} if dataset else set())
    if len(datasets) != 1:
        raise ValueError(
            "the models were trained on different datasets "
            f"({', '.join(sorted(map(str, datasets)))}); evaluate them separately"
        )
    dataset = datasets.pop()
    info = model_dataset(store, saved[0]) if saved else store.get_dataset(dataset)
    say(0.0, "reading the sequences")
    seqs = dataset_sequences(store, dataset)
    warnings = [w for s in saved for w in s.warnings]
    for s in saved:
        if len(s.item_ids) != len(seqs.item_ids) or not np.array_equal(
            s.item_ids.astype(str), seqs.item_ids.astype(str)
        ):
            raise ValueError(
                f"model {s.name!r} was trained on an earlier version of dataset {dataset!r} "
                "whose items differ from today's; train it again to evaluate it"
            )
    times = event_times(store, dataset)
    split = make_split(seqs, config.split, times)
    if config.split == "time" and saved:
        warnings.append(
            "the models were trained with leave-one-out, so their training data may include "
            "events after the cut-off of the time split; baselines are fitted before it"
        )
    features, basis = None, None
    categories = category_features(store.items_frame(info.dataset_id), seqs.item_ids)
    if categories is not None:
        features, basis = categories, "category"
    else:
        for s in saved:
            vectors = getattr(s.model, "text_vectors", None)
            if vectors is not None:
                features, basis = vectors.detach().cpu().numpy(), "text embedding"
                break
    scorers: list = []
    for s in saved:
        scorer = ModelScorer(s.model, s.name)
        scorer.fit_seconds = float(s.training.get("seconds", 0.0))
        scorers.append(scorer)
    base_settings = sasrec_settings or (saved[0].training.get("config") if saved else None)
    fitted, notes = fit_baselines(
        list(baselines),
        split,
        ease_max_items=ease_max_items or EASE_MAX_ITEMS,
        sasrec_settings=sasrec_config(base_settings) if "sasrec" in baselines else None,
        progress=lambda f, m: say(0.05 + 0.45 * f, m),
    )
    if features is None:
        notes = [*notes, "intra-list diversity: the items have no categories or text vectors"]
    ev = evaluate(
        scorers + fitted,
        split,
        config,
        models=[s.name for s in saved],
        item_features=features,
        diversity_basis=basis,
        notes=notes,
        extra_settings={"dataset": dataset, "models": [s.name for s in saved]},
        progress=lambda f, m: say(0.5 + 0.5 * f, m),
    )
    ev.settings["warnings"] = warnings
    if save_results:
        save(store, info.dataset_id, ev)
    return ev, warnings


def model_curves(path: str) -> tuple[list[dict], float | None]:
    """A saved model's training curves from one read of its ``training.json``.

    Returns:
        The per-epoch history in the shape of :func:`core.reports.charts.training_curves`'
        records (empty when unreadable), and the validation NDCG@10 with its
        transition memory (None when it has none or the file is unreadable).
    """
    import json
    from pathlib import Path

    try:
        training = json.loads((Path(path) / "training.json").read_text())
    except (OSError, ValueError):
        return [], None
    if not isinstance(training, dict):
        return [], None
    history = [
        {"epoch": h.get("epoch"), "loss": h.get("loss"), "val_ndcg10": h.get("val_ndcg@10")}
        for h in training.get("history", [])
        if isinstance(h, dict)
    ]
    memory = training.get("transitions")
    value = memory.get("val_ndcg@10") if isinstance(memory, dict) and memory.get("kept") else None
    return history, float(value) if isinstance(value, int | float) else None
