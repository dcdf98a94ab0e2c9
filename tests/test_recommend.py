"""Top-K lists, explanations, what-if, the baseline and the batch export
(core.serving.recommend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _trained import MODEL, USERS, copy_of_trained

from core.data.splits import validation_users
from core.models.registry import resolve_model
from core.serving import interests
from core.serving.exports import export_top_k, top_k_all
from core.serving.model_data import encode_history, load_model_data, next_item_probabilities
from core.serving.recommend import (
    baseline_list,
    explain,
    fit_side_baseline,
    most_popular,
    recommend,
)
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    store = Store(copy_of_trained(tmp_path_factory.mktemp("recommend")))
    yield load_model_data(store, resolve_model(store, MODEL))
    store.close()


def _score(data, history: list[str], item: str) -> float:
    indices, _ = encode_history(data.saved, history)
    return float(next_item_probabilities(data.saved, [indices])[0, data.saved.index_of()[item]])


def test_top_k_has_scores_titles_categories_and_popularity(data) -> None:
    history = data.history_ids("u00005")
    top = recommend(data.saved, history, 10, catalog=data.catalog)
    assert list(top.columns) == [
        "rank", "item_id", "score", "title", "categories", "popularity_rank",
    ]  # fmt: skip
    assert top["score"].is_monotonic_decreasing and len(top) == 10
    assert not set(top["item_id"]) & set(history)
    assert (top["popularity_rank"] >= 1).all() and top["title"].str.len().min() > 0
    seen = recommend(data.saved, history, 10, exclude_seen=False)
    assert seen["score"].iloc[0] >= top["score"].iloc[0]


def test_category_filter_keeps_only_that_category(data) -> None:
    top = recommend(
        data.saved, data.history_ids("u00005"), 8, catalog=data.catalog, category="Coffee"
    )
    assert len(top) == 8
    assert all("Coffee" in c for c in top["categories"])


def test_removing_the_top_attributed_item_hurts_most(data) -> None:
    checked = 0
    for user in ("u00001", "u00010", "u00020", "u00033"):
        history = data.history_ids(user)
        top = recommend(data.saved, history, 3)
        reasons = explain(data.saved, history, list(top["item_id"]))
        for item in top["item_id"]:
            frame = reasons[item]
            if len(frame) < 2:
                continue
            best, worst = frame["history_item"].iloc[0], frame["history_item"].iloc[-1]
            full = _score(data, history, item)
            drop_best = full - _score(data, [h for h in history if h != best], item)
            drop_worst = full - _score(data, [h for h in history if h != worst], item)
            assert drop_best > drop_worst
            # the attributions are exactly these occlusion effects
            assert frame["contribution"].iloc[0] == pytest.approx(drop_best, abs=1e-6)
            checked += 1
    assert checked >= 8


def test_explanations_single_out_the_items_that_matter(data) -> None:
    """Not flat: removing the top-attributed history item lowers the score at least 3x
    as much as removing the median one does (either way): in the typical list, and in at
    least 80 % of them (measured: 14 of 15 lists, median ratio about 500)."""
    ratios = []
    for user in ("u00001", "u00010", "u00020", "u00033", "u00050"):
        history = data.history_ids(user)
        top = recommend(data.saved, history, 3)
        reasons = explain(data.saved, history, list(top["item_id"]))
        for item in top["item_id"]:
            frame = reasons[item]
            if len(frame) < 3:
                continue
            best = frame["history_item"].iloc[0]
            median = frame["history_item"].iloc[len(frame) // 2]
            full = _score(data, history, item)
            drop_best = full - _score(data, [h for h in history if h != best], item)
            drop_median = full - _score(data, [h for h in history if h != median], item)
            assert drop_best > 0
            ratios.append(drop_best / max(abs(drop_median), 1e-12))
    assert len(ratios) >= 8
    ratios = np.array(ratios)
    assert np.median(ratios) >= 3.0, sorted(ratios)
    assert (ratios >= 3.0).mean() >= 0.8, sorted(ratios)


def test_what_if_appending_items_moves_the_list_towards_them(data) -> None:
    history = data.history_ids("u00001")
    names, before = interests.category_affinity(
        data, interests.history_vector(data, history)[None], "main"
    )
    weakest = names[int(before[0].argmin())]
    add = [
        str(data.catalog.item_ids[i])
        for i in np.flatnonzero([c[:1] == [weakest] for c in data.catalog.categories])[:3]
    ]
    edited = history + add
    what_if = recommend(data.saved, edited, 10, catalog=data.catalog)
    # the same ranking as scoring the edited history directly
    probs = next_item_probabilities(data.saved, [encode_history(data.saved, edited)[0]])[0]
    probs[[data.saved.index_of()[i] for i in edited]] = 0
    direct = data.saved.item_ids[np.argsort(-probs.numpy(), kind="stable")[:10]]
    assert list(what_if["item_id"]) == list(direct)
    assert not set(add) & set(what_if["item_id"])  # the added items count as seen
    _, after = interests.category_affinity(
        data, interests.history_vector(data, edited)[None], "main"
    )
    assert after[0, names.index(weakest)] > before[0, names.index(weakest)]
    base = recommend(data.saved, history, 10)
    assert list(base["item_id"]) != list(what_if["item_id"])
    # an empty history is a cold user: still a full list
    assert len(recommend(data.saved, [], 10)) == 10


def test_most_popular_baseline(data) -> None:
    history = data.history_ids("u00002")
    base = most_popular(data.catalog, history, 10)
    assert list(base["rank"]) == list(range(1, 11))
    assert base["events"].is_monotonic_decreasing
    assert not set(base["item_id"]) & set(history)
    everything = most_popular(data.catalog, [], 10)
    assert everything["popularity_rank"].tolist() == list(range(1, 11))


def test_side_by_side_baselines_follow_the_history(data) -> None:
    history = data.history_ids("u00002")
    pop = baseline_list(data, fit_side_baseline(data, "pop"), history, 10)
    assert pop["item_id"].tolist() == most_popular(data.catalog, history, 10)["item_id"].tolist()
    # Markov: the top item is the most frequent successor of the history's last item
    # in the training events (the model's popularity counts use the same split).
    markov = fit_side_baseline(data, "markov")
    last = history[-1]
    top = baseline_list(data, markov, history, 5)
    assert not set(top["item_id"]) & set(history)
    assert top["score"].is_monotonic_decreasing
    alone = baseline_list(data, markov, [last], 1, exclude_seen=False)["item_id"][0]
    successors = {}
    train = training_pairs(data)
    for a, b in train:
        if a == last:
            successors[b] = successors.get(b, 0) + 1
    assert successors and successors[alone] == max(successors.values())
    with pytest.raises(ValueError, match="unknown baseline"):
        fit_side_baseline(data, "ghost")


def training_pairs(data) -> list[tuple[str, str]]:
    """Consecutive (item, next item) pairs of every user's training part (the test item
    and, for validation users, the validation item left out)."""
    validating = set(validation_users(data.histories.lengths).tolist())
    pairs = []
    for user in range(data.histories.n_users):
        items = [data.catalog.item_ids[i] for i in data.histories.history(user)]
        if len(items) >= 3:
            items = items[: -2 if user in validating else -1]
        pairs += list(zip(items, items[1:], strict=False))
    return pairs


def test_batched_top_k_equals_one_user_at_a_time(data) -> None:
    users, items, scores, states = top_k_all(data, k=5, batch=64, keep_states=True)
    assert items.shape == (USERS, 5) and states.shape == (USERS, data.saved.config.hidden)
    for user in (0, 3, 150, USERS - 1):
        one = recommend(data.saved, data.history_ids(str(data.histories.user_ids[user])), 5)
        assert list(data.saved.item_ids[items[user]]) == list(one["item_id"])
        np.testing.assert_allclose(scores[user], one["score"], rtol=1e-4)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_export_has_k_rows_per_user(data, tmp_path, suffix) -> None:
    out = tmp_path / f"top.{suffix}"
    result = export_top_k(data, out, k=7)
    assert result["rows"] == USERS * 7 and result["users"] == USERS
    frame = (
        pd.read_parquet(out)
        if suffix == "parquet"
        else pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    )
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(frame) == USERS * 7 and frame["user_id"].nunique() == USERS
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 8))).all()
    assert (frame.groupby("user_id")["score"].diff().dropna() <= 1e-9).all()
    mine = frame[frame["user_id"] == "u00004"]
    assert not set(mine["item_id"]) & set(data.history_ids("u00004"))


def test_a_background_export_writes_the_same_file_and_cleans_up(data, tmp_path) -> None:
    import gc

    from core.serving.exports import ExportJob

    job = ExportJob(data, tmp_path / "exports", "top", 7, "parquet", True, key="k")
    assert job.wait(300) and job.error is None
    assert job.fraction == 1.0 and job.result["rows"] == USERS * 7
    direct = tmp_path / "direct.parquet"
    export_top_k(data, direct, k=7)
    assert pd.read_parquet(job.path).equals(pd.read_parquet(direct))
    folder = job.path.parent
    assert folder.parent == tmp_path / "exports" and folder.name.startswith("reclens-export-")
    del job  # the session that held it ended
    gc.collect()
    assert not folder.exists()


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip


def test_cli_recommend_explain_history_and_export(tmp_path) -> None:
    db = copy_of_trained(tmp_path)
    run = _cli(
        db, "recommend", "--model", MODEL, "--user", "u00001", "--k", "4", "--explain", "--json"
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {"user", "model", "items"} <= set(out) and len(out["items"]) == 4
    item = out["items"][0]
    assert {"item_id", "score", "title", "categories", "explanation"} <= set(item)
    assert {"item_id", "contribution"} <= set(item["explanation"][0])
    contributions = [e["contribution"] for e in item["explanation"]]
    assert contributions == sorted(contributions, reverse=True)

    cold = _cli(
        db, "recommend", "--model", MODEL, "--history", "i0001,i0002,nope", "--k", "3", "--json"
    )
    assert cold.returncode == 0, cold.stderr
    cold_out = json.loads(cold.stdout)
    assert cold_out["history"] == ["i0001", "i0002", "nope"]
    assert cold_out["unknown_items"] == ["nope"] and len(cold_out["items"]) == 3
    assert not {"i0001", "i0002"} & {i["item_id"] for i in cold_out["items"]}

    out_file = tmp_path / "top.csv"
    exp = _cli(db, "export", "--model", MODEL, "--out", str(out_file), "--k", "3", "--json")
    assert exp.returncode == 0, exp.stderr
    assert json.loads(exp.stdout)["rows"] == USERS * 3
    assert len(pd.read_csv(out_file)) == USERS * 3
    wrong = _cli(db, "export", "--model", MODEL, "--out", str(tmp_path / "top.xlsx"))
    assert wrong.returncode == 2 and ".parquet or .csv" in wrong.stderr
    neither = _cli(db, "recommend", "--model", MODEL)
    assert neither.returncode == 2 and "--history" in neither.stderr
