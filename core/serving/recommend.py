"""Top-K recommendations from a trained preference model: lists, explanations, what-if, export.

The preference score of an item is the model's softmax probability that it is the
user's next interaction, given their history (most recent ``max_len - 1`` items).

* :func:`recommend` ranks items for any history of item ids (a stored user's, an
  edited one for what-if, or an empty one for a cold user); with a :class:`Catalog`
  it adds titles, categories and popularity ranks, and can keep one category only.
* :func:`explain` attributes each recommended item's score to the history items by
  occlusion: the score drop when every occurrence of one history item is removed,
  all variants scored in one batched forward pass.
* :func:`baseline_list` ranks for a history with a baseline of :mod:`core.evaluation.baselines`
  (fitted by :func:`fit_side_baseline`), shown side by side with the model's list;
  :func:`most_popular` lists the most popular items with their training counts.
* :func:`top_k_all` / :func:`export_top_k` rank every user of a dataset in batches
  (histories sorted by length so each batch only pays for its longest row).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from core.common.columns import Columns
from core.common.tables import category_list, text_or_empty
from core.data.sequences import Sequences, dataset_sequences
from core.data.splits import leave_one_out
from core.evaluation import baselines
from core.models.checkpoint import SavedModel
from core.models.registry import model_dataset
from core.store import ProgressFn, Store


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


def _window_batch(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Left-padded (batch, max_len) inputs: the last ``max_len - 1`` items, then the mask."""
    width = saved.config.max_len
    batch = torch.zeros(len(histories), width, dtype=torch.long)
    for row, hist in enumerate(histories):
        tail = hist[-(width - 1) :] if len(hist) else hist
        if len(tail):
            batch[row, width - 1 - len(tail) : width - 1] = torch.tensor(tail, dtype=torch.long)
    batch[:, -1] = saved.config.mask_index
    return batch


@torch.no_grad()
def next_item_probabilities(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Softmax over all items of the next interaction, one row per history.

    Args:
        histories: item-index arrays (oldest first); an empty one is a cold user.

    Returns:
        (len(histories), n_items + 2) probabilities (0 for padding and mask columns).
    """
    logits = saved.model.next_item_logits(_window_batch(saved, histories))
    return torch.softmax(logits.float(), dim=-1)


@torch.no_grad()
def head_states(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """The interest vector of each history: the output-head state at an appended mask.

    Its dot product with the item table plus the item bias gives the next-item logits
    (see :func:`logits_from_states`). Shape (len(histories), hidden).
    """
    model = saved.model
    table = model.item_table()
    return model.head(model.encode(_window_batch(saved, histories), table=table)[:, -1])


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
    logits[:, 0] = float("-inf")
    logits[:, -1] = float("-inf")
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


# --------------------------------------------------------------------------- one list


def _ranked(
    probs: torch.Tensor,
    seen: np.ndarray,
    k: int,
    exclude_seen: bool,
    allowed: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of the items that may be recommended: never padding or mask, nor
    seen items when excluded, nor items outside ``allowed``. Fewer than ``k`` (maybe
    none) when fewer are left, e.g. a user who has seen the whole catalogue."""
    available = torch.ones(len(probs), dtype=torch.bool)
    available[0] = available[-1] = False
    if exclude_seen and len(seen):
        available[torch.as_tensor(seen, dtype=torch.long)] = False
    if allowed is not None:
        available &= allowed
    k = min(max(1, int(k)), int(available.sum()))
    scores, top = torch.topk(probs.masked_fill(~available, -1.0), k)
    return scores, top


def recommend(
    saved: SavedModel,
    history: Sequence[str],
    k: int = 10,
    exclude_seen: bool = True,
    *,
    catalog: Catalog | None = None,
    category: str | None = None,
) -> pd.DataFrame:
    """Top-``k`` items for a history of item ids (oldest first; empty = a cold user).

    Args:
        exclude_seen: leave out the items of the history.
        catalog: add ``title``, ``categories`` and ``popularity_rank`` columns.
        category: keep only items of this category (needs ``catalog``).

    Returns:
        Columns ``rank`` (1-based), ``item_id``, ``score`` (softmax probability), and
        with a catalogue ``title``, ``categories``, ``popularity_rank``.
    """
    indices, _ = encode_history(saved, history)
    probs = next_item_probabilities(saved, [indices])[0]
    allowed = None
    if category is not None:
        if catalog is None:
            raise ValueError("filtering by category needs the catalogue")
        allowed = torch.as_tensor([category in cats for cats in catalog.categories])
    scores, top = _ranked(probs, indices, k, exclude_seen, allowed)
    top_np = top.numpy()
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(top_np) + 1),
            Columns.ITEM: saved.item_ids[top_np],
            "score": scores.numpy().astype(float),
        }
    )
    if catalog is not None:
        extra = catalog.describe(top_np).drop(columns=Columns.ITEM)
        frame = pd.concat([frame, extra], axis=1)
    return frame


def because_of(explanations: dict[str, pd.DataFrame], item_ids: Sequence[str], n: int = 1):
    """For each recommended item, the history items that pushed it up most (strongest
    first, at most ``n``; only positive contributions: removing them lowers the score).

    ``explanations`` is what :func:`explain` returns; an item without one, or that no
    history item pushed up, gets an empty list. What the Recommendations page's
    "because of" column and the CLI's ``recommend --explain`` show.
    """
    out: list[list[str]] = []
    for item in item_ids:
        frame = explanations.get(item)
        if frame is None or frame.empty:
            out.append([])
            continue
        up = frame[frame["contribution"] > 0]
        out.append([str(h) for h in up["history_item"].head(n)])
    return out


def most_popular(
    catalog: Catalog,
    history: Sequence[str],
    k: int = 10,
    exclude_seen: bool = True,
    category: str | None = None,
) -> pd.DataFrame:
    """The baseline list: the items with the most training events (seen ones left out).

    Returns:
        Columns ``rank``, ``item_id``, ``events`` (training events), ``title``,
        ``categories``, ``popularity_rank``.
    """
    order = np.argsort(catalog.pop_rank + (catalog.pop_rank == 0) * (len(catalog.pop_rank) + 1))
    order = order[catalog.pop_rank[order] > 0]
    if exclude_seen and len(history):
        seen = set(history)
        order = order[[catalog.item_ids[i] not in seen for i in order]]
    if category is not None:
        order = order[[category in catalog.categories[i] for i in order]]
    top = order[: max(1, int(k))]
    frame = catalog.describe(top)
    frame.insert(0, "rank", np.arange(1, len(top) + 1))
    frame.insert(2, "events", catalog.counts[top])
    return frame


SIDE_BASELINES = {
    "pop": "Most popular",
    "markov": "Markov (next-item transitions)",
    "itemknn": "ItemKNN (similar items)",
}


def fit_side_baseline(data: ModelData, name: str):
    """A baseline of :mod:`core.evaluation.baselines` fitted on the model's training part of the
    histories (the test and validation items left out, as in training), for side-by-side lists."""
    fit = leave_one_out(data.histories).train
    makers = {
        "pop": baselines.most_popular,
        "markov": baselines.Markov,
        "itemknn": baselines.ItemKNN,
    }
    if name not in makers:
        raise ValueError(f"unknown baseline {name!r}: choose {', '.join(makers)}")
    return makers[name](fit)


def baseline_list(
    data: ModelData,
    scorer,
    history: Sequence[str],
    k: int = 10,
    exclude_seen: bool = True,
    category: str | None = None,
) -> pd.DataFrame:
    """A baseline's top-``k`` for a history, with the same exclusions as :func:`recommend`.

    Returns:
        Columns ``rank``, ``item_id``, ``title``, ``categories``, ``popularity_rank``,
        ``score`` (the baseline's own scale).
    """
    indices, _ = encode_history(data.saved, history)
    width = max(1, int(scorer.history_len))  # the most recent items the baseline reads
    tail = indices[-width:]
    batch = torch.zeros(1, width, dtype=torch.long)
    if len(tail):
        batch[0, width - len(tail) :] = torch.as_tensor(tail, dtype=torch.long)
    scores = scorer.score(batch)[0].float().clone()
    scores[0] = scores[-1] = float("-inf")
    if exclude_seen and len(indices):
        scores[torch.as_tensor(indices, dtype=torch.long)] = float("-inf")
    if category is not None:
        names, matrix = data.catalog.category_matrix()
        if category in names:
            scores[matrix[:, names.index(category)] == 0] = float("-inf")
    k = min(max(1, int(k)), int(torch.isfinite(scores).sum()))  # none left: an empty list
    values, top = torch.topk(scores, k)
    frame = data.catalog.describe(top.numpy())
    frame.insert(0, "rank", np.arange(1, k + 1))
    frame["score"] = values.numpy().astype(float)
    return frame


# --------------------------------------------------------------------------- explanations


def explain(
    saved: SavedModel,
    history: Sequence[str],
    item_ids: Sequence[str],
) -> dict[str, pd.DataFrame]:
    """Occlusion attribution of each item's score to the history items.

    For every distinct item of the history window (the last ``max_len - 1`` items: older
    ones do not reach the model), every occurrence is removed and the history scored
    again; all variants go through the model in one batch. The contribution of a
    history item to a recommended item is ``score(full) - score(without it)`` in
    probability: positive means it pushed the item up.

    Returns:
        item id -> frame with columns ``history_item``, ``contribution``, ``score_without``,
        sorted by contribution (largest first). Unknown item ids are absent.
    """
    indices, _ = encode_history(saved, history)
    window = indices[-(saved.config.max_len - 1) :]
    distinct = list(dict.fromkeys(window.tolist()))
    variants = [indices] + [indices[indices != d] for d in distinct]
    probs = next_item_probabilities(saved, variants)
    index = item_index(saved)
    out: dict[str, pd.DataFrame] = {}
    for item in item_ids:
        col = index.get(item)
        if col is None:
            continue
        base = float(probs[0, col])
        without = probs[1:, col].numpy().astype(float)
        frame = pd.DataFrame(
            {
                "history_item": saved.item_ids[np.asarray(distinct, dtype=np.int64)]
                if distinct
                else np.array([], dtype=object),
                "contribution": base - without,
                "score_without": without,
            }
        )
        out[item] = frame.sort_values("contribution", ascending=False, kind="stable").reset_index(
            drop=True
        )
    return out


# --------------------------------------------------------------------------- every user


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
    width = saved.config.max_len - 1
    users = np.arange(histories.n_users) if users is None else np.asarray(users)
    padded = histories.padded(width, users)
    lengths = np.minimum(histories.lengths[users], width)
    order = np.argsort(lengths, kind="stable")
    table = model.item_table()
    for start in range(0, len(users), batch):
        rows = order[start : start + batch]
        w = int(lengths[rows].max()) if len(rows) else 0
        x = torch.full((len(rows), w + 1), saved.config.mask_index, dtype=torch.long)
        if w:
            x[:, :w] = torch.from_numpy(padded[rows, width - w :].astype(np.int64))
        states = model.head(model.encode(x, table=table)[:, -1])
        yield users[rows], states, table


@torch.no_grad()
def top_k_all(
    data: ModelData,
    k: int = 20,
    exclude_seen: bool = True,
    batch: int = 512,
    progress: ProgressFn | None = None,
    keep_states: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Top-``k`` of every user of ``data`` in batches.

    Returns:
        (user numbers (n,), item indices (n, k), scores (n, k) softmax probabilities,
        head states (n, hidden) when ``keep_states`` else None), rows in user order.
        A user with fewer than ``k`` items left to recommend (seen items excluded) has
        item 0 and score 0 in the remaining places.
    """
    saved, hist = data.saved, data.histories
    n = hist.n_users
    k = max(1, min(int(k), saved.config.n_items))
    items = np.zeros((n, k), dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float32)
    states_out = np.zeros((n, saved.config.hidden), dtype=np.float32) if keep_states else None
    done = 0
    last_items = np.zeros(n, dtype=np.int64)  # each user's last item (0 = none)
    has = hist.lengths > 0
    last_items[has] = hist.items[hist.offsets[1:][has] - 1]
    for users, states, table in batched_states(saved, hist, batch=batch):
        logits = logits_from_states(saved, states, table, torch.from_numpy(last_items[users]))
        # With a transition memory the logits are already log-probabilities.
        lse = 0.0 if saved.config.transitions else torch.logsumexp(logits, -1, keepdim=True)
        if exclude_seen:
            lens = hist.lengths[users]
            rows = np.repeat(np.arange(len(users)), lens)
            within = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
            cols = hist.items[np.repeat(hist.offsets[users], lens) + within]
            logits[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = float("-inf")
        top_logits, top = torch.topk(logits, k, dim=-1)
        # a user with fewer than k unseen items: the rest of the row is empty (item 0)
        top = top.masked_fill(torch.isinf(top_logits), 0)
        items[users] = top.numpy()
        scores[users] = torch.exp(top_logits - lse).numpy()
        if states_out is not None:
            states_out[users] = states.numpy()
        done += len(users)
        if progress:
            progress(done / max(1, n), f"ranked {done:,} of {n:,} users")
    return np.arange(n), items, scores, states_out


def top_k_table(data: ModelData, k: int = 20, exclude_seen: bool = True, **kw) -> pa.Table:
    """Every user's top-``k`` as an Arrow table: user_id, rank, item_id, score (a user
    with fewer than ``k`` unseen items has fewer rows)."""
    users, items, scores, _ = top_k_all(data, k, exclude_seen, **kw)
    k = items.shape[1]
    keep = items.reshape(-1) > 0
    return pa.table(
        {
            Columns.USER: pa.array(np.repeat(data.histories.user_ids[users], k)[keep], pa.string()),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))[keep]),
            Columns.ITEM: pa.array(data.saved.item_ids[items.reshape(-1)[keep]], pa.string()),
            "score": pa.array(scores.reshape(-1)[keep]),
        }
    )


def write_table(table: pa.Table, out: str | Path | io.BytesIO, fmt: str) -> None:
    """Write an Arrow table as ``parquet`` or ``csv``."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    else:
        raise ValueError(f"unknown export format {fmt!r}: choose parquet or csv")


def export_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"{path}: the export file must end in .parquet or .csv")


def export_top_k(
    data: ModelData,
    out: str | Path,
    k: int = 20,
    exclude_seen: bool = True,
    progress: ProgressFn | None = None,
) -> dict:
    """Write every user's top-``k`` (user_id, rank, item_id, score) to Parquet or CSV."""
    fmt = export_format(out)
    started = time.perf_counter()
    table = top_k_table(data, k, exclude_seen, progress=progress)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_table(table, str(out), fmt)
    return {
        "path": str(out),
        "format": fmt,
        "users": data.histories.n_users,
        "rows": table.num_rows,
        "k": int(k),
        "seconds": round(time.perf_counter() - started, 2),
    }
