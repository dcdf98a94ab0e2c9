"""Baselines our model has to beat: counting models with the same interface as ours.

Every baseline is a :class:`core.models.scoring.Scorer`, like our model as a
:class:`core.models.scoring.ModelScorer`: a batch of histories in, a full score vector over
all items out, so the same evaluation and serving code ranks them all. Each is fitted on
the training part of a split (:func:`core.training.baselines.fit_baselines` fits them by
name for an evaluation). Here are the counting ones and the names of all of them; the
causal Transformer trains, so it lives in :mod:`core.training.baselines`.

* ``pop``: most popular (training events per item).
* ``recent``: time-decayed popularity. With timestamps, an event of time ``t`` weighs
  ``0.5 ** ((t_last - t) / half_life)`` (``half_life`` = a tenth of the training time
  span by default); without them (the events of a user are only ordered), an event
  followed by ``s`` more events of the same user weighs ``0.5 ** (s / 5)``: the
  popularity of what users did last.
* ``itemknn``: item-item cosine similarity of co-occurrence in users' training
  histories (each item keeps its 100 nearest neighbours); a user's score for an item
  is the summed similarity to the last 20 items of their history.
* ``markov``: first-order transitions ``P(next = j | last = i)`` from consecutive
  training events, backed off to popularity:
  ``(T[i, j] + alpha * pop_j / sum(pop)) / (sum_j T[i, j] + alpha)``.
* ``ease``: EASE (Steck, WWW 2019), the closed-form item-item linear model
  ``B = I - P diag(1 / diag(P))``, ``P = (X^T X + lambda I)^-1``; skipped (with a
  note) above ``ease_max_items`` items, where the dense inverse gets too large.
* ``sasrec`` (:mod:`core.training.baselines`): a causal (left-to-right) Transformer,
  SASRec-style, on the same Hugging Face ``BertModel`` blocks as our model
  (``is_decoder=True``), trained by :func:`core.training.loop.train` with ``causal=True``:
  full-softmax cross-entropy of the next item at every position, same windows, schedule
  and early stopping.

ItemKNN and Markov scores also carry a tiny popularity term, so items they cannot
tell apart are ordered by popularity instead of tied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.data.sequences import Sequences, transition_pairs

BASELINES: tuple[str, ...] = ("pop", "recent", "itemknn", "markov", "ease", "sasrec")
FAST_BASELINES: tuple[str, ...] = ("pop", "recent", "itemknn", "markov", "ease")
DESCRIPTIONS = {
    "pop": "most popular items",
    "recent": "time-decayed popularity",
    "itemknn": "item-item cosine kNN over the last 20 items",
    "markov": "first-order next-item transitions, popularity back-off",
    "ease": "EASE closed-form item-item model",
    "sasrec": "causal Transformer (SASRec-style), full cross-entropy",
}
EASE_MAX_ITEMS = 20_000
_TIE_BREAK = 1e-6  # weight of the popularity term that orders otherwise tied items


def parse_baselines(spec: str | Sequence[str] | None) -> list[str]:
    """``pop,itemknn`` / ``all`` / ``none`` -> names, in the canonical order.

    >>> parse_baselines("markov,pop"), parse_baselines("none"), len(parse_baselines("all"))
    (['pop', 'markov'], [], 6)
    """
    if spec is None:
        return list(FAST_BASELINES)
    names = [s.strip().lower() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if names in (["all"],):
        return list(BASELINES)
    if names in (["none"], []):
        return []
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise ValueError(
            f"unknown baseline(s) {', '.join(unknown)}: choose from {', '.join(BASELINES)}, "
            "all or none"
        )
    return [b for b in BASELINES if b in names]


def _counts(seqs: Sequences, weights: np.ndarray | None = None) -> np.ndarray:
    vocab = seqs.n_items + 2
    out = np.bincount(seqs.items, weights=weights, minlength=vocab).astype(np.float64)
    out[0] = out[-1] = 0
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    total = x.sum()
    return x / total if total > 0 else x


class VectorScorer:
    """The same score vector for every user (popularity baselines)."""

    history_len = 1

    def __init__(self, name: str, scores: np.ndarray) -> None:
        self.name = name
        self.vector = torch.as_tensor(scores, dtype=torch.float32)
        self.fit_seconds = 0.0

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.vector.expand(len(histories), -1).clone()


def most_popular(fit: Sequences) -> VectorScorer:
    """Training events per item."""
    return VectorScorer("pop", _counts(fit))


def recent_popularity(
    fit: Sequences, times: np.ndarray | None = None, half_life: float | None = None
) -> VectorScorer:
    """Time-decayed popularity (see the module docstring for the two decays).

    >>> s = Sequences(np.array(["a"], dtype=object), np.array(["", "x", "y"], dtype=object),
    ...     np.array([0, 2]), np.array([1, 2], dtype=np.int32))
    >>> recent_popularity(s, np.array([0.0, 10.0]), half_life=10).vector.tolist()
    [0.0, 0.5, 1.0, 0.0]
    """
    if times is not None and len(times) == len(fit.items) and len(times):
        span = float(times.max() - times.min())
        half = half_life or max(span / 10, 1.0)
        weights = 0.5 ** ((times.max() - times) / half)
    else:
        # Events after this one in the same user's history.
        lengths = fit.lengths
        ends = np.repeat(fit.offsets[1:], lengths)
        after = ends - 1 - np.arange(len(fit.items))
        weights = 0.5 ** (after / (half_life or 5.0))
    scorer = VectorScorer("recent", _counts(fit, weights))
    return scorer


def _user_items(fit: Sequences, max_history: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs of the training histories (the last ``max_history``
    events of each user), sorted by user."""
    seqs = fit
    if max_history is not None:
        start = np.maximum(fit.offsets[1:] - max_history, fit.offsets[:-1])
        keep = np.zeros(len(fit.items), dtype=bool)
        lengths = fit.offsets[1:] - start
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep[np.repeat(start, lengths) + within] = True
        users = np.repeat(np.arange(fit.n_users), fit.lengths)[keep]
        items = fit.items[keep]
    else:
        users = np.repeat(np.arange(seqs.n_users), seqs.lengths)
        items = fit.items
    vocab = fit.n_items + 2
    keys = np.unique(users.astype(np.int64) * vocab + items)
    return keys // vocab, keys % vocab


def cooccurrence(
    fit: Sequences, max_history: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Item-item co-occurrence: for i != j, the number of users with both in their training
    history (last ``max_history`` items). Returns (i, j, count, users per item).

    >>> s = Sequences(np.array(["a", "b"], dtype=object), np.array(["", "x", "y", "z"],
    ...     dtype=object), np.array([0, 2, 5]), np.array([1, 2, 1, 2, 3], dtype=np.int32))
    >>> i, j, c, d = cooccurrence(s)
    >>> list(zip(i.tolist(), j.tolist(), c.tolist())), d.tolist()
    ([(1, 2, 2), (1, 3, 1), (2, 1, 2), (2, 3, 1), (3, 1, 1), (3, 2, 1)], [0, 2, 2, 1, 0])
    """
    users, items = _user_items(fit, max_history)
    vocab = fit.n_items + 2
    degree = np.bincount(items, minlength=vocab)
    m = np.bincount(users, minlength=fit.n_users)
    offs = np.concatenate([[0], np.cumsum(m)])
    sq = m.astype(np.int64) ** 2
    pair_user = np.repeat(np.arange(fit.n_users), sq)
    local = np.arange(sq.sum()) - np.repeat(np.cumsum(sq) - sq, sq)
    width = m[pair_user]
    a = items[offs[pair_user] + local // np.maximum(width, 1)]
    b = items[offs[pair_user] + local % np.maximum(width, 1)]
    keep = a != b
    keys, counts = np.unique(a[keep].astype(np.int64) * vocab + b[keep], return_counts=True)
    return keys // vocab, keys % vocab, counts, degree


class _SparseRows:
    """Rows of an item x item matrix in CSR form, summed for batches of users."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, vocab: int):
        order = np.lexsort((cols, rows))
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=vocab))])
        self.cols = cols[order].astype(np.int64)
        self.values = values[order].astype(np.float32)
        self.vocab = vocab

    def add_into(self, out: torch.Tensor, rows: np.ndarray, items: np.ndarray) -> None:
        """``out[row] += M[item]`` for every (row, item) pair."""
        starts, ends = self.indptr[items], self.indptr[items + 1]
        lengths = ends - starts
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = np.repeat(starts, lengths) + within
        flat = np.repeat(rows, lengths) * self.vocab + self.cols[src]
        out.view(-1).index_add_(
            0, torch.as_tensor(flat), torch.as_tensor(self.values[src], dtype=out.dtype)
        )


def _recent_items(histories: torch.Tensor, n_last: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of the last ``n_last`` real items of each left-padded row."""
    tail = histories[:, -n_last:].numpy()
    rows, cols = np.nonzero(tail)
    return rows, tail[rows, cols].astype(np.int64)


class ItemKNN:
    """Item-item cosine kNN: ``sim(i, j) = c_ij / sqrt(d_i d_j)`` with ``c_ij`` the users
    having both items and ``d_i`` the users having ``i``; each item keeps its
    ``neighbours`` most similar items; a user's score sums the similarities to their
    last ``n_last`` items.
    """

    name = "itemknn"

    def __init__(self, fit: Sequences, neighbours: int = 100, n_last: int = 20) -> None:
        started = time.perf_counter()
        vocab = fit.n_items + 2
        i, j, c, degree = cooccurrence(fit)
        sim = c / np.sqrt(np.maximum(degree[i], 1) * np.maximum(degree[j], 1))
        order = np.lexsort((-sim, i))
        i, j, sim = i[order], j[order], sim[order]
        first = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=vocab))])
        keep = (np.arange(len(i)) - first[i]) < neighbours
        self.matrix = _SparseRows(i[keep], j[keep], sim[keep], vocab)
        self.prior = torch.as_tensor(_TIE_BREAK * _unit(_counts(fit)), dtype=torch.float32)
        self.history_len = n_last
        self.fit_seconds = time.perf_counter() - started

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        out = self.prior.expand(len(histories), -1).clone()
        rows, items = _recent_items(histories, self.history_len)
        self.matrix.add_into(out, rows, items)
        return out


class Markov:
    """First-order Markov chain over consecutive training events, backed off to popularity.

    ``score(j | last = i) = (T[i, j] + alpha * pop_j / sum(pop)) / (sum_j T[i, j] + alpha)``.
    """

    name = "markov"
    history_len = 1

    def __init__(self, fit: Sequences, alpha: float = 1.0) -> None:
        started = time.perf_counter()
        vocab = fit.n_items + 2
        src, dst, counts = transition_pairs(fit)
        out_degree = np.bincount(src, weights=counts, minlength=vocab)
        denom = out_degree + alpha
        self.matrix = _SparseRows(src, dst, counts / denom[src], vocab)
        self.pop = torch.as_tensor(_unit(_counts(fit)), dtype=torch.float32)
        self.backoff = torch.as_tensor(alpha / denom, dtype=torch.float32)
        self.fit_seconds = time.perf_counter() - started

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        last = histories[:, -1].long()
        out = self.backoff[last][:, None] * self.pop[None, :]
        rows = np.flatnonzero(last.numpy())
        self.matrix.add_into(out, rows, last.numpy()[rows])
        return out


class EASE:
    """EASE: ``B = I - P diag(1 / diag(P))`` (diagonal then zeroed), ``P = (G + lambda I)^-1``,
    ``G = X^T X`` the item-item Gram matrix of the binary user x item training matrix;
    a user's scores are ``x_u B`` (the sum of ``B``'s rows of the items they had).
    """

    name = "ease"

    def __init__(self, fit: Sequences, lam: float = 250.0, history_len: int = 200) -> None:
        started = time.perf_counter()
        vocab = fit.n_items + 2
        i, j, c, degree = cooccurrence(fit, max_history=None)
        gram = torch.zeros(vocab, vocab, dtype=torch.float64)
        gram[torch.as_tensor(i), torch.as_tensor(j)] = torch.as_tensor(c, dtype=torch.float64)
        gram += torch.diag(torch.as_tensor(degree, dtype=torch.float64) + lam)
        inverse = torch.linalg.inv(gram)
        weights = -inverse / torch.diagonal(inverse)[None, :]
        weights.fill_diagonal_(0.0)
        weights[0] = 0.0
        self.weights = weights.float()
        self.history_len = history_len
        self.fit_seconds = time.perf_counter() - started

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(histories.long(), self.weights, mode="sum", padding_idx=0)
