"""Full ranking of every evaluated user's target, a batch of users at a time.

Every scorer ranks the same way (:class:`core.models.scoring.Scorer`): a batch of histories
in, a (batch, n_items + 2) score matrix out. Here the columns that are not ranked (padding,
mask and, by default, the items of the user's input history) are set to ``-inf``, the items
scored above and tied with the target are counted by comparison (what the metrics of
:mod:`core.evaluation.accuracy` read), and ``topk`` gives the lists that
:mod:`core.evaluation.beyond_accuracy` reads. *Sampled* ranking (the target against N
negatives drawn uniformly or by popularity) is computed only when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from core.common.progress import ProgressFn
from core.data.sequences import Sequences
from core.data.splits import EvalSplit
from core.evaluation.accuracy import KS
from core.models.inputs import shortest_first
from core.models.scoring import Scorer, hide_non_items


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
    users, targets = split.users, split.targets
    n = len(users)
    max_k = min(max_k, split.inputs.n_items)
    # Shortest histories first: a neural scorer then trims padding per batch.
    lengths = np.minimum(split.inputs.lengths[users], scorer.history_len)
    greater = np.zeros(n, dtype=np.int64)
    ties = np.zeros(n, dtype=np.int64)
    top = np.zeros((n, max_k), dtype=np.int64)
    s_greater = np.zeros(n, dtype=np.int64) if sampled else None
    s_ties = np.zeros(n, dtype=np.int64) if sampled else None
    generator = torch.Generator().manual_seed(seed)
    draw = _negative_weights(sampling, popularity, split.inputs.n_items + 2) if sampled else None
    done = 0
    for rows in shortest_first(lengths, batch):
        who = users[rows]
        hist = torch.as_tensor(split.inputs.padded(scorer.history_len, who), dtype=torch.long)
        scores = scorer.score(hist)
        tgt = torch.as_tensor(targets[rows], device=scores.device)
        target_score = scores.gather(1, tgt[:, None])
        _leave_out(scores, tgt, split.inputs, who if exclude_seen else None)
        greater[rows], ties[rows] = _above_and_tied(scores, target_score)
        if sampled:
            s_greater[rows], s_ties[rows] = _among_negatives(
                scores, target_score, draw, sampled, generator
            )
        top[rows] = _top_k(scores, tgt, target_score, max_k)
        done += len(rows)
        if progress:
            progress(min(1.0, done / max(n, 1)), f"{scorer.name}: ranking")
    return Ranked(greater, ties, top, s_greater, s_ties, time.perf_counter() - started)


def _rows_and_cols(inputs: Sequences, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in batch, item) of every event of the given users' input histories."""
    starts, ends = inputs.offsets[users], inputs.offsets[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, inputs.items[np.repeat(starts, lengths) + within].astype(np.int64)


def _leave_out(
    scores: torch.Tensor, targets: torch.Tensor, inputs: Sequences, seen: np.ndarray | None
) -> None:
    """Set the columns that are not ranked to ``-inf``, in place: padding, mask and (when
    ``seen`` names the batch's users) the items of their histories. The target itself is set
    aside by index so that it never counts as a tie."""
    device = scores.device
    hide_non_items(scores)
    if seen is not None:
        r, c = _rows_and_cols(inputs, seen)
        scores[torch.as_tensor(r, device=device), torch.as_tensor(c, device=device)] = float("-inf")
    scores.scatter_(1, targets[:, None], float("-inf"))


def _above_and_tied(
    scores: torch.Tensor, target_score: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many items score above the target and how many tie with it."""
    # int32 sums: the bool -> int64 path is several times slower on a CPU.
    g = (scores > target_score).sum(1, dtype=torch.int32)
    t = (scores == target_score).sum(1, dtype=torch.int32)
    return g.cpu().numpy(), t.cpu().numpy()


def _negative_weights(sampling: str, popularity: np.ndarray | None, n_vocab: int) -> torch.Tensor:
    """(n_vocab,) probabilities of drawing each item as a sampled negative (never the
    padding or mask column): uniform, or proportional to training events."""
    if sampling not in ("uniform", "popularity"):
        raise ValueError(f"unknown sampling {sampling!r}: choose popularity or uniform")
    weights = (
        np.ones(n_vocab) if sampling == "uniform" else np.asarray(popularity, np.float64).copy()
    )
    weights[0] = weights[-1] = 0
    return torch.as_tensor(weights / weights.sum(), dtype=torch.float32)


def _among_negatives(
    scores: torch.Tensor,
    target_score: torch.Tensor,
    draw: torch.Tensor,
    sampled: int,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many of ``sampled`` negatives score above and tie with the target.

    Negatives are drawn by ``draw``, without the user's items, the target or repeats: the
    first ``sampled`` valid ones of each row's candidates (``scores`` has the excluded
    columns at ``-inf`` already)."""
    n_draw = 2 * sampled + 20  # candidates per user; seen items and repeats are dropped
    cand, repeat = _draw_negatives(draw, len(scores), n_draw, generator)
    cand = cand.to(scores.device)
    neg_scores = scores.gather(1, cand)
    valid = (neg_scores > float("-inf")) & ~repeat.to(scores.device)
    valid &= valid.cumsum(1) <= sampled
    above = ((neg_scores > target_score) & valid).sum(1).cpu().numpy()
    tied = ((neg_scores == target_score) & valid).sum(1).cpu().numpy()
    return above, tied


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


def _top_k(
    scores: torch.Tensor, targets: torch.Tensor, target_score: torch.Tensor, k: int
) -> np.ndarray:
    """(rows, k) best items of each row, the target competing again with its own score; a
    slot only excluded items could fill holds 0 (no item)."""
    scores.scatter_(1, targets[:, None], target_score)
    best, idx = torch.topk(scores, k, dim=1)
    idx[best == float("-inf")] = 0
    return idx.cpu().numpy()
