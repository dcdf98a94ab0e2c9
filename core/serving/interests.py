"""Interest vectors: what the model believes each user wants next, and how that moves.

A user's **interest vector** is the preference model's state at a mask token
appended after their history, taken after the output head: the representation
whose dot product with the (tied) item table plus the item bias gives the
next-item logits. Everything here derives from it:

* **category affinity**: the next-item softmax mass summed per category (the
  probability that the next item carries the category), next to the history's own
  category mix for contrast;
* **drift**: the vector after every prefix of the history (all prefixes scored in
  batched forward passes), the step-to-step cosine change, category affinity over
  time and the points where the interest shifted (see :func:`shift_points`);
* **the map**: a 2D projection of every user's vector (PCA; UMAP when the ``umap``
  package happens to be installed) and k-means **segments**, each described by its
  top categories and items;
* **neighbours**: the most similar users (cosine) and the most aligned items
  (cosine with the item's embedding in the output table, i.e. without the
  popularity bias).

Vectors of all users are computed in length-sorted batches and cached in the
``vectors`` table of the store (kind ``interest``, owner = model name + save time +
dataset fingerprint, so a retrained model or a changed dataset never reuses them).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.common.columns import Columns
from core.common.progress import ProgressFn
from core.data.sequences import Sequences
from core.serving.model_data import (
    ModelData,
    batched_states,
    encode_history,
    head_states,
    logits_from_states,
)
from core.store import Store, StoreError

KIND = "interest"
SHIFT_PERSIST = 5


# --------------------------------------------------------------------------- vectors


@dataclass
class InterestVectors:
    """Every user's interest vector: ``matrix[i]`` belongs to ``user_ids[i]`` (histories order)."""

    user_ids: np.ndarray
    matrix: np.ndarray  # (n_users, hidden) float32
    cached: bool = False


def all_interest_vectors(
    store: Store,
    data: ModelData,
    batch: int = 512,
    progress: ProgressFn | None = None,
) -> InterestVectors:
    """Interest vectors of every user of the model's dataset: from the cache, else computed.

    Computed ones are cached in the store (older versions of the same model's vectors
    are dropped); a read-only store just skips caching.
    """
    user_ids = data.histories.user_ids
    cached = store.vector_matrix(KIND, data.owner)
    if cached is not None and len(cached[0]) == len(user_ids):
        keys, matrix = cached
        if not np.array_equal(keys, user_ids):
            order = pd.Index(keys).get_indexer(user_ids)
            if (order < 0).any():
                cached = None
            else:
                matrix = matrix[order]
        if cached is not None:
            return InterestVectors(user_ids, matrix, cached=True)
    matrix = np.zeros((len(user_ids), data.saved.config.hidden), dtype=np.float32)
    done = 0
    for users, states, _ in batched_states(data.saved, data.histories, batch=batch):
        matrix[users] = states.float().numpy()
        done += len(users)
        if progress:
            progress(done / max(1, len(user_ids)), f"interest vectors: {done:,} users")
    try:
        store.replace_vector_matrix(
            KIND, data.owner, list(user_ids), matrix, stale_prefix=f"{data.saved.name}|"
        )
    except StoreError:
        pass  # a read-only database: nothing cached, nothing lost
    return InterestVectors(user_ids, matrix)


def history_vector(data: ModelData, history: Sequence[str]) -> np.ndarray:
    """The interest vector of any history of item ids (on demand; empty = cold user)."""
    indices, _ = encode_history(data.saved, history)
    return head_states(data.saved, [indices])[0].float().numpy()


# --------------------------------------------------------------------------- categories


@torch.no_grad()
def category_affinity(
    data: ModelData, vectors: np.ndarray, level: str = "all", batch: int = 1024
) -> tuple[list[str], np.ndarray]:
    """Next-item probability mass per category for each vector.

    Args:
        vectors: (n, hidden) interest vectors.
        level: ``"all"`` (an item counts for each of its categories) or ``"main"``
            (its first category only).

    Returns:
        (category names, (n, n_categories) affinities in [0, 1]).
    """
    names, member = data.catalog.category_matrix(level)
    out = np.zeros((len(vectors), len(names)), dtype=np.float32)
    if not names:
        return names, out
    table = data.saved.model.item_table()
    for start in range(0, len(vectors), batch):
        states = torch.from_numpy(np.asarray(vectors[start : start + batch], dtype=np.float32))
        probs = torch.softmax(logits_from_states(data.saved, states, table), dim=-1)
        out[start : start + batch] = (probs @ member).numpy()
    return names, out


def history_mix(data: ModelData, indices: np.ndarray, level: str = "all") -> np.ndarray:
    """Share of the history's events on each category (same columns as the affinity)."""
    names, member = data.catalog.category_matrix(level)
    if not names or not len(indices):
        return np.zeros(len(names), dtype=np.float32)
    return member[torch.as_tensor(np.asarray(indices, dtype=np.int64))].mean(0).numpy()


def affinity_frame(data: ModelData, history: Sequence[str], level: str = "all") -> pd.DataFrame:
    """One history's category affinity next to its own category mix.

    Returns:
        Columns ``category``, ``affinity`` (model: next-item probability mass) and
        ``history_share`` (share of the history's events), sorted by affinity.
    """
    indices, _ = encode_history(data.saved, history)
    names, aff = category_affinity(data, history_vector(data, history)[None], level)
    frame = pd.DataFrame(
        {
            "category": names,
            "affinity": aff[0] if names else [],
            "history_share": history_mix(data, indices, level),
        }
    )
    return frame.sort_values("affinity", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- drift


@dataclass
class Drift:
    """Interest after every prefix of one history.

    Attributes:
        steps: one row per history step (1-based ``step``): ``item_id``, ``title``,
            ``category`` (the item's first category), ``cosine_change`` (1 - cosine
            between the vectors after this step and the previous one; NaN at step 1),
            ``dominant`` (top category of the affinity after this step, "" without
            categories), ``is_shift`` (a shift point, see :func:`shift_points`).
        affinity: long frame ``step``, ``category``, ``affinity`` (the 6 categories
            with the highest peak affinity over the history).
        vectors: (steps, hidden) interest vector after each step.
    """

    steps: pd.DataFrame
    affinity: pd.DataFrame
    vectors: np.ndarray


def prefix_windows(indices: np.ndarray, width: int) -> list[np.ndarray]:
    """The history after each step: ``indices[:t]`` for t = 1..len, each cut to ``width``."""
    return [indices[max(0, t - width) : t] for t in range(1, len(indices) + 1)]


@torch.no_grad()
def drift(
    data: ModelData,
    history: Sequence[str],
    level: str = "all",
    persist: int = SHIFT_PERSIST,
    batch: int = 256,
) -> Drift:
    """The interest vector after every prefix of ``history`` (batched forward passes)."""
    indices, _ = encode_history(data.saved, history)
    width = data.saved.config.max_len - 1
    n = len(indices)
    prefixes = prefix_windows(indices, width)
    lengths = np.asarray([len(p) for p in prefixes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(prefixes) if n else np.zeros(0, dtype=np.int64)
    as_seqs = Sequences(
        np.arange(n).astype(str).astype(object), data.histories.item_ids, offsets, flat
    )
    vectors = np.zeros((n, data.saved.config.hidden), dtype=np.float32)
    for rows, states, _ in batched_states(data.saved, as_seqs, batch=batch):
        vectors[rows] = states.float().numpy()
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    change = np.full(n, np.nan)
    if n > 1:
        change[1:] = 1.0 - (unit[1:] * unit[:-1]).sum(1)
    names, aff = category_affinity(data, vectors, level)
    dominant = np.asarray([names[i] for i in aff.argmax(1)] if names else [""] * n, dtype=object)
    shifts = shift_points(dominant, change, persist) if n else np.zeros(0, dtype=bool)
    cat = data.catalog
    steps = pd.DataFrame(
        {
            "step": np.arange(1, n + 1),
            Columns.ITEM: cat.item_ids[indices],
            "title": cat.titles[indices],
            "category": [cat.categories[i][0] if cat.categories[i] else "" for i in indices],
            "cosine_change": change,
            "dominant": dominant,
            "is_shift": shifts,
        }
    )
    long = pd.DataFrame(columns=["step", "category", "affinity"])
    if names and n:
        keep = np.sort(np.argsort(-aff.max(0), kind="stable")[:6])  # highest peaks
        long = pd.DataFrame(
            {
                "step": np.repeat(np.arange(1, n + 1), len(keep)),
                "category": np.tile(np.asarray(names, dtype=object)[keep], n),
                "affinity": aff[:, keep].reshape(-1),
            }
        )
    return Drift(steps, long, vectors)


def shift_points(
    dominant: np.ndarray, change: np.ndarray, persist: int = SHIFT_PERSIST
) -> np.ndarray:
    """Where the interest shifted, as a boolean per step.

    The rule: with categories, step ``t`` (not the first) is a shift when a
    category becomes dominant there, stays dominant for at least ``persist``
    consecutive steps, and differs from the last *established* dominant category
    (the one at step 1, then the latest that held ``persist`` steps). So a brief
    detour and the return from it are not shifts, and a change in the last
    ``persist - 1`` steps is not yet confirmed. Without categories (all
    ``dominant`` empty), step ``t`` is a shift when its cosine change is an outlier
    of the user's own changes: above ``max(0.05, median + 4 * MAD)``.
    """
    n = len(dominant)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    if any(dominant):
        # run length of the same dominant category starting at each step
        run = np.ones(n, dtype=np.int64)
        for t in range(n - 2, -1, -1):
            if dominant[t + 1] == dominant[t]:
                run[t] = run[t + 1] + 1
        established = dominant[0]
        for t in range(1, n):
            starts_run = dominant[t] != dominant[t - 1]
            if starts_run and run[t] >= persist:
                out[t] = dominant[t] != established
                established = dominant[t]
        return out
    values = change[1:]
    median = float(np.nanmedian(values))
    mad = float(np.nanmedian(np.abs(values - median)))
    out[1:] = values > max(0.05, median + 4 * mad)
    return out


# --------------------------------------------------------------------------- the map


def project(vectors: np.ndarray, method: str = "pca") -> np.ndarray:
    """2D coordinates of the vectors: PCA (deterministic, by eigendecomposition), or UMAP.

    ``method="umap"`` needs the ``umap`` package (not a dependency); use
    :func:`umap_available` first.
    """
    x = torch.tensor(np.asarray(vectors, dtype=np.float32))  # a copy: cached vectors are read-only
    if len(x) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if method == "umap":
        import umap  # optional

        return umap.UMAP(n_components=2, random_state=0).fit_transform(vectors).astype(np.float32)
    centred = (x - x.mean(0)).double()
    _, eigvecs = torch.linalg.eigh(centred.T @ centred)
    axes = eigvecs[:, -2:].flip(1)  # the two largest components
    coords = centred @ axes
    # fix the signs: the largest absolute coordinate of each axis is positive
    signs = torch.sign(coords.gather(0, coords.abs().argmax(0, keepdim=True)))
    return (coords * torch.where(signs == 0, 1.0, signs)).float().numpy()


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def kmeans(
    vectors: np.ndarray, k: int, seed: int = 0, iters: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """k-means (k-means++ start, seeded) on the L2-normalised vectors.

    Returns:
        (labels (n,), centroids (k, hidden) in the normalised space).
    """
    x = torch.tensor(np.asarray(vectors, dtype=np.float32))  # a copy: cached vectors are read-only
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = len(x)
    k = max(1, min(int(k), n))
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):
        dist = torch.cdist(x, centroids).min(1).values ** 2
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full((n,), 1.0 / n)
        centroids = torch.cat([centroids, x[torch.multinomial(probs, 1, generator=gen)]])
    labels = torch.zeros(n, dtype=torch.long)
    for it in range(iters):
        new = torch.cdist(x, centroids).argmin(1)
        if it and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    # number segments by size, largest first, so labels are stable and readable
    sizes = torch.bincount(labels, minlength=k)
    order = torch.argsort(-sizes, stable=True)
    rename = torch.empty_like(order)
    rename[order] = torch.arange(k)
    return rename[labels].numpy(), centroids[order].numpy()


@dataclass
class UserMap:
    """All users on a plane, with segments.

    Attributes:
        points: ``user_id``, ``x``, ``y``, ``segment`` (int, 0 = largest), ``dominant``
            (top category of the user's affinity, "" without categories).
        segments: one row per segment: ``segment``, ``users``, ``share``,
            ``top_categories`` (by mean affinity of its users), ``top_items`` (titles or
            ids of the items the segment's mean vector scores highest).
        method: "pca" or "umap".
    """

    points: pd.DataFrame
    segments: pd.DataFrame
    method: str


@torch.no_grad()
def user_map(
    data: ModelData,
    vectors: InterestVectors,
    k: int = 8,
    seed: int = 0,
    method: str = "pca",
    level: str = "all",
) -> UserMap:
    """Project every user's vector to 2D and group users into ``k`` segments."""
    matrix = vectors.matrix
    coords = project(matrix, method)
    labels, _ = kmeans(matrix, k, seed)
    names, aff = category_affinity(data, matrix, level)
    dominant = np.asarray(names, dtype=object)[aff.argmax(1)] if names else np.full(len(matrix), "")
    points = pd.DataFrame(
        {
            Columns.USER: vectors.user_ids,
            "x": coords[:, 0],
            "y": coords[:, 1],
            "segment": labels,
            "dominant": dominant,
        }
    )
    table = data.saved.model.item_table()
    rows = []
    cat = data.catalog
    for seg in range(int(labels.max()) + 1 if len(labels) else 0):
        members = labels == seg
        top_cats = ""
        if names:
            mean_aff = aff[members].mean(0)
            best = np.argsort(-mean_aff)[:3]
            top_cats = ", ".join(f"{names[i]} ({mean_aff[i]:.0%})" for i in best)
        centre = torch.from_numpy(matrix[members].mean(0, keepdims=True))
        logits = logits_from_states(data.saved, centre, table)[0]
        top_items = torch.topk(logits, min(5, data.saved.config.n_items)).indices.numpy()
        labels_items = [cat.titles[i] or cat.item_ids[i] for i in top_items]
        rows.append(
            {
                "segment": seg,
                "users": int(members.sum()),
                "share": float(members.mean()),
                "top_categories": top_cats,
                "top_items": "; ".join(labels_items),
            }
        )
    return UserMap(points, pd.DataFrame(rows), method)


MAP_POINTS = 5_000  # points the map sends to a browser (RECLENS_MAP_POINTS)


def map_points_limit() -> int:
    """How many users the map draws at most: ``RECLENS_MAP_POINTS``, else :data:`MAP_POINTS`."""
    raw = os.environ.get("RECLENS_MAP_POINTS", "").strip()
    return max(1, int(raw)) if raw.isdigit() else MAP_POINTS


def map_sample(
    points: pd.DataFrame, limit: int = MAP_POINTS, keep: str | None = None, seed: int = 0
) -> pd.DataFrame:
    """At most ``limit`` of the map's points: all of them when they fit, else a fixed
    random sample (the same on every rerun, so the map does not jump) that always holds
    user ``keep``. Segments and counts are computed on every user; only the drawing is
    sampled, because a browser slows down with tens of thousands of points.
    """
    if len(points) <= limit:
        return points
    chosen = points.sample(n=limit, random_state=seed)
    if keep is not None and not (chosen[Columns.USER] == keep).any():
        mine = points[points[Columns.USER] == keep]
        if len(mine):
            chosen = pd.concat([chosen.iloc[: limit - 1], mine])
    return chosen.sort_index()


# --------------------------------------------------------------------------- neighbours


def similar_users(
    vectors: InterestVectors, vector: np.ndarray, k: int = 10, exclude: str | None = None
) -> pd.DataFrame:
    """The ``k`` users whose interest vectors have the highest cosine with ``vector``."""
    m = vectors.matrix
    sims = (m @ vector) / (np.linalg.norm(m, axis=1) * max(np.linalg.norm(vector), 1e-12) + 1e-12)
    if exclude is not None:
        sims = np.where(vectors.user_ids == exclude, -np.inf, sims)
    k = min(k, len(sims) - (exclude is not None))
    top = np.argsort(-sims, kind="stable")[: max(0, k)]
    return pd.DataFrame(
        {Columns.USER: vectors.user_ids[top], "similarity": sims[top].astype(float)}
    )


@torch.no_grad()
def aligned_items(data: ModelData, vector: np.ndarray, k: int = 10) -> pd.DataFrame:
    """The ``k`` items whose output embeddings point most in the vector's direction (cosine)."""
    table = data.saved.model.item_table()[1:-1]
    v = torch.from_numpy(np.asarray(vector, dtype=np.float32))
    sims = (table @ v) / (table.norm(dim=1) * v.norm()).clamp_min(1e-12)
    top = torch.topk(sims, min(k, len(sims))).indices.numpy() + 1
    frame = data.catalog.describe(top)
    frame.insert(1, "alignment", sims[top - 1].numpy().astype(float))
    return frame


# --------------------------------------------------------------------------- demo recovery


def planted_comparison(store: Store, data: ModelData, vectors: InterestVectors) -> pd.DataFrame:
    """Planted interests of a demo dataset next to the recovered ones (empty for other data).

    Returns:
        ``user_id``, ``planted`` (all planted interests), ``planted_final``,
        ``recovered`` (dominant main category of the model's affinity at the end of the
        history), ``match``.
    """
    planted = store.planted_frame(data.dataset_id)
    if planted.empty:
        return pd.DataFrame(
            columns=[Columns.USER, "planted", "planted_final", "recovered", "match"]
        )
    names, aff = category_affinity(data, vectors.matrix, "main")
    recovered = pd.Series(np.asarray(names, dtype=object)[aff.argmax(1)], index=vectors.user_ids)
    frame = planted[planted[Columns.USER].isin(recovered.index)]
    out = pd.DataFrame(
        {
            Columns.USER: frame[Columns.USER].to_numpy(),
            "planted": [", ".join(x) for x in frame["interests"]],
            "planted_final": frame["final_interest"].to_numpy(),
            "recovered": recovered.loc[frame[Columns.USER]].to_numpy(),
        }
    )
    out["match"] = out["planted_final"] == out["recovered"]
    return out


# --------------------------------------------------------------------------- one user, whole


def user_report(
    store: Store,
    data: ModelData,
    user_id: str,
    level: str = "all",
    k: int = 10,
) -> dict:
    """Everything the CLI's ``interests`` prints for one user (JSON-able)."""
    history = data.history_ids(user_id)
    if not history:
        raise StoreError(f"user {user_id!r} has no events the model knows")
    vector = history_vector(data, history)
    aff = affinity_frame(data, history, level)
    dr = drift(data, history, level)
    vectors = all_interest_vectors(store, data)
    users = similar_users(vectors, vector, k, exclude=user_id)
    items = aligned_items(data, vector, k)
    return {
        "user": user_id,
        "model": data.saved.name,
        "vector": [round(float(x), 6) for x in vector],
        "categories": [
            {
                "category": r.category,
                "affinity": float(r.affinity),
                "history_share": float(r.history_share),
            }
            for r in aff.itertuples(index=False)
        ],
        "drift": [
            {
                "step": int(r.step),
                Columns.ITEM: r.item_id,
                "cosine_change": None if np.isnan(r.cosine_change) else float(r.cosine_change),
                "dominant": r.dominant,
                "shift": bool(r.is_shift),
            }
            for r in dr.steps.itertuples(index=False)
        ],
        "neighbours": [
            {Columns.USER: r.user_id, "similarity": float(r.similarity)}
            for r in users.itertuples(index=False)
        ],
        "aligned_items": [
            {Columns.ITEM: r.item_id, "title": r.title, "alignment": float(r.alignment)}
            for r in items.itertuples(index=False)
        ],
    }
