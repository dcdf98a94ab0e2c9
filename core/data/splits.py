"""One home for splits: which part of each history a model learns from, is validated
and is tested on.

- :func:`leave_one_out` is what training holds out (the last item of every user; the
  one before it for :func:`validation_users`); every evaluation and page agrees with it.
- :class:`EvalSplit` is what an evaluation tests on: leave-one-out
  (:func:`loo_split`) or a global temporal cut-off (:func:`time_split`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.sequences import Sequences

# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Split:
    """Leave-one-out split of every user's history.

    Attributes:
        train (Sequences): training part of each history: the last two items removed
            for validation users, the last one for other users with at least 3 items,
            the whole history otherwise.
        val_users (np.ndarray): users with a validation target (:func:`validation_users`).
        val_targets (np.ndarray): their second-to-last item.
    """

    train: Sequences
    val_users: np.ndarray
    val_targets: np.ndarray


VAL_USERS_MIN = 2000  # up to this many users with 3+ items, every one of them validates
VAL_SHARE = 0.1  # beyond that, this share of them (at least VAL_USERS_MIN)
VAL_SEED = 0  # fixed, so that training and every evaluation draw the same users


def validation_users(lengths: np.ndarray) -> np.ndarray:
    """The users whose second-to-last item is held out for validation (sorted).

    Only users with 3+ items qualify (the last item is the test target). Up to
    ``VAL_USERS_MIN`` of them, all do; beyond that a seeded sample of
    ``max(VAL_USERS_MIN, VAL_SHARE * eligible)`` does, and everyone else's
    second-to-last item is training data. On a large dataset the model thus learns
    from most users' most recent events before the test item, as a deployed model
    would, at the price of a validation figure over fewer (still thousands of) users.
    The draw depends only on ``lengths``, so every run and evaluation agrees.

    >>> validation_users(np.array([3, 2, 5])).tolist()
    [0, 2]
    >>> len(validation_users(np.full(40_000, 4)))
    4000
    """
    eligible = np.flatnonzero(lengths >= 3)
    n = min(len(eligible), max(VAL_USERS_MIN, int(np.ceil(VAL_SHARE * len(eligible)))))
    if n == len(eligible):
        return eligible
    rng = np.random.default_rng(VAL_SEED)
    return np.sort(rng.choice(eligible, n, replace=False))


def leave_one_out(seqs: Sequences) -> Split:
    """Hold out each user's last item (test) and, for :func:`validation_users`, the
    second-to-last (validation)."""
    lengths = seqs.lengths
    val_users = validation_users(lengths)
    held = np.where(lengths >= 3, 1, 0)
    held[val_users] = 2
    keep_len = lengths - held
    starts = seqs.offsets[:-1]
    new_offsets = np.concatenate([[0], np.cumsum(keep_len)])
    take = np.repeat(starts, keep_len) + (
        np.arange(keep_len.sum()) - np.repeat(new_offsets[:-1], keep_len)
    )
    train = seqs.with_items(new_offsets.astype(np.int64), take)
    val_targets = seqs.items[seqs.offsets[val_users + 1] - 2]
    return Split(train, val_users, val_targets)


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalSplit:
    """What every model may learn from, and what it is tested on.

    Attributes:
        kind (str): ``loo`` or ``time``.
        fit (Sequences): each user's training events (a prefix of their history);
            every baseline fits on exactly this.
        train_input (Sequences): what to hand to :func:`core.training.loop.train` (which holds
            out the test and validation items itself) so that it learns from ``fit``
            at most: the full histories for leave-one-out, ``fit`` for the time split.
        inputs (Sequences): each user's input history at test time (everything before
            the target).
        users (np.ndarray): evaluated user numbers.
        targets (np.ndarray): their test item.
        fit_times (np.ndarray | None): time of each event of ``fit`` (Unix seconds).
        note (str): how the split was made, for labels.
    """

    kind: str
    fit: Sequences
    train_input: Sequences
    inputs: Sequences
    users: np.ndarray
    targets: np.ndarray
    fit_times: np.ndarray | None = None
    note: str = ""


def _prefix(seqs: Sequences, keep: np.ndarray) -> tuple[Sequences, np.ndarray]:
    """The first ``keep[u]`` events of every user; also the positions taken."""
    keep = np.minimum(keep, seqs.lengths).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    take = np.repeat(seqs.offsets[:-1], keep) + (
        np.arange(offsets[-1]) - np.repeat(offsets[:-1], keep)
    )
    return Sequences(seqs.user_ids, seqs.item_ids, offsets, seqs.items[take]), take


def loo_split(seqs: Sequences, times: np.ndarray | None = None) -> EvalSplit:
    """Leave-one-out: last item = test, the rest the input; training = :func:`leave_one_out`.

    >>> s = Sequences(np.array(["a", "b"], dtype=object), np.array(["", "x", "y", "z"],
    ...     dtype=object), np.array([0, 4, 6]), np.array([1, 2, 3, 1, 2, 3], dtype=np.int32))
    >>> sp = loo_split(s)
    >>> sp.users.tolist(), sp.targets.tolist(), sp.fit.history(0).tolist()
    ([0], [1], [1, 2])
    >>> sp.inputs.history(0).tolist(), sp.fit.history(1).tolist()
    ([1, 2, 3], [2, 3])
    """
    train = leave_one_out(seqs).train
    users = np.flatnonzero(seqs.lengths >= 3)
    targets = seqs.items[seqs.offsets[users + 1] - 1].astype(np.int64)
    inputs, _ = _prefix(seqs, seqs.lengths - (seqs.lengths >= 3))
    _, taken = _prefix(seqs, train.lengths)
    return EvalSplit(
        "loo",
        train,
        seqs,
        inputs,
        users,
        targets,
        None if times is None else times[taken],
        "leave-one-out: last item of each user (3+ events) is the test target",
    )


def time_split(
    seqs: Sequences, times: np.ndarray, cutoff: float | None = None, quantile: float = 0.9
) -> EvalSplit:
    """Global temporal split at ``cutoff`` (default: the ``quantile`` of all event times).

    Events before the cut-off are training data; every user with events on both sides
    is tested on their first event at or after it, given their events before it.

    >>> s = Sequences(np.array(["a", "b"], dtype=object), np.array(["", "x", "y", "z"],
    ...     dtype=object), np.array([0, 3, 5]), np.array([1, 2, 3, 2, 1], dtype=np.int32))
    >>> sp = time_split(s, np.array([1.0, 2, 9, 3, 4]), cutoff=5)
    >>> sp.users.tolist(), sp.targets.tolist(), sp.fit.lengths.tolist()
    ([0], [3], [2, 2])
    """
    if times is None or len(times) != len(seqs.items) or np.isnan(times).any():
        raise ValueError(
            "the time split needs a timestamp on every event; this dataset has none "
            "(use the leave-one-out split)"
        )
    if cutoff is None:
        cutoff = float(np.quantile(times, quantile))
    before = (times < cutoff).astype(np.int64)
    # Histories are time-ordered, so the events before the cut-off are a prefix.
    keep = np.add.reduceat(before, seqs.offsets[:-1]) if len(before) else before
    keep = np.where(seqs.lengths > 0, keep, 0)
    fit, taken = _prefix(seqs, keep)
    users = np.flatnonzero((keep >= 1) & (seqs.lengths > keep))
    targets = seqs.items[seqs.offsets[users] + keep[users]].astype(np.int64)
    stamp = pd.Timestamp(cutoff, unit="s").isoformat(timespec="seconds")
    return EvalSplit(
        "time",
        fit,
        fit,
        fit,
        users,
        targets,
        times[taken],
        f"global temporal split at {stamp}: next item after the cut-off is the test target",
    )


def make_split(seqs: Sequences, kind: str = "loo", times: np.ndarray | None = None) -> EvalSplit:
    """:func:`loo_split` or :func:`time_split` by name."""
    if kind == "loo":
        return loo_split(seqs, times)
    if kind == "time":
        return time_split(seqs, times)
    raise ValueError(f"unknown split {kind!r}: choose loo or time")


def event_times(store, dataset: str) -> np.ndarray | None:
    """Unix time of every event, aligned with :func:`core.data.sequences.dataset_sequences`'s items;
    None when the dataset has no timestamps."""
    info = store.get_dataset(dataset)
    if not info.has_time:
        return None
    table = store.event_times_arrow(info.dataset_id)
    values = table.column("times").combine_chunks().flatten()
    times = values.to_numpy(zero_copy_only=False).astype(np.float64)
    return None if np.isnan(times).any() else times
