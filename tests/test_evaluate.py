"""Evaluation: metric formulas on hand-computed cases, splits without leakage, ranking,
sampled vs full, confidence intervals, significance, storage and the evaluate CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import seqs_of

from core.data.sequences import dataset_sequences, load_sequences
from core.data.splits import leave_one_out, loo_split, make_split, time_split
from core.evaluation import accuracy, beyond_accuracy, statistics
from core.evaluation.ranking import rank
from core.evaluation.results import METRIC_LABELS, EvalConfig
from core.evaluation.runner import evaluate, load, run, stored_runs
from core.evaluation.segments import segment_labels
from core.models.baselines import FAST_BASELINES
from core.models.bert import ModelConfig, PreferenceModel
from core.models.scoring import ModelScorer
from core.store import Store
from core.training.baselines import fit_baselines
from core.training.config import TrainConfig
from core.training.runs import train_dataset
from core.training.validation import rank_targets

ROOT = Path(__file__).resolve().parents[1]


class FixedScorer:
    """Scores given per item, the same for every user (like a popularity ranking)."""

    history_len = 1

    def __init__(self, scores: list[float], name: str = "fixed") -> None:
        self.name = name
        self.vector = torch.tensor([0.0, *scores, 0.0])

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.vector.expand(len(histories), -1).clone()


# --------------------------------------------------------------------------- metric formulas


def test_metrics_without_ties_match_the_textbook_formulas() -> None:
    greater = np.array([0, 1, 4, 9, 10, 100])
    ties = np.zeros(6, dtype=np.int64)
    assert accuracy.hit_rate(greater, ties, 10).tolist() == [1, 1, 1, 1, 0, 0]
    expected = [1 / np.log2(r + 2) if r < 10 else 0.0 for r in greater]
    np.testing.assert_allclose(accuracy.ndcg(greater, ties, 10), expected)
    np.testing.assert_allclose(accuracy.reciprocal_rank(greater, ties), 1 / (greater + 1))
    np.testing.assert_allclose(accuracy.precision(greater, ties, 5), [0.2, 0.2, 0.2, 0, 0, 0])
    np.testing.assert_allclose(accuracy.recall(greater, ties, 5), [1, 1, 1, 0, 0, 0])


def test_ties_count_as_the_expected_position() -> None:
    # 2 items above, 3 tied with the target: positions 2, 3, 4, 5 equally likely.
    g, t = np.array([2]), np.array([3])
    assert accuracy.hit_rate(g, t, 4)[0] == pytest.approx(0.5)
    assert accuracy.ndcg(g, t, 4)[0] == pytest.approx((1 / np.log2(4) + 1 / np.log2(5)) / 4)
    assert accuracy.reciprocal_rank(g, t)[0] == pytest.approx((1 / 3 + 1 / 4 + 1 / 5 + 1 / 6) / 4)
    # A constant scorer over n items gets chance level, not a perfect score.
    n = 100
    assert accuracy.hit_rate(np.array([0]), np.array([n - 1]), 10)[0] == pytest.approx(10 / n)


def test_beyond_accuracy_on_a_hand_checked_case() -> None:
    top = np.array([[1, 2], [1, 3]])
    assert beyond_accuracy.coverage(top, 4) == 0.75
    # exposure counts over items 1..4: 2, 1, 1, 0
    assert beyond_accuracy.exposure_gini(top, 4) == pytest.approx(
        beyond_accuracy.gini(np.array([2, 1, 1, 0]))
    )
    assert beyond_accuracy.gini(np.array([2, 1, 1, 0])) == pytest.approx(0.375)
    users_per_item = np.array([0, 8, 2, 1, 0, 0])
    assert beyond_accuracy.novelty(top, users_per_item, 8) == pytest.approx(
        np.mean([0, 2, 0, 3]), abs=1e-9
    )  # -log2(8/8), -log2(2/8), -log2(8/8), -log2(1/8)
    assert beyond_accuracy.average_popularity(top, np.array([0, 10, 4, 2, 0, 0])) == 6.5
    features = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [0, 0], [0, 0]], dtype=float)
    assert beyond_accuracy.intra_list_diversity(top, features) == pytest.approx(0.5)  # 0 and 1


# --------------------------------------------------------------------------- splits


def test_leave_one_out_split_never_leaks_the_test_item() -> None:
    seqs = seqs_of([[1, 2, 3, 4], [2, 3], [5, 4, 3, 2, 1], [1]], 5)
    split = loo_split(seqs)
    assert split.users.tolist() == [0, 2]  # users with 3+ events
    assert split.targets.tolist() == [4, 1]
    for user, target in zip(split.users, split.targets, strict=True):
        # the target's position is beyond what any model or baseline learns from
        assert seqs.history(user)[-1] == target
        assert split.fit.lengths[user] == seqs.lengths[user] - 2
        assert split.inputs.history(user).tolist() == seqs.history(user)[:-1].tolist()
    # what core.training.loop.train learns from (after its own hold-out) is exactly ``fit``
    np.testing.assert_array_equal(leave_one_out(split.train_input).train.items, split.fit.items)


def test_a_large_dataset_validates_a_fixed_sample_and_trains_on_the_rest() -> None:
    """Beyond 2,000 users, a tenth of them validate; everyone else's second-to-last
    item is training data. The test item is never training data of anyone."""
    rng = np.random.default_rng(5)
    histories = [list(rng.integers(1, 40, size=rng.integers(1, 8))) for _ in range(30_000)]
    seqs = seqs_of(histories, 40)
    split = leave_one_out(seqs)
    eligible = np.flatnonzero(seqs.lengths >= 3)
    assert len(split.val_users) == int(np.ceil(0.1 * len(eligible))) > 2000
    assert set(split.val_users) <= set(eligible)
    assert leave_one_out(seqs).val_users.tolist() == split.val_users.tolist()  # fixed draw
    validating = np.zeros(seqs.n_users, dtype=bool)
    validating[split.val_users] = True
    held = np.where(seqs.lengths >= 3, np.where(validating, 2, 1), 0)
    np.testing.assert_array_equal(split.train.lengths, seqs.lengths - held)
    for user in range(0, seqs.n_users, 97):
        kept = seqs.history(user)[: split.train.lengths[user]]
        np.testing.assert_array_equal(split.train.history(user), kept)
    ends = seqs.offsets[split.val_users + 1]
    np.testing.assert_array_equal(split.val_targets, seqs.items[ends - 2])
    # evaluation fits every baseline on exactly this, and tests everyone's last item
    ev = loo_split(seqs)
    np.testing.assert_array_equal(ev.fit.lengths, split.train.lengths)
    assert ev.users.tolist() == eligible.tolist()
    assert (ev.fit.lengths[ev.users] < seqs.lengths[ev.users]).all()


def test_time_split_trains_before_the_cutoff_and_tests_the_next_item() -> None:
    seqs = seqs_of([[1, 2, 3], [4, 5], [1, 3]], 5)
    times = np.array([1.0, 2, 6, 7, 8, 3, 4])
    split = time_split(seqs, times, cutoff=5)
    assert split.users.tolist() == [0]  # user 1 starts after the cut-off, user 2 ends before
    assert split.targets.tolist() == [3]
    assert split.fit.lengths.tolist() == [2, 0, 2]
    assert (split.fit_times < 5).all()
    # no training data of any model at or after the cut-off
    assert split.train_input is split.fit
    with pytest.raises(ValueError, match="timestamp"):
        make_split(seqs, "time", None)


def test_users_with_one_item_and_targets_never_seen_in_training() -> None:
    # user 0: one event before the cut-off, then item 6, which nobody had before it
    seqs = seqs_of([[1, 6], [1], [1, 2, 3, 2]], 6)
    times = np.array([1.0, 9, 2, 1, 2, 3, 9])
    split = time_split(seqs, times, cutoff=5)
    assert split.users.tolist() == [0, 2]
    assert split.inputs.lengths[split.users].tolist() == [1, 3]
    counts = np.bincount(split.fit.items, minlength=8)
    labels = segment_labels(split, counts)
    assert labels["history length"].tolist() == ["1", "2–4"]
    assert labels["target popularity"][0] == "unseen in training"
    # a target never seen in training is still ranked (behind the seen items here)
    ranked = rank(FixedScorer([5, 4, 3, 2, 1, 0]), split, max_k=2)
    assert ranked.greater.tolist() == [4, 0]  # user 0: items 2..5 above item 6
    # leave-one-out skips users whose last item would be training data
    assert loo_split(seqs).users.tolist() == [2]


# --------------------------------------------------------------------------- ranking


def test_full_ranking_excludes_history_and_handles_never_seen_items() -> None:
    # items 1..6; user 0 saw 1, 2 then 6 (test); item 5 never occurs at all.
    seqs = seqs_of([[1, 2, 6], [2, 3, 4]], 6)
    split = loo_split(seqs)
    scorer = FixedScorer([6, 5, 4, 3, 2, 1])  # item i scores 7 - i
    ranked = rank(scorer, split, max_k=3)
    # user 0: items 1, 2 excluded; above item 6: 3, 4, 5 -> rank 3
    # user 1: items 2, 3 excluded; above item 4: item 1 -> rank 1
    assert ranked.greater.tolist() == [3, 1]
    assert ranked.ties.tolist() == [0, 0]
    assert ranked.top.tolist() == [[3, 4, 5], [1, 4, 5]]
    included = rank(scorer, split, max_k=3, exclude_seen=False)
    assert included.greater.tolist() == [5, 3]


def test_ties_are_counted_by_the_ranking() -> None:
    seqs = seqs_of([[1, 2, 3]], 5)
    split = loo_split(seqs)  # target 3, history 1, 2
    ranked = rank(FixedScorer([1, 1, 1, 1, 1]), split, max_k=2)
    assert (ranked.greater[0], ranked.ties[0]) == (0, 2)  # items 4, 5 tie with 3
    assert accuracy.hit_rate(ranked.greater, ranked.ties, 1)[0] == pytest.approx(1 / 3)


def test_model_ranks_agree_with_the_training_code() -> None:
    torch.manual_seed(0)
    seqs = seqs_of([[1, 2, 3, 4], [5, 6, 7], [2, 4, 6, 8, 1], [9, 3, 2]], 9)
    model = PreferenceModel(ModelConfig(n_items=9, max_len=6, hidden=8, heads=2)).eval()
    split = loo_split(seqs)
    ranked = rank(ModelScorer(model, "m"), split)
    # both read the last max_len - 1 items followed by the mask token
    hist = split.inputs.padded(6, split.users).astype(np.int64)
    expected = rank_targets(model, hist, split.targets, torch.device("cpu"))
    np.testing.assert_array_equal(ranked.greater, expected)


def test_sampled_metrics_are_never_below_full_ones() -> None:
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(np.arange(1, 61), size=6, replace=False)) for _ in range(80)]
    seqs = seqs_of(histories, 60)
    split = loo_split(seqs)
    scorer = FixedScorer(list(rng.normal(size=60)))
    result = evaluate([scorer], split, EvalConfig(sampled=10, bootstrap=50))
    res = result.results["fixed"]
    for k in (1, 5, 10, 20, 50):
        assert res["sampled"][f"hr@{k}"] >= res[f"hr@{k}"]
        assert res["sampled"][f"ndcg@{k}"] >= res[f"ndcg@{k}"] - 1e-12
    assert res["sampled"]["hr@10"] > res["hr@10"]  # and they really differ
    assert result.settings["sampled"] == {"negatives": 10, "by": "popularity"}


# --------------------------------------------------------------------------- uncertainty


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_users() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(100), rng.random(10_000)
    lo_s, hi_s = statistics.bootstrap_ci(small[:, None], 500)[0]
    lo_l, hi_l = statistics.bootstrap_ci(large[:, None], 500)[0]
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3


def test_paired_test_separates_real_from_null_differences() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(500)
    assert statistics.paired_permutation_test(base + 0.05, base, 500) < 0.01
    noise = base + rng.normal(0, 0.01, 500)
    noise -= noise.mean() - base.mean()  # same mean
    assert statistics.paired_permutation_test(noise, base, 500) > 0.2


# --------------------------------------------------------------------------- on the demo data


@pytest.fixture(scope="module")
def eval_store(demo_store, tmp_path_factory):
    """A private copy of the 300-user demo store (the shared one stays untouched)."""
    import shutil

    demo_store.cursor().execute("CHECKPOINT")
    path = tmp_path_factory.mktemp("eval") / "eval.duckdb"
    shutil.copyfile(demo_store.path, path)
    store = Store(path)
    yield store
    store.close()


@pytest.fixture(scope="module")
def demo_model(eval_store, tmp_path_factory):
    """A tiny model trained on the 300-user demo (one epoch)."""
    config = TrainConfig.from_preset(
        "fast",
        epochs=1,
        hidden=16,
        layers=1,
        max_len=20,
        text_encoder="none",
        min_steps_per_epoch=1,
    )
    out = tmp_path_factory.mktemp("m") / "tiny"
    model, _ = train_dataset(eval_store, "demo", config, name="tiny", out_dir=out)
    # 300 users: every one with 3+ events validates, and the record and card say so
    n_valid = int((load_sequences(eval_store, "demo").lengths >= 3).sum())
    assert json.loads((out / "training.json").read_text())["validation_users"] == n_valid
    assert f"validation for {n_valid:,} users" in (out / "README.md").read_text()
    return model


def test_run_evaluates_model_and_baselines_and_stores_the_run(eval_store, demo_model) -> None:
    result, warnings = run(
        eval_store,
        models=["tiny"],
        baselines=list(FAST_BASELINES),
        config=EvalConfig(bootstrap=100, permutations=200, sampled=50),
    )
    assert warnings == []
    assert list(result.results) == ["tiny", *FAST_BASELINES]
    res = result.results["tiny"]
    assert res["kind"] == "model"
    for key in ("hr@10", "ndcg@10", "mrr", "recall@10", "precision@10", "coverage@10"):
        assert 0 <= res[key] <= 1
        if key in res["ci"]:
            lo, hi = res["ci"][key]
            assert lo <= res[key] <= hi
    assert res["diversity@10"] >= 0  # the demo items have categories
    assert result.settings["diversity_basis"] == "category"
    assert res["significance"]["against"] == result.settings["best_baseline"]
    assert result.settings["users_evaluated"] == 300
    segments = result.segment_frame()
    assert set(segments["segment"]) == {"history length", "target popularity"}
    assert segments.groupby(["name", "segment"])["users"].sum().eq(300).all()
    # stored, and loaded back the same
    runs = stored_runs(eval_store, eval_store.get_dataset("demo").dataset_id)
    assert result.settings["run_id"] in set(runs["run_id"])
    loaded = load(eval_store, result.settings["run_id"])
    assert loaded.results == json.loads(json.dumps(result.results))
    assert not loaded.long_frame().empty and len(loaded.table()) == 6


def test_baselines_fit_on_the_split_only(eval_store) -> None:
    seqs = dataset_sequences(eval_store, "demo")
    split = loo_split(seqs)
    scorers, _ = fit_baselines(["pop", "markov"], split)
    pop = scorers[0].vector.numpy()
    np.testing.assert_array_equal(
        pop[1:-1], np.bincount(split.fit.items, minlength=seqs.n_items + 1)[1:]
    )
    # No test target is part of what the baselines saw.
    counts_all = np.bincount(seqs.items, minlength=seqs.n_items + 2)
    assert pop.sum() == counts_all.sum() - 2 * len(split.users)


def test_evaluate_cli_prints_one_json_object(eval_store, demo_model, tmp_path, capsys) -> None:
    import shutil

    db = tmp_path / "copy.duckdb"
    eval_store.cursor().execute("CHECKPOINT")
    shutil.copyfile(eval_store.path, db)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "--db",
            str(db),
            "evaluate",
            "--model",
            "tiny",
            "--baselines",
            "pop,markov",
            "--k",
            "5",
            "--sampled",
            "20",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["settings"]["split"] == "loo"
    assert out["settings"]["ranking"] == "full"
    assert out["settings"]["users_evaluated"] == 300
    assert set(out["results"]) == {"tiny", "pop", "markov"}
    assert {"ndcg@10", "hr@10", "mrr", "coverage@10", "ci", "sampled"} <= set(out["results"]["pop"])
    assert out["results"]["tiny"]["significance"]["metric"] == "ndcg@5"
    from core.cli import main

    assert main(["--db", str(db), "evaluate", "--model", "tiny", "--baselines", "bogus"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown baseline")
    assert main(["--db", str(db), "evaluate", "--model", "tiny", "--split", "time"]) == 0
    assert "global temporal split" in capsys.readouterr().out


def test_charts_of_an_evaluation_are_labelled() -> None:
    from core.reports import charts

    rng = np.random.default_rng(3)
    histories = [list(rng.choice(np.arange(1, 41), size=5, replace=False)) for _ in range(50)]
    split = loo_split(seqs_of(histories, 40))
    scorers = [FixedScorer(list(rng.normal(size=40)), name) for name in ("a", "b")]
    result = evaluate(scorers, split, EvalConfig(sampled=10, bootstrap=50), models=["a"])
    long = result.long_frame()
    bars = long[(long["metric"] == "ndcg") & (long["k"] == 10) & (long["ranking"] == "full")]
    fig = charts.metric_bars(bars, "NDCG@10")
    assert "full ranking" in fig.layout.title.text and fig.layout.yaxis.title.text == "NDCG@10"
    assert len(fig.data[0].x) == 2 and fig.data[0].error_y.array is not None
    sampled = long[(long["metric"] == "hr") & (long["ranking"] == "sampled")]
    fig = charts.metric_at_k(sampled, "HR", ranking="sampled")
    assert "sampled ranking" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "K (list length)"
    seg = result.segment_frame().rename(columns={"ndcg@10": "value"})
    fig = charts.segment_chart(
        seg[seg["segment"] == "target popularity"], "target popularity", "NDCG@10"
    )
    assert "users" in fig.data[0].x[0]
    beyond = long[long["metric"].isin(beyond_accuracy.BEYOND_METRICS) & (long["k"] == 10)]
    fig = charts.beyond_accuracy(beyond.assign(metric=beyond["metric"].map(METRIC_LABELS)), 10)
    assert len(fig.data) == 4  # coverage, gini, novelty, popularity (no features: no diversity)
    assert "No results" in charts.metric_bars(bars.iloc[:0], "NDCG@10").layout.annotations[0].text
    assert result.results["a"]["significance"]["against"] == "b"


def test_the_formulas_in_the_docstrings_hold() -> None:
    """Every metric documents its formula with an example; run them (doctest)."""
    import doctest

    from core.data import splits
    from core.models import baselines

    for module in (accuracy, beyond_accuracy, statistics, baselines, splits):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 5 and result.failed == 0, module.__name__
