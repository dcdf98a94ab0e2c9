"""Item vectors from co-occurrence, the starting point of a run's item embeddings.

With ``item_init="pmi"`` the embeddings start from what counting already knows: a
truncated SVD of the items' positive pointwise mutual information (:func:`pmi_item_vectors`).
"""

from __future__ import annotations

import numpy as np
import torch

from core.data.sequences import Sequences
from core.models.bert import PreferenceModel


def start_from_cooccurrence(model: PreferenceModel, train: Sequences, seed: int) -> None:
    """Item embeddings from :func:`pmi_item_vectors`, at the random start's scale (items
    that co-occur with nothing start at zero); a log where nothing co-occurs keeps the
    random start."""
    start = pmi_item_vectors(train, model.config.hidden, seed=seed)[1:-1]
    if not start.abs().sum():
        return
    with torch.no_grad():
        table = model.item_embeddings.weight
        scale = table[1:-1].std() / start.std().clamp_min(1e-12)
        table[1:-1] = (start * scale).to(table.device, table.dtype)


def pmi_item_vectors(train: Sequences, dim: int, window: int = 3, seed: int = 0) -> torch.Tensor:
    """(n_items + 2, dim) item vectors from co-occurrence: what counting already knows.

    Items within ``window`` positions of each other in a history co-occur; the
    positive pointwise mutual information of the pairs is factorised by a randomised
    truncated SVD (3 power iterations), and each item gets ``U sqrt(S)``. About 2 s on
    Amazon Beauty (54k items). Rows 0 (padding) and n_items + 1 (mask) are zero, as
    are the rows of items that co-occur with nothing (all of them if nothing does);
    a catalogue smaller than ``dim + 10`` gets fewer singular vectors (the last columns
    zero).
    """
    vocab = train.n_items + 2
    owner = np.repeat(np.arange(train.n_users), np.diff(train.offsets))
    items = train.items.astype(np.int64)
    firsts, seconds = [], []
    for off in range(1, window + 1):
        same = owner[off:] == owner[:-off]
        a, b = items[:-off][same], items[off:][same]
        firsts += [a, b]
        seconds += [b, a]
    key, count = np.unique(
        np.concatenate(firsts) * vocab + np.concatenate(seconds), return_counts=True
    )
    rows, cols = key // vocab, key % vocab
    margin = np.bincount(rows, weights=count, minlength=vocab)
    pmi = np.log(count * count.sum() / (margin[rows] * margin[cols]))
    keep = pmi > 0
    matrix = torch.sparse_coo_tensor(
        np.vstack([rows[keep], cols[keep]]),
        torch.as_tensor(pmi[keep], dtype=torch.float32),
        (vocab, vocab),
        check_invariants=False,  # built from unique keys within bounds just above
    ).coalesce()
    vectors = torch.zeros(vocab, dim)
    if not keep.any():
        return vectors  # nothing co-occurs
    rank = min(dim + 10, vocab)  # a catalogue smaller than the vectors: fewer columns
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(vocab, rank, generator=gen)
    for _ in range(3):
        basis, _ = torch.linalg.qr(torch.sparse.mm(matrix, basis))
    small = torch.sparse.mm(matrix, basis).T  # basis^T A, A symmetric
    u, s, _ = torch.linalg.svd(small @ small.T)
    width = min(dim, rank)
    vectors[:, :width] = (basis @ u[:, :width]) * s[:width].sqrt().sqrt()
    vectors[0] = vectors[-1] = 0.0
    return vectors
