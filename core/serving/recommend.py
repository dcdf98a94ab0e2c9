"""Top-K recommendations from a trained preference model: lists, explanations, what-if, export.

The preference score of an item is the model's softmax probability that it is the
user's next interaction, given their history (most recent ``max_len - 1`` items).

* :func:`recommend` ranks items for any history of item ids (a stored user's, an
  edited one for what-if, or an empty one for a cold user); with a :class:`Catalog`
  it adds titles, categories and popularity ranks, and can keep one category only.
* :func:`explain` attributes each recommended item's score to the history items by
  occlusion: the score drop when every occurrence of one history item is removed,
  all variants scored in one batched forward pass.
* :func:`baseline_list` ranks for a history with a baseline of :mod:`core.models.baselines`
  (fitted by :func:`fit_side_baseline`), shown side by side with the model's list;
  :func:`most_popular` lists the most popular items with their training counts.

The model, loaded with its dataset, is a :class:`core.serving.model_data.ModelData`;
every user's top-K (the export) is :mod:`core.serving.exports`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from core.common.columns import Columns
from core.data.splits import leave_one_out
from core.models import baselines
from core.models.checkpoint import SavedModel
from core.models.inputs import history_rows
from core.models.scoring import hide_non_items
from core.serving.model_data import (
    Catalog,
    ModelData,
    encode_history,
    item_index,
    next_item_probabilities,
)

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
    """A baseline of :mod:`core.models.baselines` fitted on the model's training part of the
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
    rows = torch.from_numpy(history_rows([indices], width))
    scores = hide_non_items(scorer.score(rows)[0].float().clone())
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
