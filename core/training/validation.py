"""Validation during training: ranking the held-out items, and the early-stopping record.

Each epoch ranks every validation user's held-out item among all items by the
Transformer alone (:func:`rank_targets`, with an early stop once a target is out of the
top 10), and :class:`EarlyStopping` keeps the history and the best epoch's weights.
:func:`tie_floor` is shared with the transition memory's search
(:mod:`core.training.memory`), which ranks the same users; both build their queries with
:func:`core.models.inputs.query_batches`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.common.columns import MetricKeys
from core.data.splits import Split
from core.models.bert import ModelConfig, PreferenceModel
from core.models.inputs import history_width, query_batches
from core.training.cluster import Cluster


@torch.no_grad()
def rank_targets(
    model: PreferenceModel,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int = 512,
    exclude_seen: bool = True,
    *,
    cap: int | None = None,
    types: np.ndarray | None = None,
) -> np.ndarray:
    """0-based rank of each target among all items (full ranking), by the Transformer.

    A transition memory, if the model has one, is not applied here (training
    validates the Transformer alone; :mod:`core.evaluation.runner` ranks with the memory).

    Args:
        histories: (n, max_len) left-padded histories (the inputs; the mask token is
            appended internally).
        targets: (n,) item indices to rank.
        exclude_seen: items of the history are not ranked (the target always is).
        cap: a target stops being scored once ``cap`` items are known to beat it, and
            its rank is then some number >= ``cap``: NDCG@k and HR@k need ranks below k
            only. Items are indexed by popularity, so most targets are settled by the
            first slice of the catalogue.
        types: the histories' event types (same shape), for a model with event types.

    Returns:
        (n,) int64 ranks: the number of other items scored at least as high as the
        target (a tie counts against it).
    """
    model.eval()
    table, bias = model.item_table(), model.item_bias
    not_item = model.not_item.nonzero().flatten()
    ranks = np.empty(len(targets), dtype=np.int64)
    for query in query_batches(histories, model.config, batch, device, types):
        rows, hist = query.rows, query.histories
        tgt = torch.as_tensor(targets[rows], device=device).long()
        states = model.head(model.encode(query.inputs, query.types, table=table)[:, -1])
        target_logit = (states * table[tgt]).sum(1, keepdim=True) + bias[tgt, None]
        target_logit = tie_floor(target_logit)
        # Columns never counted, each once: the non-items, the target itself and,
        # if asked, the history's items.
        skip = [not_item.expand(len(rows), -1), tgt[:, None]] + ([hist] if exclude_seen else [])
        greater = _count_above(states, table, bias, target_logit, torch.cat(skip, 1), cap)
        ranks[rows] = greater.cpu().numpy()
    return ranks


def _count_above(
    states: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor,
    target_logit: torch.Tensor,
    skip: torch.Tensor,
    cap: int | None,
) -> torch.Tensor:
    """For each row of ``states``, how many items score at least its ``target_logit``,
    leaving out the columns of its row of ``skip`` (each once, however often it is
    there); with ``cap``, a row stops being counted once it reaches ``cap``.

    Counted a slice of the catalogue at a time (the full batch x catalogue matrix is
    never stored), then the skipped columns that were counted are taken back (their
    values from the same product).
    """
    skip = skip.sort(1).values
    first = torch.ones_like(skip, dtype=torch.bool)
    first[:, 1:] = skip[:, 1:] != skip[:, :-1]
    vocab = table.shape[0]
    greater = torch.zeros(len(states), dtype=torch.int64, device=states.device)
    chunk = vocab if states.is_cuda else _RANK_CHUNK
    live = None  # rows still counted (None = all)
    for lo in range(0, vocab, chunk):
        hi = lo + chunk
        if cap is not None and lo > 0:
            live = (greater < cap).nonzero().flatten()
            if len(live) == 0:
                break
        sel = slice(None) if live is None else live
        logits = torch.addmm(bias[lo:hi], states[sel], table[lo:hi].T)
        above = (logits >= target_logit[sel]).sum(1, dtype=torch.int32)
        inside = first[sel] & (skip[sel] >= lo) & (skip[sel] < lo + logits.shape[1])
        values = logits.gather(1, (skip[sel] - lo).clamp(0, logits.shape[1] - 1))
        above -= ((values >= target_logit[sel]) & inside).sum(1, dtype=torch.int32)
        if live is None:
            greater += above
        else:
            greater.index_add_(0, live, above.long())
    return greater


def tie_floor(target: torch.Tensor) -> torch.Tensor:
    """The score an item must reach to count as ranked above ``target``: a tie counts
    against the target (items the model cannot tell apart, such as items never seen in
    training, which start alike, never rank a target first), and so does a
    difference within float32 rounding of how the score was computed."""
    return target - 1e-6 * (1.0 + target.abs())


_RANK_CHUNK = 4096  # catalogue columns scored at once by rank_targets on a CPU


def ndcg_hr_at(ranks: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Mean NDCG@k and HR@k of 0-based ranks (one relevant item per user)."""
    if len(ranks) == 0:
        return 0.0, 0.0
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(ndcg.mean()), float(hit.mean())


def shared_ndcg_hr(ranks: np.ndarray, cluster: Cluster | None = None) -> tuple[float, float]:
    """NDCG@10 and HR@10 of ``ranks``, this process's share of the users: the means
    over every process's users when the run is data-parallel."""
    ndcg, hr = ndcg_hr_at(ranks, 10)
    if cluster is not None and cluster.world > 1:
        ndcg_sum, hit_sum, n = cluster.total(ndcg * len(ranks), hr * len(ranks), len(ranks))
        ndcg, hr = ndcg_sum / max(n, 1), hit_sum / max(n, 1)
    return ndcg, hr


@dataclass
class ValidationSet:
    """This process's share of the validation users: their training histories (left-padded
    rows as wide as a query reads, :func:`core.models.inputs.history_width`, so validation
    asks exactly what serving asks), held-out items and, for a model with event types,
    the histories' types."""

    histories: np.ndarray
    targets: np.ndarray
    types: np.ndarray | None = None

    @classmethod
    def of(
        cls, split: Split, cluster: Cluster, model_config: ModelConfig, with_types: bool
    ) -> ValidationSet:
        share = cluster.share(len(split.val_users))
        users, targets = split.val_users[share], split.val_targets[share]
        width = history_width(model_config)
        histories = split.train.padded(width, users).astype(np.int64)
        types = None
        if with_types:
            types = split.train.padded_types(width, users).astype(np.int64)
        return cls(histories, targets, types)

    def measure(
        self, model: PreferenceModel, device: torch.device, batch: int, cluster: Cluster
    ) -> tuple[float, float]:
        """Validation NDCG@10 and HR@10 of the Transformer alone, over every process's users."""
        ranks = rank_targets(
            model, self.histories, self.targets, device, batch, cap=10, types=self.types
        )
        return shared_ndcg_hr(ranks, cluster)


def snapshot(model: PreferenceModel) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights that training does not change."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class EarlyStopping:
    """A run's validation history and its best epoch so far: what early stopping decides
    on, what the run ends with, and what a checkpoint keeps to resume.

    Attributes:
        best_state: the best epoch's weights (the starting weights before any epoch).
        history: one record per validated epoch (``epoch``, ``loss``, ``val_ndcg@10``...).
        best_ndcg: the best epoch's validation NDCG@10 (-1 before any epoch).
        best_epoch: the best epoch, counted from 1 (0 before any epoch).
        bad_epochs: epochs since the best one.
    """

    best_state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    best_ndcg: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0

    @classmethod
    def resumed(cls, state: dict, best_state: dict[str, torch.Tensor]) -> EarlyStopping:
        """The record a checkpoint kept (``state``, see :meth:`to_state`)."""
        return cls(
            best_state,
            state["history"],
            state["best_ndcg"],
            state["best_epoch"],
            state["bad_epochs"],
        )

    def to_state(self) -> dict:
        """What a checkpoint keeps of the record (the best weights are saved apart)."""
        return {
            "history": self.history,
            "best_ndcg": self.best_ndcg,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def record(self, record: dict, model: PreferenceModel) -> None:
        """Add an epoch's ``record``; keep ``model``'s weights when it is the best yet."""
        self.history.append(record)
        ndcg = record[MetricKeys.NDCG]
        if ndcg > self.best_ndcg:
            self.best_ndcg, self.best_epoch, self.bad_epochs = ndcg, record["epoch"], 0
            self.best_state = snapshot(model)
        else:
            self.bad_epochs += 1

    def out_of_patience(self, patience: int) -> bool:
        return self.bad_epochs >= patience

    def best_hr(self) -> float:
        """Validation HR@10 of the best epoch (0 before any epoch)."""
        return next((h[MetricKeys.HR] for h in self.history if h["epoch"] == self.best_epoch), 0.0)
