"""What an evaluation ranks: the :class:`Scorer` interface our models and every
baseline share, and :class:`ModelScorer`, a :class:`core.models.bert.PreferenceModel` as one.

The counting baselines of :mod:`core.models.baselines` implement it beside it, the causal
one (:mod:`core.training.baselines`) is a :class:`ModelScorer`, and
:mod:`core.evaluation.runner` and :mod:`core.serving.recommend` rank through it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from core.models.bert import PreferenceModel
from core.models.inputs import history_width, query_inputs


def hide_non_items(scores: torch.Tensor) -> torch.Tensor:
    """Set the columns of (..., n_items + 2) scores that are not items (0, the padding,
    and the last, the mask token) to ``-inf``, in place; returns ``scores``.

    >>> hide_non_items(torch.zeros(1, 4)).tolist()
    [[-inf, 0.0, 0.0, -inf]]
    """
    scores[..., 0] = float("-inf")
    scores[..., -1] = float("-inf")
    return scores


class Scorer(Protocol):
    """What the evaluation ranks: our models and every baseline alike.

    Attributes:
        name: key in results (``pop``, a model name...).
        history_len: how many of the most recent items :meth:`score` reads.
    """

    name: str
    history_len: int

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """(batch, history_len) left-padded item indices (0 = padding, most recent
        last) -> (batch, n_items + 2) float32 scores (columns 0 and n_items + 1 are
        ignored). The evaluation may modify the returned tensor."""
        ...


class ModelScorer:
    """A :class:`core.models.bert.PreferenceModel` (bidirectional, or causal for SASRec) as a
    scorer.

    Its queries are built by :mod:`core.models.inputs`, as serving's are: the last
    ``max_len - 1`` items, followed by the mask token for the bidirectional model.
    """

    def __init__(self, model: PreferenceModel, name: str) -> None:
        self.model = model.eval()
        self.name = name
        self.history_len = history_width(model.config)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def embed(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user states (batch, hidden), item table (n_items + 2, hidden), item bias):
        the scores are ``states @ table.T + bias``."""
        model = self.model
        inputs = query_inputs(histories.to(self.device), model.config)
        table = model.item_table()
        states = model.head(model.encode(inputs, table=table)[:, -1])
        return states.float(), table.float(), model.item_bias.float()

    @torch.no_grad()
    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """Next-item scores; with a transition memory, its log-probabilities."""
        states, table, bias = self.embed(histories)
        logits = torch.addmm(bias, states, table.T)
        if not self.model.config.transitions:
            return logits
        last = histories[:, -1].to(self.device).long()
        return self.model.with_transitions(hide_non_items(logits), last)
