"""Top-K recommendations from a trained preference model.

The preference score of an item is the model's softmax probability that it is the
user's next interaction, given their history (most recent ``max_len - 1`` items).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from core.checkpoint import SavedModel


def encode_history(saved: SavedModel, history: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Item ids -> model indices (oldest first); also returns the ids the model doesn't know."""
    index = saved.index_of()
    known = [index[i] for i in history if i in index]
    unknown = [i for i in history if i not in index]
    return np.asarray(known, dtype=np.int64), unknown


@torch.no_grad()
def next_item_probabilities(saved: SavedModel, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Softmax over all items of the next interaction, one row per history.

    Args:
        histories: item-index arrays (oldest first); an empty one is a cold user.

    Returns:
        (len(histories), n_items + 2) probabilities (0 for padding and mask columns).
    """
    width = saved.config.max_len
    batch = torch.zeros(len(histories), width, dtype=torch.long)
    for row, hist in enumerate(histories):
        tail = hist[-(width - 1) :] if len(hist) else hist
        if len(tail):
            batch[row, width - 1 - len(tail) : width - 1] = torch.as_tensor(tail)
    batch[:, -1] = saved.config.mask_index
    logits = saved.model.next_item_logits(batch)
    return torch.softmax(logits.float(), dim=-1)


def recommend(
    saved: SavedModel,
    history: Sequence[str],
    k: int = 10,
    exclude_seen: bool = True,
) -> pd.DataFrame:
    """Top-``k`` items for a history of item ids.

    Returns:
        Columns ``rank`` (1-based), ``item_id``, ``score`` (softmax probability).
    """
    indices, _ = encode_history(saved, history)
    probs = next_item_probabilities(saved, [indices])[0]
    if exclude_seen and len(indices):
        probs[torch.as_tensor(indices)] = 0.0
    k = max(1, min(int(k), saved.config.n_items))
    scores, top = torch.topk(probs, k)
    return pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "item_id": saved.item_ids[top.numpy()],
            "score": scores.numpy().astype(float),
        }
    )
