"""The transition memory: how often each item followed each other one in training.

After training, :func:`fit_transitions` tries the memory with the Transformer's prediction
as its prior (see :mod:`core.models.bert`) at several prior weights, and keeps the best
one on the model when it ranks the validation targets better than the Transformer alone.
"""

from __future__ import annotations

import numpy as np
import torch

from core.common.columns import MetricKeys
from core.data.sequences import Sequences, transition_pairs
from core.models.bert import PreferenceModel, fuse_log_probs
from core.models.inputs import query_batches
from core.training.cluster import Cluster
from core.training.validation import shared_ndcg_hr, tie_floor

# Weights of the Transformer's prior tried on validation. A strong Transformer wants a
# heavy prior: on Beauty the `balanced` preset picked 100, the old grid's edge.
TRANSITION_ALPHAS = (1.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@torch.no_grad()
def fit_transitions(
    model: PreferenceModel,
    train: Sequences,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int = 512,
    types: np.ndarray | None = None,
    cluster: Cluster | None = None,
    alphas: tuple[float, ...] = TRANSITION_ALPHAS,
) -> dict:
    """Attach a transition memory of ``train`` to ``model`` if it ranks the validation
    targets better (NDCG@10, full ranking, history items excluded); else leave none.

    Each ``alpha`` of ``alphas`` is tried; the best one is kept when it beats the
    Transformer alone. Returns what was found: ``kept``, ``alpha``, ``pairs``,
    ``val_ndcg@10`` / ``val_hr@10`` (of the model as it now is), ``val_ndcg@10_without``,
    ``tried`` (alpha -> val NDCG@10) and a one-line ``message``.
    """
    src, dst, counts = transition_pairs(train)
    model.drop_transitions()
    if not len(src):
        return {"kept": False, "pairs": 0, "message": "transition memory: no item follows another"}
    model.attach_transitions(
        torch.as_tensor(src), torch.as_tensor(dst), torch.as_tensor(counts), alphas[0]
    )
    ranks = _ranks_with_memory(model, histories, targets, device, batch, types, alphas)
    found = {v: shared_ndcg_hr(r, cluster) for v, r in ranks.items()}
    best = max(alphas, key=lambda a: found[a][0])
    without = found[None][0]
    kept = found[best][0] > without
    if kept:
        model.config.transition_alpha = float(best)
        message = (
            f"transition memory kept: val NDCG@10 {found[best][0]:.4f} "
            f"(Transformer alone {without:.4f})"
        )
    else:
        model.drop_transitions()
        message = f"transition memory left out: it did not beat val NDCG@10 {without:.4f}"
    return {
        "kept": kept,
        "alpha": float(best) if kept else None,
        "pairs": int(len(src)),
        MetricKeys.NDCG: found[best if kept else None][0],
        MetricKeys.HR: found[best if kept else None][1],
        MetricKeys.WITHOUT_MEMORY: without,
        "tried": {str(a): found[a][0] for a in alphas},
        "message": message,
    }


@torch.no_grad()
def _ranks_with_memory(
    model: PreferenceModel,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int,
    types: np.ndarray | None,
    alphas: tuple[float, ...],
) -> dict[float | None, np.ndarray]:
    """0-based ranks of ``targets`` (history items excluded) by the model with its memory
    at each prior weight of ``alphas``, and by the Transformer alone (key None)."""
    table = model.item_table()
    variants = [None, *alphas]  # None = the Transformer alone
    ranks = {v: np.empty(len(targets), dtype=np.int64) for v in variants}
    for query in query_batches(histories, model.config, batch, device, types):
        rows, hist = query.rows, query.histories
        tgt = torch.as_tensor(targets[rows], device=device).long()[:, None]
        states = model.encode(query.inputs, query.types, table=table)[:, -1]
        logits = model.score(states, table).float()
        log_probs = torch.log_softmax(logits, dim=-1)  # one softmax for every alpha
        followed = model.transitions_of(hist[:, -1])
        for v in variants:
            scores = logits if v is None else fuse_log_probs(log_probs, *followed, v)
            target_score = tie_floor(scores.gather(1, tgt))
            # Not counted: the history's items and the target itself.
            scores = scores.scatter(1, hist, float("-inf")).scatter(1, tgt, float("-inf"))
            ranks[v][rows] = (scores >= target_score).sum(1).cpu().numpy()
    return ranks
