"""The training loss: cross-entropy of the asked-for positions over the catalogue.

Full softmax over every item, or, for large catalogues, sampled softmax over many shared
negatives drawn by popularity with logQ correction (:func:`sampling_distribution`). On a
CPU both take their log-sum-exp from :class:`_TiledLogSumExp`, which never stores the
(targets, candidates) logits. :class:`LossStep` is the loss as a module, the form
DistributedDataParallel wraps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.sequences import Sequences
from core.models.bert import PreferenceModel


def sampling_distribution(train: Sequences, vocab_size: int, device: torch.device) -> torch.Tensor:
    """(vocab_size,) probability of drawing each item as a sampled negative: its share
    of the training events, smoothed so that every item can be drawn; never the padding
    or the mask token."""
    popularity = np.bincount(train.items, minlength=vocab_size).astype(np.float64)
    popularity[0] = popularity[-1] = 0
    sampling_q = torch.as_tensor(
        (popularity + 1e-3 * (popularity.sum() / len(popularity))) / popularity.sum(),
        dtype=torch.float32,
    )
    sampling_q[0] = sampling_q[-1] = 0
    return (sampling_q / sampling_q.sum()).to(device)


class LossStep(nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: PreferenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, mask, labels, *args) -> torch.Tensor:  # noqa: D102
        if not mask.any():  # a process left without rows: a zero that reaches every weight
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return _step_loss(self.model, inputs, mask, labels, *args)


def _step_loss(
    model: PreferenceModel,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    labels_full: torch.Tensor,
    loss_mode: str,
    negatives: int,
    sampling_q: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
    event_types: torch.Tensor | None = None,
    every_prefix: bool = False,
    item_targets: bool = False,
) -> torch.Tensor:
    """Cross-entropy of the masked positions: full softmax or sampled with logQ correction.

    ``every_prefix``: ``inputs`` are plain windows, each position of ``mask`` predicted
    from the items before it (:meth:`PreferenceModel.encode_every_prefix`); with
    ``item_targets`` each item's own state also names the item after it.

    On a CPU both losses take their log-sum-exp from :class:`_TiledLogSumExp`, which
    never stores the (targets, candidates) logits; on CUDA, plenty of memory bandwidth
    (and bfloat16 autocast) makes the plain expressions the faster ones.
    """
    table = model.item_table()
    states, labels = _target_states(
        model, table, inputs, mask, labels_full, event_types, every_prefix, item_targets
    )
    if loss_mode == "full":
        return _full_softmax_loss(model, table, states, labels)
    return _sampled_softmax_loss(
        model, table, states, labels, negatives, sampling_q, generator, device
    )


def _target_states(
    model: PreferenceModel,
    table: torch.Tensor,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    labels_full: torch.Tensor,
    event_types: torch.Tensor | None,
    every_prefix: bool,
    item_targets: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, hidden) states of the positions asked for an item, and the items they should
    name (see :func:`_step_loss`)."""
    if item_targets:
        masks, items = model.encode_every_prefix(inputs, event_types, table, with_items=True)
        after = mask[:, 1:]
        states = torch.cat([masks[mask], items[:, :-1][after]])
        labels = torch.cat([labels_full[mask], labels_full[:, 1:][after]])
        return states, labels
    encode = model.encode_every_prefix if every_prefix else model.encode
    states = encode(inputs, event_types, table=table)[mask]  # (M, hidden): masked only
    return states, labels_full[mask]


def _full_softmax_loss(
    model: PreferenceModel, table: torch.Tensor, states: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of ``states`` naming ``labels`` among every item."""
    if states.is_cuda:
        return F.cross_entropy(model.score(states, table), labels)
    # The padding and mask columns, -inf in model.score, drop out of the softmax,
    # so only the real items (rows 1..n_items) are candidates.
    low = torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", enabled=False):  # the loss manages its own precision
        hidden = model.head(states).float()
        weight, bias = table[1:-1].float(), model.item_bias[1:-1].float()
        lse = _TiledLogSumExp.apply(hidden, weight, bias, low)
        target = (hidden * weight[labels - 1]).sum(1) + bias[labels - 1]
        return (lse - target).mean()


def _sampled_softmax_loss(
    model: PreferenceModel,
    table: torch.Tensor,
    states: torch.Tensor,
    labels: torch.Tensor,
    negatives: int,
    sampling_q: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Mean cross-entropy of ``states`` naming ``labels`` against ``negatives`` items
    drawn from ``sampling_q`` (shared by every row), each logit logQ-corrected."""
    hidden = model.head(states)
    neg = torch.multinomial(sampling_q.cpu(), negatives, replacement=True, generator=generator).to(
        device
    )
    log_q = torch.log(sampling_q * negatives)
    pos_logit = (hidden * table[labels]).sum(-1) + model.item_bias[labels] - log_q[labels]
    neg_bias = model.item_bias[neg] - log_q[neg]
    if states.is_cuda:
        neg_logit = hidden @ table[neg].T + neg_bias
        neg_logit = neg_logit.masked_fill(neg[None, :] == labels[:, None], float("-inf"))
        logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(labels), dtype=torch.long, device=device))
    low = torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", enabled=False):
        hidden, pos_logit = hidden.float(), pos_logit.float()
        # a negative that happens to be the row's own target is left out of its softmax
        lse = _TiledLogSumExp.apply(hidden, table[neg].float(), neg_bias.float(), low, neg, labels)
        return (torch.logaddexp(pos_logit, lse) - pos_logit).mean()


_LOSS_TILE = 1024  # rows and candidates per tile of the CPU loss: 4 MB of logits


class _TiledLogSumExp(torch.autograd.Function):
    """``logsumexp(hidden @ weight.T + bias, dim=1)``, one tile at a time.

    The (rows, candidates) logits are never stored whole: the forward pass keeps each
    row's log-sum-exp, and the backward pass recomputes the logits a tile of
    ``_LOSS_TILE`` rows by ``_LOSS_TILE`` candidates at a time, turning each tile into
    its gradients while it is still in the cache. The matrix is far larger than the
    caches (6,400 targets by 9,700 items is 250 MB), and each plain pass over it costs
    more than the products: on 2 CPU cores a step's loss takes a third to a half of
    the time of the plain expression, for one extra matrix product.

    ``ids`` and ``labels`` (optional): the item of each candidate and the target of
    each row; a candidate that is its row's target is left out (a sampled negative
    that hit the positive). With ``low`` the products take bfloat16 inputs (as
    autocast would), while the log-sum-exp and every gradient stay float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, low=False, ids=None, labels=None):  # noqa: D102
        h, w = (hidden.bfloat16(), weight.bfloat16()) if low else (hidden, weight)
        lse = torch.empty(hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        for rows, cols, logits in _loss_tiles(h, w, bias, ids, labels):
            part = torch.logsumexp(logits, 1)
            lse[rows] = part if cols.start == 0 else torch.logaddexp(lse[rows], part)
        ctx.save_for_backward(hidden, weight, bias, lse, ids, labels)
        ctx.low = low
        return lse

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        hidden, weight, bias, lse, ids, labels = ctx.saved_tensors
        low = ctx.low
        h, w = (hidden.bfloat16(), weight.bfloat16()) if low else (hidden, weight)
        lse = lse.masked_fill(torch.isinf(lse), 0.0)  # a row with no candidate left
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros_like(bias)
        for rows, cols, logits in _loss_tiles(h, w, bias, ids, labels):
            # softmax of this tile, times d(loss)/d(lse) of its rows
            p = logits.sub_(lse[rows, None]).exp_().mul_(grad[rows, None])
            pl = p.bfloat16() if low else p
            grad_hidden[rows] += _product(pl, w[cols])
            grad_weight[cols] += _product(pl.T, h[rows])
            grad_bias[cols] += p.sum(0)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def _loss_tiles(h, w, bias, ids, labels):
    """(rows, candidates, float32 logits) of every tile of ``h @ w.T + bias``, with a
    candidate that is its row's label at minus infinity."""
    for r in range(0, h.shape[0], _LOSS_TILE):
        rows = slice(r, r + _LOSS_TILE)
        for c in range(0, w.shape[0], _LOSS_TILE):
            cols = slice(c, c + _LOSS_TILE)
            logits = _product(h[rows], w[cols].T).add_(bias[cols])
            if ids is not None:
                logits.masked_fill_(ids[None, cols] == labels[rows, None], float("-inf"))
            yield rows, cols, logits


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` as float32, whatever the inputs' precision."""
    return torch.mm(a, b).float() if a.dtype == torch.bfloat16 else torch.mm(a, b)
