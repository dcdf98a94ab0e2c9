"""What the model reads to predict a next item: the one place a history becomes a query.

A history is a row of item indices, oldest first, left-padded with 0 so that its most
recent item sits in the last column. Positions count from the right (see
:meth:`core.models.bert.PreferenceModel.encode`), so a batch of rows can drop the padding
columns none of its rows needs without changing what any row means.

To ask for the next item,

* a bidirectional model reads the history followed by the mask token (the oldest
  column makes room for it), and predicts at the mask;
* a causal (left-to-right) model reads the history as it is, and predicts from its last
  position.

Validation and the transition memory (:mod:`core.training`), evaluation
(:class:`core.models.scoring.ModelScorer`), recommendations, interests and the export
(:mod:`core.serving`) all build their queries here. Training windows are cut by
:mod:`core.training.windows`, from the same left-padded rows
(:func:`core.data.sequences.left_padded`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.data.sequences import PAD, left_padded
from core.models.bert import ModelConfig, append_mask


def history_width(config: ModelConfig) -> int:
    """Columns of history a query reads: ``max_len`` for a bidirectional model (the
    oldest of them gives way to the mask token), ``max_len - 1`` for a causal one."""
    return config.max_len - 1 if config.causal else config.max_len


def history_rows(histories: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Item-index arrays (oldest first; an empty one is a cold user) -> (n, width) int64
    rows, left-padded with 0, each keeping its most recent ``width`` items.

    >>> history_rows([np.array([5, 6, 7]), np.array([], dtype=np.int64)], 2).tolist()
    [[6, 7], [0, 0]]
    """
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    ends = np.cumsum(lengths)
    values = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories] or [[]])
    return left_padded(values, ends - lengths, ends, width, np.int64)


def query_widths(histories: np.ndarray | torch.Tensor, config: ModelConfig) -> np.ndarray:
    """Per row of left-padded ``histories``, the input columns its query needs: its items
    (at least one column for a causal model) or, bidirectional, the items that stay once
    the mask has taken the oldest column, plus the mask."""
    real = histories != PAD
    real = real.cpu().numpy() if isinstance(real, torch.Tensor) else real
    if config.causal:
        return np.maximum(real.sum(1), 1)
    return real[:, 1:].sum(1) + 1


def query_inputs(
    histories: torch.Tensor,
    config: ModelConfig,
    width: int | None = None,
    mask_value: int | None = None,
) -> torch.Tensor:
    """The model's input for each row of left-padded ``histories`` (batch, n_cols).

    Args:
        width: columns kept from the right (default: as many as the widest row needs).
        mask_value: what stands in the mask token's column (default the mask token;
            event types pass 0, "no type").

    Returns:
        (batch, width) long tensor: the rows as they are for a causal model; for a
        bidirectional one, the last ``n_cols - 1`` items followed by the mask.
    """
    histories = histories.long()
    if width is None:
        width = int(query_widths(histories, config).max()) if len(histories) else 1
    if config.causal:
        inputs = histories
    else:
        inputs = append_mask(histories, config.mask_index if mask_value is None else mask_value)
    return inputs[:, histories.shape[1] - width :]


def shortest_first(lengths: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """Row numbers in batches of ``batch``, shortest ``lengths`` first (ties in order),
    so that each batch is only as wide as its own longest row."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch):
        yield order[start : start + batch]


@dataclass
class QueryBatch:
    """One batch of queries: the row numbers it answers, their full left-padded
    histories (a tensor on the model's device), the trimmed model inputs and the trimmed
    event types (or None)."""

    rows: np.ndarray
    histories: torch.Tensor
    inputs: torch.Tensor
    types: torch.Tensor | None


def query_batches(
    histories: np.ndarray,
    config: ModelConfig,
    batch: int,
    device: torch.device | str = "cpu",
    types: np.ndarray | None = None,
) -> Iterator[QueryBatch]:
    """Model inputs for left-padded ``histories``, ``batch`` rows at a time, shortest
    first, each batch trimmed to the columns its rows need (see :func:`query_inputs`).

    Args:
        types: the histories' event types (same shape), for a model that reads them.
    """
    widths = query_widths(histories, config)
    for rows in shortest_first(widths, batch):
        width = int(widths[rows].max())
        hist = torch.as_tensor(histories[rows], device=device).long()
        kinds = None
        if types is not None:
            kinds = torch.as_tensor(types[rows], device=device).long()
            kinds = query_inputs(kinds, config, width, mask_value=0)
        yield QueryBatch(rows, hist, query_inputs(hist, config, width), kinds)
