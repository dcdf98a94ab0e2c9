"""Baselines on tiny hand-checkable data, the causal Transformer, and the split they fit on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import seqs_of

from core.data.splits import loo_split
from core.evaluation.runner import evaluate
from core.models import baselines as B
from core.models.bert import ModelConfig, PreferenceModel
from core.models.scoring import ModelScorer
from core.training.baselines import fit_baselines, sasrec
from core.training.config import TrainConfig


def padded(rows: list[list[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row) :] = torch.tensor(row[-width:])
    return out


def test_parse_baselines() -> None:
    assert B.parse_baselines("all") == list(B.BASELINES)
    assert B.parse_baselines("none") == []
    assert B.parse_baselines(" ease, pop ") == ["pop", "ease"]
    with pytest.raises(ValueError, match="unknown baseline"):
        B.parse_baselines("pop,knn")


def test_most_popular_and_recent_popularity() -> None:
    fit = seqs_of([[1, 2, 2], [3, 2]], 3)
    assert B.most_popular(fit).vector.tolist() == [0, 1, 3, 1, 0]
    # without times: an event followed by s more events of its user weighs 0.5 ** (s / 5)
    recent = B.recent_popularity(fit, None).vector.numpy()
    half = 0.5**0.2
    np.testing.assert_allclose(recent[1:4], [half**2, half + 1 + 1, half], rtol=1e-6)
    # with times: decayed from the latest event
    timed = B.recent_popularity(fit, np.array([0.0, 10, 20, 0, 20]), half_life=10).vector
    np.testing.assert_allclose(timed[1:4].numpy(), [0.25, 0.5 + 1 + 1, 0.25])


def test_itemknn_scores_are_summed_cosine_similarities() -> None:
    fit = seqs_of([[1, 2], [1, 2], [1, 3], [4]], 4)
    knn = B.ItemKNN(fit)
    scores = knn.score(padded([[1], [2, 3]], knn.history_len))
    # d1 = 3, d2 = 2, d3 = 1; c12 = 2, c13 = 1
    s12, s13 = 2 / np.sqrt(6), 1 / np.sqrt(3)
    np.testing.assert_allclose(scores[0, [2, 3, 4]].numpy(), [s12, s13, 0], atol=1e-5)
    np.testing.assert_allclose(scores[1, 1].item(), s12 + s13, atol=1e-5)
    # items it cannot tell apart are ordered by popularity (tiny tie-breaking term)
    assert scores[0, 4] > 0 and scores[0, 4] < 1e-5


def test_itemknn_keeps_only_the_nearest_neighbours() -> None:
    fit = seqs_of([[1, 2, 3, 4], [1, 2], [1, 2], [1, 3]], 4)
    knn = B.ItemKNN(fit, neighbours=1)
    scores = knn.score(padded([[1]], knn.history_len))
    assert scores[0, 2] > 0.1 and scores[0, 3] < 1e-5  # only item 2 is kept for item 1


def test_markov_transitions_back_off_to_popularity() -> None:
    fit = seqs_of([[1, 2, 3], [1, 2], [2, 3], [4, 4]], 4)
    markov = B.Markov(fit, alpha=1.0)
    scores = markov.score(padded([[3, 1], [3]], 1)).numpy()
    pop = np.array([0, 2, 3, 2, 2]) / 9
    # from item 1: T(1 -> 2) = 2, two transitions out, alpha 1
    np.testing.assert_allclose(scores[0, 1:5], (np.array([0, 2, 0, 0]) + pop[1:]) / 3, rtol=1e-5)
    # from item 3: no transition out, popularity alone
    np.testing.assert_allclose(scores[1, 1:5], pop[1:] / 1, rtol=1e-5)


def test_ease_matches_the_closed_form() -> None:
    fit = seqs_of([[1, 2], [1, 2, 3], [2, 3], [3, 4], [1, 4]], 4)
    ease = B.EASE(fit, lam=1.0)
    x = np.zeros((5, 4))
    for u in range(5):
        x[u, fit.history(u) - 1] = 1
    p = np.linalg.inv(x.T @ x + np.eye(4))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(ease.weights[1:5, 1:5].numpy(), expected, atol=1e-5)
    scores = ease.score(padded([[1, 2]], 4))
    np.testing.assert_allclose(scores[0, 1:5].numpy(), expected[0] + expected[1], atol=1e-5)


def test_ease_is_skipped_with_a_note_above_the_limit() -> None:
    seqs = seqs_of([[1, 2, 3], [2, 3, 4], [4, 5, 1]], 5)
    scorers, notes = fit_baselines(["pop", "ease"], loo_split(seqs), ease_max_items=3)
    assert [s.name for s in scorers] == ["pop"]
    assert "ease skipped" in notes[0] and "limit of 3" in notes[0]


def test_causal_model_never_looks_ahead() -> None:
    torch.manual_seed(0)
    model = PreferenceModel(ModelConfig(n_items=12, max_len=8, hidden=16, heads=2, causal=True))
    model.eval()
    with torch.no_grad():
        c = model.encode(torch.tensor([[3, 5, 7, 9, 11]]))
        d = model.encode(torch.tensor([[3, 5, 7, 2, 4]]))
    # changing later items leaves the earlier positions' states unchanged
    torch.testing.assert_close(c[:, :3], d[:, :3])
    assert not torch.allclose(c[:, 3:], d[:, 3:])


def test_sasrec_trains_on_the_split_and_ranks_like_any_scorer() -> None:
    rng = np.random.default_rng(0)
    # Users walk through items in order: a next-item model learns "i is followed by i+1".
    histories = []
    for _ in range(120):
        start = int(rng.integers(1, 20))
        histories.append(list(range(start, start + int(rng.integers(4, 9)))))
    seqs = seqs_of(histories, 30)
    split = loo_split(seqs)
    config = TrainConfig.from_preset(
        "fast",
        epochs=5,
        hidden=16,
        layers=1,
        heads=2,
        max_len=10,
        batch=32,
        lr=1e-2,
        dropout=0.0,
        text_encoder="none",
        min_steps_per_epoch=6,
    )
    scorer = sasrec(split, config)
    assert isinstance(scorer, ModelScorer) and scorer.model.config.causal
    assert scorer.history  # the validation curve of its training
    result = evaluate([scorer, B.most_popular(split.fit)], split, models=())
    assert result.results["sasrec"]["hr@10"] > result.results["pop"]["hr@10"]
