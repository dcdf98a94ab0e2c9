"""A trained model loaded for serving: its dataset's histories and catalogue, and the
model's answers for any history (next-item probabilities, interest vectors, logits).

:func:`load_model_data` gives a :class:`ModelData` (the model, every user's history in
the model's index space, the :class:`Catalog` of titles, categories and popularity);
:mod:`core.serving.recommend`, :mod:`core.serving.interests` and
:mod:`core.serving.exports` answer from it. Every query is built by
:mod:`core.models.inputs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.common.columns import Columns
from core.common.tables import category_list, text_or_empty
from core.data.sequences import Sequences, dataset_sequences
from core.data.splits import leave_one_out
from core.models.checkpoint import SavedModel
from core.models.inputs import history_rows, history_width, query_batches, query_inputs
from core.models.registry import model_dataset
from core.models.scoring import hide_non_items
from core.store import Store


def item_index(saved: SavedModel) -> dict[str, int]:
    """Item id -> index of a loaded model, built once per model (not per request)."""
    index = saved.__dict__.get("_item_index")
    if index is None:
        index = saved.__dict__["_item_index"] = saved.index_of()
    return index


def encode_history(saved: SavedModel, history: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Item ids -> model indices (oldest first); also returns the ids the model doesn't know."""
    index = item_index(saved)
    known = [index[i] for i in history if i in index]
    unknown = [i for i in history if i not in index]
    return np.asarray(known, dtype=np.int64), unknown


def _queries(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """The model's inputs for item-index arrays (oldest first): see :mod:`core.models.inputs`."""
    rows = history_rows(histories, history_width(saved.config))
    return query_inputs(torch.from_numpy(rows), saved.config)


@torch.no_grad()
def next_item_probabilities(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Softmax over all items of the next interaction, one row per history.

    Args:
        histories: item-index arrays (oldest first); an empty one is a cold user.

    Returns:
        (len(histories), n_items + 2) probabilities (0 for padding and mask columns).
    """
    logits = saved.model.next_item_logits(_queries(saved, histories))
    return torch.softmax(logits.float(), dim=-1)


@torch.no_grad()
def head_states(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """The interest vector of each history: the output-head state at an appended mask.

    Its dot product with the item table plus the item bias gives the next-item logits
    (see :func:`logits_from_states`). Shape (len(histories), hidden).
    """
    model = saved.model
    table = model.item_table()
    return model.head(model.encode(_queries(saved, histories), table=table)[:, -1])


@torch.no_grad()
def logits_from_states(
    saved: SavedModel, states: torch.Tensor, table=None, last: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-item logits of head states (n, hidden), as ``PreferenceModel.score`` computes.

    One fused multiply-add and two column writes: the padding and mask columns are -inf.
    With ``last`` (the last item of each state's history, 0 = none) and a model with a
    transition memory, the memory is applied too (log-probabilities, see
    :meth:`core.models.bert.PreferenceModel.with_transitions`); without ``last``, these are the
    Transformer's own logits (an interest vector alone).
    """
    model = saved.model
    table = model.item_table() if table is None else table
    logits = torch.addmm(model.item_bias, states.reshape(-1, states.shape[-1]), table.T)
    hide_non_items(logits)
    if last is not None:
        logits = model.with_transitions(logits, last.reshape(-1).long())
    return logits.reshape(*states.shape[:-1], -1)


# --------------------------------------------------------------------------- the catalogue


@dataclass
class Catalog:
    """What the pages show about items, indexed by the model's item index.

    Attributes:
        item_ids: index -> item id (index 0 is padding).
        titles: index -> title ("" when unknown).
        categories: index -> list of categories (empty when unknown).
        counts: index -> training events (the leave-one-out training part of every
            history: the test and validation items left out, as in training).
        pop_rank: index -> 1-based popularity rank by ``counts`` (0 for padding/mask).
    """

    item_ids: np.ndarray
    titles: np.ndarray
    categories: list[list[str]]
    counts: np.ndarray
    pop_rank: np.ndarray

    @property
    def has_categories(self) -> bool:
        return any(self.categories)

    @property
    def has_titles(self) -> bool:
        return any(bool(t) for t in self.titles)

    def popular_items(self, query: str = "", limit: int = 100) -> list[str]:
        """Item ids by popularity (most training events first), those whose id or title
        contains ``query`` (case-insensitive) when given; at most ``limit``."""
        ranked = np.flatnonzero(self.pop_rank > 0)
        ranked = ranked[np.argsort(self.pop_rank[ranked], kind="stable")]
        q = query.strip().lower()
        out: list[str] = []
        for i in ranked:
            if q and q not in str(self.item_ids[i]).lower() and q not in self.titles[i].lower():
                continue
            out.append(str(self.item_ids[i]))
            if len(out) >= limit:
                break
        return out

    def category_names(self, level: str = "all") -> list[str]:
        """Categories in use, sorted; ``level`` "main" keeps each item's first category only."""
        names: set[str] = set()
        for cats in self.categories:
            names.update(cats[:1] if level == "main" else cats)
        return sorted(names)

    def category_matrix(self, level: str = "all") -> tuple[list[str], torch.Tensor]:
        """(names, (n_items + 2, n_categories) 0/1 membership matrix).

        With ``level="all"`` an item counts for every category it carries (so
        "probability mass of a category" is the probability that the next item
        carries it); with ``"main"`` only for its first one.
        """
        names = self.category_names(level)
        col = {c: i for i, c in enumerate(names)}
        rows, cols = [], []
        for i, cats in enumerate(self.categories):
            for c in cats[:1] if level == "main" else cats:
                rows.append(i)
                cols.append(col[c])
        matrix = torch.zeros(len(self.item_ids), len(names))
        if rows:
            matrix[torch.as_tensor(rows), torch.as_tensor(cols)] = 1.0
        return names, matrix

    def describe(self, indices: np.ndarray) -> pd.DataFrame:
        """item_id, title, categories, popularity_rank of the given item indices."""
        indices = np.asarray(indices, dtype=np.int64)
        return pd.DataFrame(
            {
                Columns.ITEM: self.item_ids[indices],
                "title": self.titles[indices],
                "categories": [", ".join(self.categories[i]) for i in indices],
                "popularity_rank": self.pop_rank[indices],
            }
        )


@dataclass
class ModelData:
    """A loaded model with its dataset's histories and catalogue, in the model's index space.

    Attributes:
        saved: the model.
        histories: every user's history (item indices of the model; items the model
            does not know are dropped).
        catalog: item titles, categories, popularity.
        dataset_id: the dataset's id in the store.
        owner: cache key of vectors computed from this model on this dataset version.
    """

    saved: SavedModel
    histories: Sequences
    catalog: Catalog
    dataset_id: int
    owner: str

    def user_number(self, user_id: str) -> int | None:
        pos = int(np.searchsorted(self.histories.user_ids, user_id))
        if pos < self.histories.n_users and self.histories.user_ids[pos] == user_id:
            return pos
        return None

    def history_ids(self, user_id: str) -> list[str]:
        user = self.user_number(user_id)
        if user is None:
            return []
        return list(self.catalog.item_ids[self.histories.history(user)])


def load_model_data(store: Store, saved: SavedModel) -> ModelData:
    """Histories, catalogue and cache owner of a model's dataset (which must be in ``store``)."""
    info = model_dataset(store, saved)
    seqs = dataset_sequences(store, info.name)
    index = item_index(saved)
    remap = np.asarray([index.get(i, 0) for i in seqs.item_ids], dtype=np.int32)
    mapped = remap[seqs.items]
    keep = mapped != 0
    kept_before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    offsets = kept_before[seqs.offsets]  # new CSR offsets: kept events before each user
    item_ids = np.asarray(saved.item_ids, dtype=object)
    histories = Sequences(seqs.user_ids, item_ids, offsets, mapped[keep])

    n = len(item_ids)
    titles = np.full(n + 1, "", dtype=object)
    categories: list[list[str]] = [[] for _ in range(n + 1)]
    items = store.items_frame(info.dataset_id)
    for item_id, title, cats in zip(
        items[Columns.ITEM], items["title"], items["categories"], strict=True
    ):
        i = index.get(item_id)
        if i is None:
            continue
        titles[i] = text_or_empty(title)
        categories[i] = category_list(cats)
    counts = np.bincount(leave_one_out(histories).train.items, minlength=n + 1).astype(np.int64)
    counts[0] = counts[n] = 0
    order = np.lexsort((np.arange(n + 1), -counts))
    order = order[(order != 0) & (order != n)]
    pop_rank = np.zeros(n + 1, dtype=np.int64)
    pop_rank[order] = np.arange(1, len(order) + 1)
    catalog = Catalog(
        np.concatenate([item_ids, np.array([""], dtype=object)]),
        titles,
        categories,
        counts,
        pop_rank,
    )
    owner = f"{saved.name}|{saved.training.saved}|{info.fingerprint}"
    return ModelData(saved, histories, catalog, info.dataset_id, owner)


@torch.no_grad()
def batched_states(
    saved: SavedModel,
    histories: Sequences,
    users: np.ndarray | None = None,
    batch: int = 512,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Head states at an appended mask for many users, in length-sorted batches.

    Yields:
        (user numbers, (b, hidden) states, the item table) per batch. Each batch is
        only as wide as its longest history (positions count from the right).
    """
    model = saved.model
    users = np.arange(histories.n_users) if users is None else np.asarray(users)
    rows = histories.padded(history_width(saved.config), users)
    table = model.item_table()
    for query in query_batches(rows, saved.config, batch):
        states = model.head(model.encode(query.inputs, table=table)[:, -1])
        yield users[query.rows], states, table
