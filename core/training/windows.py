"""What a training step reads: histories cut into windows, and windows into masked batches.

A history gives left-padded windows of up to ``max_len`` items (:func:`training_windows`)
and, for next-item training, one window per prefix (:func:`prefix_ends`). Each epoch
draws its windows (:meth:`TrainingWindows.draw`) into batches of similar length
(:func:`length_bucketed_batches`), and each batch is turned into model inputs and
targets the way the model learns: cloze masking (:func:`mask_batch`), every item from
the ones before it (:func:`prefix_targets`), or the next item (:func:`causal_batch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.data.sequences import Sequences, left_padded
from core.models.bert import ModelConfig
from core.training.config import TrainConfig

TYPE_DROPOUT = 0.25  # training windows whose event types are all hidden


def training_windows(
    train: Sequences, max_len: int, values: np.ndarray | None = None
) -> np.ndarray:
    """All training windows, shape (n_windows, max_len), left-padded.

    ``values`` (aligned with ``train.items``, e.g. ``train.types``) are cut into the
    same windows instead of the items.

    A history of length n gives the window ending at its last item, plus windows
    ending every ``max_len // 2`` items earlier while they still hold 2+ items.
    """
    lengths = train.lengths
    stride = max(1, max_len // 2)
    n_extra = np.maximum(0, np.ceil((lengths - max_len) / stride)).astype(np.int64)
    n_windows = np.where(lengths >= 2, 1 + n_extra, 0)
    users = np.repeat(np.arange(train.n_users), n_windows)
    k = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    ends = train.offsets[users + 1] - k * stride  # exclusive end of each window
    return windows_ending_at(train, users, ends, max_len, values)


def prefix_ends(train: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Every next-item prefix of the training histories: (users, exclusive ends).

    A history of n items has n - 1 prefixes of 2+ items; the window ending at
    ``end`` asks for the item at ``end - 1`` given the ones before it, which is
    exactly the question a recommendation asks.
    """
    lengths = np.maximum(train.lengths - 1, 0)
    users = np.repeat(np.arange(train.n_users), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return users, train.offsets[users] + 2 + within


def windows_ending_at(
    train: Sequences,
    users: np.ndarray,
    ends: np.ndarray,
    max_len: int,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Left-padded windows of up to ``max_len`` items of ``users`` ending before ``ends``."""
    source = train.items if values is None else values
    return left_padded(source, train.offsets[users], ends, max_len, np.int64)


def length_bucketed_batches(
    lengths: np.ndarray, batch: int, generator: torch.Generator, pool: int = 64
) -> list[np.ndarray]:
    """Shuffled batches of window indices, each drawn from windows of similar length.

    Windows are shuffled, cut into pools of ``pool`` batches, sorted by length
    inside each pool and cut into batches, whose order is shuffled again. Each
    batch can then drop the padding columns none of its windows needs, which
    saves most of the work on datasets with short histories.
    """
    order = torch.randperm(len(lengths), generator=generator).numpy()
    batches = []
    for start in range(0, len(order), batch * pool):
        chunk = order[start : start + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    shuffle = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffle]


def mask_batch(
    windows: torch.Tensor,
    mask_index: int,
    mask_prob: float,
    last_item_prob: float,
    generator: torch.Generator,
    force_last: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloze-mask a batch of windows.

    ``force_last`` (bool per row) marks next-item windows, which always have only
    their final item masked.

    Returns:
        (inputs, mask): inputs with masked positions replaced by ``mask_index`` and
        the boolean mask of positions to predict (at least one per row).
    """
    real = windows != 0
    mask = (torch.rand(windows.shape, generator=generator) < mask_prob) & real
    last_only = torch.rand(windows.shape[0], generator=generator) < last_item_prob
    if force_last is not None:
        last_only |= force_last
    mask[last_only] = False
    mask[:, -1] |= last_only
    mask[~mask.any(1), -1] = True  # every row predicts something
    inputs = windows.masked_fill(mask, mask_index)
    return inputs, mask


def prefix_targets(windows: torch.Tensor) -> torch.Tensor:
    """The positions of left-padded ``windows`` that have an item before them: what a
    ``prefix`` model is asked for in one pass (every item but each window's first)."""
    real = windows != 0
    targets = torch.zeros_like(real)
    targets[:, 1:] = real[:, 1:] & real[:, :-1]
    return targets


def causal_batch(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-item targets for a left-to-right model: every item predicts the one after it.

    Returns:
        (inputs, mask, labels): ``windows`` without its last column, the positions that
        have a next item, and ``windows`` without its first column.
    """
    inputs, labels = windows[:, :-1], windows[:, 1:]
    return inputs, (inputs != 0) & (labels != 0), labels


@dataclass
class Batch:
    """One step's model inputs: what the model reads, the positions it is asked for, the
    items it should name there (``labels``, aligned with ``inputs``) and the event types
    (or None)."""

    inputs: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    types: torch.Tensor | None


@dataclass
class EpochWindows:
    """One epoch's windows: the run's own, then that epoch's draw of next-item prefixes
    (``force_last`` marks them; None when there are none)."""

    windows: np.ndarray
    types: np.ndarray | None
    lengths: np.ndarray
    force_last: np.ndarray | None = None


@dataclass
class TrainingWindows:
    """A run's training windows, and how each epoch draws them into batches.

    ``windows`` are every history's windows (``types``: the same windows of event types,
    when the model reads them), repeated on a small dataset so that an epoch has enough
    steps; ``n_next`` of the next-item prefixes (``next_users``, ``next_ends``) are
    drawn afresh every epoch.
    """

    train: Sequences
    config: TrainConfig
    mask_index: int
    every_prefix: bool
    windows: np.ndarray
    types: np.ndarray | None
    lengths: np.ndarray
    next_users: np.ndarray | None = None
    next_ends: np.ndarray | None = None
    n_next: int = 0

    @classmethod
    def build(
        cls, train: Sequences, config: TrainConfig, model_config: ModelConfig
    ) -> TrainingWindows:
        """The windows of ``train`` for a run of ``config`` training ``model_config``.

        Raises:
            ValueError: when no history has the two items a window needs.
        """
        windows = training_windows(train, config.max_len)
        if len(windows) == 0:
            raise ValueError("no user has 2 or more training events: nothing to learn from")
        types = None
        if model_config.n_event_types:
            types = training_windows(train, config.max_len, train.types)
        # Next-item windows: a fresh random share of all prefixes each epoch, masked at
        # their final item only (the question a recommendation asks).
        n_next, next_users, next_ends = 0, None, None
        every_prefix = model_config.attention == "prefix"
        if config.next_item_share and not config.causal and not every_prefix:
            next_users, next_ends = prefix_ends(train)
            n_next = int(round(config.next_item_share * len(next_ends)))
        copies = max(
            1, math.ceil(config.min_steps_per_epoch * config.batch / (len(windows) + n_next))
        )
        if copies > 1:
            windows = np.tile(windows, (copies, 1))
            if types is not None:
                types = np.tile(types, (copies, 1))
        return cls(
            train=train,
            config=config,
            mask_index=model_config.mask_index,
            every_prefix=every_prefix,
            windows=windows,
            types=types,
            lengths=(windows != 0).sum(1),
            next_users=next_users,
            next_ends=next_ends,
            n_next=n_next,
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil((len(self.windows) + self.n_next) / self.config.batch)

    def draw(self, generator: torch.Generator) -> EpochWindows:
        """This epoch's windows: the run's own and a fresh draw of next-item prefixes."""
        if not self.n_next:
            return EpochWindows(self.windows, self.types, self.lengths)
        max_len = self.config.max_len
        pick = torch.randperm(len(self.next_ends), generator=generator)[: self.n_next].numpy()
        users, ends = self.next_users[pick], self.next_ends[pick]
        cut = windows_ending_at(self.train, users, ends, max_len)
        windows = np.concatenate([self.windows, cut])
        types = None
        if self.types is not None:
            cut = windows_ending_at(self.train, users, ends, max_len, self.train.types)
            types = np.concatenate([self.types, cut])
        widths = np.minimum(ends - self.train.offsets[users], max_len)
        lengths = np.concatenate([self.lengths, widths])
        force_last = np.arange(len(windows)) >= len(self.windows)
        return EpochWindows(windows, types, lengths, force_last)

    def batch(self, epoch: EpochWindows, idx: np.ndarray, generator: torch.Generator) -> Batch:
        """The model inputs and targets of the windows ``idx`` of ``epoch``, without the
        padding columns none of them needs."""
        config = self.config
        width = int(epoch.lengths[idx].max())
        windows = torch.as_tensor(epoch.windows[idx, config.max_len - width :])
        types = None
        if epoch.types is not None:
            types = torch.as_tensor(epoch.types[idx, config.max_len - width :])
        if config.causal:
            inputs, mask, windows = causal_batch(windows)
            types = None if types is None else types[:, :-1]
        elif self.every_prefix:  # every item asked for from the items before it
            inputs, mask = windows, prefix_targets(windows)
        else:
            inputs, mask = mask_batch(
                windows,
                self.mask_index,
                config.mask_prob,
                config.last_item_prob,
                generator,
                None if epoch.force_last is None else torch.as_tensor(epoch.force_last[idx]),
            )
            if types is not None:  # a masked event's type would give it away
                types = types.masked_fill(mask, 0)
        if types is not None:
            unknown = torch.rand(len(idx), generator=generator) < TYPE_DROPOUT
            types[unknown] = 0
        return Batch(inputs, mask, windows, types)
