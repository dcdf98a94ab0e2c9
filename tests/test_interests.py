"""Interest vectors, category affinity, drift, the map and neighbours (core.serving.interests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _trained import MODEL, USERS, copy_of_trained

from core.models.registry import resolve_model
from core.serving import interests
from core.serving.model_data import encode_history, head_states, load_model_data
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    store = Store(copy_of_trained(tmp_path_factory.mktemp("interests")))
    data = load_model_data(store, resolve_model(store, MODEL))
    vectors = interests.all_interest_vectors(store, data)
    yield store, data, vectors
    store.close()


def test_planted_final_interest_is_recovered_for_most_users(env) -> None:
    store, data, vectors = env
    table = interests.planted_comparison(store, data, vectors)
    assert len(table) == USERS
    assert table["match"].mean() >= 0.8, table["match"].mean()


def test_vectors_are_cached_per_model_version(env) -> None:
    store, data, vectors = env
    assert vectors.matrix.shape == (USERS, data.saved.config.hidden)
    again = interests.all_interest_vectors(store, data)
    assert again.cached
    np.testing.assert_array_equal(again.matrix, vectors.matrix)
    # A new version of the same model (or of the dataset) replaces the cached vectors.
    old_owner = data.owner
    data.owner = old_owner + "-retrained"
    try:
        fresh = interests.all_interest_vectors(store, data)
        assert not fresh.cached
        assert store.vector_matrix(interests.KIND, old_owner) is None
    finally:
        data.owner = old_owner
        interests.all_interest_vectors(store, data)


def test_single_user_vector_equals_the_batched_one(env) -> None:
    _, data, vectors = env
    for user in (0, 7, USERS - 1):
        uid = str(data.histories.user_ids[user])
        single = interests.history_vector(data, data.history_ids(uid))
        np.testing.assert_allclose(single, vectors.matrix[user], atol=1e-4)


def test_affinity_is_a_distribution_over_main_categories(env) -> None:
    _, data, vectors = env
    names, aff = interests.category_affinity(data, vectors.matrix[:20], "main")
    assert len(names) == 12  # the demo's main categories
    np.testing.assert_allclose(aff.sum(1), 1.0, atol=1e-4)  # every demo item has one
    frame = interests.affinity_frame(data, data.history_ids("u00001"), "main")
    assert list(frame.columns) == ["category", "affinity", "history_share"]
    assert frame["affinity"].is_monotonic_decreasing
    assert frame["history_share"].sum() == pytest.approx(1.0, abs=1e-5)


def test_drift_scores_every_prefix_in_batches(env) -> None:
    _, data, _ = env
    history = data.history_ids("u00003")
    drift = interests.drift(data, history, "main")
    assert len(drift.steps) == len(history)
    assert np.isnan(drift.steps["cosine_change"].iloc[0])
    changes = drift.steps["cosine_change"].iloc[1:]
    assert ((changes >= -1e-6) & (changes <= 2 + 1e-6)).all()
    # The batched prefixes equal scoring each prefix on its own.
    indices, _ = encode_history(data.saved, history)
    for t in (1, len(history) // 2, len(history)):
        alone = head_states(data.saved, [indices[:t]])[0].numpy()
        np.testing.assert_allclose(drift.vectors[t - 1], alone, atol=1e-4)
    assert set(drift.affinity.columns) == {"step", "category", "affinity"}
    assert drift.affinity["step"].max() == len(history)


def test_shift_rule() -> None:
    dom = np.array(["A"] * 6 + ["B"] * 6, dtype=object)
    change = np.r_[np.nan, np.full(11, 0.01)]
    assert np.flatnonzero(interests.shift_points(dom, change, persist=5)).tolist() == [6]
    flicker = np.array(["A", "A", "B", "B", "A", "A", "A", "A", "A"], dtype=object)
    assert not interests.shift_points(flicker, np.zeros(9), persist=5).any()
    # Without categories: an outlying cosine change is the shift.
    none = np.array([""] * 10, dtype=object)
    jumps = np.r_[np.nan, [0.01, 0.02, 0.01, 0.015, 0.6, 0.01, 0.02, 0.01, 0.01]]
    assert np.flatnonzero(interests.shift_points(none, jumps)).tolist() == [5]


def test_planted_shifts_are_often_detected(env) -> None:
    """Users whose planted interest changes get a shift marker near the planted point."""
    store, data, _ = env
    planted = store.planted_frame(data.dataset_id)
    movers = planted[planted["initial_interest"] != planted["final_interest"]].head(40)
    near = 0
    for row in movers.itertuples():
        steps = interests.drift(data, data.history_ids(row.user_id), "main").steps
        found = steps.loc[steps["is_shift"], "step"].to_numpy()
        near += bool(len(found)) and np.abs(found - row.shift_at).min() <= 10
    assert near / len(movers) >= 0.5, near


def test_kmeans_finds_separated_groups_and_is_seeded() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3] * 5
    x = torch.cat([c + 0.1 * torch.randn(50, 8, generator=gen) for c in centres]).numpy()
    labels, centroids = interests.kmeans(x, 3, seed=1)
    assert centroids.shape == (3, 8)
    groups = [set(labels[i * 50 : (i + 1) * 50]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    again, _ = interests.kmeans(x, 3, seed=1)
    np.testing.assert_array_equal(labels, again)


def test_user_map_and_segments(env) -> None:
    _, data, vectors = env
    umap = interests.user_map(data, vectors, k=5, level="main")
    assert list(umap.points.columns) == ["user_id", "x", "y", "segment", "dominant"]
    assert len(umap.points) == USERS and umap.points[["x", "y"]].notna().all().all()
    assert umap.segments["users"].sum() == USERS
    assert umap.segments["users"].is_monotonic_decreasing
    assert umap.segments["top_categories"].str.len().min() > 0
    assert umap.segments["top_items"].str.len().min() > 0
    # PCA is deterministic: the same map twice.
    again = interests.user_map(data, vectors, k=5, level="main")
    np.testing.assert_allclose(again.points[["x", "y"]], umap.points[["x", "y"]])


def test_neighbours(env) -> None:
    _, data, vectors = env
    me = vectors.matrix[0]
    with_me = interests.similar_users(vectors, me, 5)
    assert with_me["user_id"].iloc[0] == vectors.user_ids[0]
    assert with_me["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    others = interests.similar_users(vectors, me, 5, exclude=vectors.user_ids[0])
    assert vectors.user_ids[0] not in set(others["user_id"]) and len(others) == 5
    assert others["similarity"].is_monotonic_decreasing
    items = interests.aligned_items(data, me, 7)
    assert len(items) == 7 and items["alignment"].is_monotonic_decreasing
    assert {"item_id", "title", "categories", "popularity_rank"} <= set(items.columns)


def test_cli_interests_json(tmp_path) -> None:
    db = copy_of_trained(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), "interests", "--model", MODEL,
         "--user", "u00002", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {"user", "vector", "categories", "drift", "neighbours"} <= set(out)
    assert out["user"] == "u00002" and len(out["vector"]) == 64
    assert {"category", "affinity"} <= set(out["categories"][0])
    assert {"step", "cosine_change", "shift"} <= set(out["drift"][-1])
    assert len(out["neighbours"]) == 10 and "u00002" not in {
        n["user_id"] for n in out["neighbours"]
    }
    bad = subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), "interests", "--model", MODEL,
         "--user", "nobody"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert bad.returncode == 2 and "nobody" in bad.stderr and "Traceback" not in bad.stderr


def test_data_without_categories_still_gets_drift_map_and_affinity(env) -> None:
    from dataclasses import replace

    _, data, vectors = env
    bare = replace(
        data, catalog=replace(data.catalog, categories=[[] for _ in data.catalog.categories])
    )
    history = bare.history_ids("u00003")
    drift = interests.drift(bare, history)
    assert len(drift.steps) == len(history) and drift.affinity.empty
    assert set(drift.steps["dominant"]) == {""}
    assert interests.affinity_frame(bare, history).empty
    umap = interests.user_map(bare, vectors, k=3)
    assert set(umap.points["dominant"]) == {""} and umap.segments["top_categories"].eq("").all()


def test_charts_are_labelled_and_mark_shifts(env) -> None:
    from core.reports import charts

    _, data, vectors = env
    history = data.history_ids("u00003")
    drift = interests.drift(data, history, "main")
    drift.steps.loc[drift.steps.index[3], "is_shift"] = True  # at least one marker
    fig = charts.interest_drift(drift.steps, drift.affinity)
    assert any(t.name == "interest shift" for t in fig.data)
    assert fig.layout.xaxis2.title.text == "history step (event number)"
    aff = charts.category_affinity(interests.affinity_frame(data, history, "main"))
    assert {t.name for t in aff.data} == {
        "model: P(next item in category)",
        "history: share of events",
    }
    umap = interests.user_map(data, vectors, k=4)
    fig = charts.user_map(umap.points, selected="u00003")
    assert fig.data[-1].name == "user u00003" and fig.layout.xaxis.title.text.startswith("PC1")
    frame = interests.affinity_frame(data, history, "main").rename(
        columns={"category": "label", "affinity": "contribution"}
    )
    assert charts.explanation_bars(frame).layout.xaxis.title.text.startswith("score change")
    assert charts.interest_drift(drift.steps.iloc[:0], drift.affinity.iloc[:0]).layout.annotations
