"""The transition memory: what followed each item in training, with the Transformer as prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import TINY, seqs_of

from core.data.sequences import load_sequences, transition_pairs
from core.data.splits import leave_one_out
from core.models.bert import ModelConfig, PreferenceModel, append_mask
from core.models.checkpoint import load_model, save_model
from core.models.record import TrainingRecord
from core.models.scoring import ModelScorer
from core.serving.exports import top_k_all
from core.serving.model_data import next_item_probabilities
from core.training.config import TrainConfig
from core.training.loop import train


def test_the_memory_is_the_posterior_with_the_transformer_as_prior() -> None:
    torch.manual_seed(0)
    model = PreferenceModel(ModelConfig(n_items=6, max_len=5, hidden=8, layers=1, heads=2)).eval()
    histories = torch.tensor([[0, 0, 3, 1], [0, 0, 0, 0], [0, 2, 5, 4], [0, 0, 1, 3]])
    inputs = append_mask(histories, model.config.mask_index)
    with torch.no_grad():
        alone = torch.softmax(model.next_item_logits(inputs), -1)
        # 1 was followed by 2 three times and by 3 once; 4 by 2 twice; 3 by nothing.
        model.attach_transitions(
            torch.tensor([1, 1, 4]), torch.tensor([2, 3, 2]), torch.tensor([3, 1, 2]), 2.0
        )
        fused = torch.softmax(model.next_item_logits(inputs), -1)
    counts = torch.zeros(2, 8)
    counts[0, 2], counts[0, 3], counts[1, 2] = 3, 1, 2
    torch.testing.assert_close(fused[0], (counts[0] + 2 * alone[0]) / (4 + 2))
    torch.testing.assert_close(fused[2], (counts[1] + 2 * alone[2]) / (2 + 2))
    # A cold user, and a last item nothing ever followed: the Transformer alone.
    torch.testing.assert_close(fused[1], alone[1])
    torch.testing.assert_close(fused[3], alone[3])
    assert float(fused[:, [0, -1]].abs().sum()) == 0.0
    torch.testing.assert_close(fused.sum(1), torch.ones(4))
    # Items the Transformer finds nearly impossible keep distinct, finite scores.
    logits = torch.tensor([[-1e9, 0.0, 0.0, 0.0, -200.0, -300.0, 0.0, -1e9]])
    scores = model.with_transitions(logits, torch.tensor([1]))[0]
    assert float(scores[4]) > float(scores[5]) > -1e4


def test_transition_pairs_count_consecutive_events_of_each_user_only() -> None:
    seqs = seqs_of([[1, 2, 1, 2], [], [2, 3], [3]], n_items=3)
    src, dst, counts = transition_pairs(seqs)
    assert list(zip(src.tolist(), dst.tolist(), counts.tolist(), strict=True)) == [
        (1, 2, 2),
        (2, 1, 1),
        (2, 3, 1),
    ]


@pytest.fixture(scope="module")
def trained(demo_store):
    seqs = load_sequences(demo_store, "demo")
    return seqs, train(seqs, TrainConfig.from_preset("fast", epochs=1, **TINY))


def test_training_keeps_a_memory_that_beats_the_transformer_alone(trained) -> None:
    # The demo data plants successors after each item: a memory of them must help.
    seqs, result = trained
    memory = result.transitions
    assert memory["kept"], memory
    pairs = transition_pairs(leave_one_out(seqs).train)[0]
    assert result.model.config.transitions == memory["pairs"] == len(pairs)
    assert result.model.config.transition_alpha == memory["alpha"]
    assert result.best_val_ndcg10 == memory["val_ndcg@10"] > memory["val_ndcg@10_without"]
    # "without" is the very validation figure of the best epoch, by an independent count.
    best = max(h["val_ndcg@10"] for h in result.history)
    assert memory["val_ndcg@10_without"] == pytest.approx(best, abs=1e-9)


def test_every_ranking_path_applies_the_memory_the_same_way(trained, tmp_path) -> None:
    seqs, result = trained
    folder = save_model(
        tmp_path / "m",
        result.model,
        seqs.item_ids,
        TrainingRecord(name="m", transitions=result.transitions),
    )
    saved = load_model(folder)
    assert saved.config.transitions == result.model.config.transitions
    assert "transition memory:" in (folder / "README.md").read_text()
    users = np.arange(6)
    probs = next_item_probabilities(saved, [seqs.history(u) for u in users])
    # The evaluation scorer: the same log-probabilities.
    scorer = ModelScorer(saved.model, "bert")
    scores = scorer.score(torch.as_tensor(seqs.padded(scorer.history_len, users)).long())
    torch.testing.assert_close(scores.exp(), probs, atol=1e-6, rtol=1e-4)
    # Every user's top-k in one batch: the same items and probabilities.
    from core.serving.model_data import ModelData

    data = ModelData(saved, seqs, None, 0, "test")
    _, items, top, _ = top_k_all(data, k=5, exclude_seen=False)
    for u in users:
        expected = torch.topk(probs[u], 5)
        assert items[u].tolist() == expected.indices.tolist()
        np.testing.assert_allclose(top[u], expected.values.numpy(), rtol=1e-4)


def test_a_memory_that_does_not_help_is_left_out() -> None:
    # Every training transition is 1 -> 2 or 2 -> 1, and both are in every validation
    # history (so never ranked): the memory cannot change a validation rank.
    histories = [[1, 2, 1, 3 + k % 4, 8] for k in range(40)]
    result = train(seqs_of(histories, 8), TrainConfig.from_preset("fast", epochs=1, **TINY))
    assert not result.transitions["kept"]
    assert result.model.config.transitions == 0
    assert not any(k.startswith("transition") for k in result.model.state_dict())
    assert result.best_val_ndcg10 == result.transitions["val_ndcg@10_without"]


def test_no_memory_when_asked_or_for_the_causal_baseline(demo_store) -> None:
    seqs = load_sequences(demo_store, "demo")
    for settings in (dict(transitions=False), dict(causal=True)):
        result = train(seqs, TrainConfig.from_preset("fast", epochs=1, **TINY, **settings))
        assert result.transitions == {} and result.model.config.transitions == 0


def test_the_training_chart_shows_the_memory_level_of_a_saved_model(trained, tmp_path) -> None:
    from core.evaluation.runner import model_curves
    from core.reports import charts
    from core.training.runs import training_record

    seqs, result = trained
    record = training_record("m", "demo", "f", seqs, result, None)
    folder = save_model(tmp_path / "m", result.model, seqs.item_ids, record)
    history, memory = model_curves(str(folder))
    assert memory == pytest.approx(result.transitions["val_ndcg@10"])
    fig = charts.training_curves(history, "t", memory)
    level = [t for t in fig.data if "transition memory" in t.name]
    assert len(level) == 1 and list(level[0].y) == [result.best_val_ndcg10] * 2
    # A model without a memory (or an unreadable record) draws no level.
    assert model_curves(str(tmp_path / "nowhere")) == ([], None)
    plain = charts.training_curves(history, "t", None)
    assert not [t for t in plain.data if "transition memory" in t.name]
