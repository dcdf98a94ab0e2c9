"""Per-user item sequences: the hand-off from the store to the models.

DuckDB orders each user's events (time, then file order) and aggregates them
into lists; the lists reach numpy through Arrow without a Python loop over
users or events. Items are re-indexed 1..n by popularity; 0 is padding and
``n + 1`` is reserved for the mask token of masked-item training. What training,
evaluation and serving read is :func:`dataset_sequences`: the log's sequences with the
catalogue-only items appended to the vocabulary. :func:`transition_pairs` counts what
followed what (the Markov baseline and the transition memory read it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from core.common.columns import Columns
from core.store import Store

PAD = 0


@dataclass(frozen=True)
class Sequences:
    """All users' histories in CSR form.

    Attributes:
        user_ids (np.ndarray[str]): shape (n_users,), sorted.
        item_ids (np.ndarray[str]): shape (n_items + 1,); ``item_ids[i]`` is the id of
            item index ``i``; ``item_ids[0]`` is ``""`` (padding).
        offsets (np.ndarray[int64]): shape (n_users + 1,); user ``u``'s history is
            ``items[offsets[u]:offsets[u + 1]]``.
        items (np.ndarray[int32]): shape (n_events,), item indices in history order.
        types (np.ndarray[int32] | None): shape (n_events,), event-type indices aligned
            with ``items`` (1..T, 0 = no type), when loaded with types.
        type_names (tuple[str, ...]): names of types 1..T.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    types: np.ndarray | None = None
    type_names: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of real items (indices 1..n_items)."""
        return len(self.item_ids) - 1

    @property
    def mask_index(self) -> int:
        """The reserved index of the mask token (one past the last item)."""
        return self.n_items + 1

    @property
    def lengths(self) -> np.ndarray:
        """History length of every user, shape (n_users,)."""
        return np.diff(self.offsets)

    def history(self, user: int) -> np.ndarray:
        """Item indices of user number ``user``, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def padded(self, max_len: int, users: np.ndarray | None = None) -> np.ndarray:
        """The last ``max_len`` items of each user, left-padded with 0.

        Args:
            max_len (int): row width; longer histories keep their most recent items.
            users (np.ndarray | None): user numbers to include (default all).

        Returns:
            np.ndarray[int32] of shape (len(users), max_len), most recent item in the
            last column.
        """
        return self._padded(self.items, max_len, users)

    def padded_types(self, max_len: int, users: np.ndarray | None = None) -> np.ndarray:
        """:meth:`padded` for the event types (requires ``types``)."""
        if self.types is None:
            raise ValueError("these sequences were loaded without event types")
        return self._padded(self.types, max_len, users)

    def with_items(self, offsets: np.ndarray, take: np.ndarray) -> Sequences:
        """The same users and vocabulary with the events ``take`` (CSR ``offsets``)."""
        types = None if self.types is None else self.types[take]
        return Sequences(
            self.user_ids, self.item_ids, offsets, self.items[take], types, self.type_names
        )

    def _padded(self, values: np.ndarray, max_len: int, users: np.ndarray | None) -> np.ndarray:
        users = np.arange(self.n_users) if users is None else np.asarray(users)
        return left_padded(values, self.offsets[users], self.offsets[users + 1], max_len)


def left_padded(
    values: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    width: int,
    dtype: type = np.int32,
) -> np.ndarray:
    """Rows of ``values[starts[r]:ends[r]]``, each cut to its last ``width`` values and
    left-padded with :data:`PAD` (0): the form every model input starts from.

    >>> left_padded(np.array([1, 2, 3, 4]), np.array([0, 3]), np.array([3, 4]), 2).tolist()
    [[2, 3], [0, 4]]
    """
    lengths = np.minimum(ends - starts, width)
    out = np.zeros((len(starts), width), dtype=dtype)  # PAD is 0: fresh zeroed pages
    rows = np.repeat(np.arange(len(starts)), lengths)
    # Position of each kept value inside its row, counted from the row's first kept one.
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = width - np.repeat(lengths, lengths) + within
    out[rows, cols] = values[np.repeat(ends - lengths, lengths) + within]
    return out


def transition_pairs(train: Sequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, next item, count) of every distinct consecutive pair of the histories.

    >>> s = Sequences(np.array(["a", "b"], dtype=object), np.array(["", "x", "y", "z"],
    ...     dtype=object), np.array([0, 3, 5]), np.array([1, 2, 3, 1, 2], dtype=np.int32))
    >>> [x.tolist() for x in transition_pairs(s)]
    [[1, 2], [2, 3], [2, 1]]
    """
    vocab = train.n_items + 2
    follows = np.ones(len(train.items), dtype=bool)
    follows[train.offsets[:-1][train.lengths > 0]] = False  # a user's first event
    nxt = np.flatnonzero(follows)
    keys, counts = np.unique(
        train.items[nxt - 1].astype(np.int64) * vocab + train.items[nxt], return_counts=True
    )
    return keys // vocab, keys % vocab, counts


def from_arrow(table: pa.Table, vocab: pa.Table) -> Sequences:
    """Build :class:`Sequences` from ``Store.sequences_arrow`` output (zero-copy where possible)."""
    lists = table.column("items").combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    items = lists.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    offsets = offsets - offsets[0]
    user_ids = np.asarray(table.column(Columns.USER).to_numpy(zero_copy_only=False), dtype=object)
    item_ids = np.concatenate(
        [np.array([""], dtype=object), vocab.column(Columns.ITEM).to_numpy(zero_copy_only=False)]
    )
    return Sequences(user_ids=user_ids, item_ids=item_ids, offsets=offsets, items=items)


def load_sequences(store: Store, dataset: str, with_types: bool = False) -> Sequences:
    """Every user's item sequence of ``dataset``, ordered by time then file order.

    With ``with_types``, also each event's type (see :attr:`Sequences.types`).
    """
    info = store.get_dataset(dataset)
    table, vocab = store.sequences_arrow(info.dataset_id)
    seqs = from_arrow(table, vocab)
    if not with_types:
        return seqs
    types, names = store.event_types_arrow(info.dataset_id)
    values = types.column("types").combine_chunks().values.to_numpy(zero_copy_only=False)
    return replace(seqs, types=values.astype(np.int32, copy=False), type_names=tuple(names))


def dataset_sequences(store: Store, dataset: str, with_types: bool = False) -> Sequences:
    """The dataset's sequences, with catalogue-only items appended to the vocabulary.

    Items that appear only in the item file get indices after every item with
    events, so the model can score them from their text (cold start).
    """
    seqs = load_sequences(store, dataset, with_types)
    extra = store.catalog_only_items(store.get_dataset(dataset).dataset_id)
    if not extra:
        return seqs
    item_ids = np.concatenate([seqs.item_ids, np.asarray(extra, dtype=object)])
    return replace(seqs, item_ids=item_ids)
