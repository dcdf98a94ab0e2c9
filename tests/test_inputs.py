"""The one input builder (core.models.inputs): a history becomes the same query wherever
it is asked, in validation, evaluation and serving, for a bidirectional and a causal model,
whatever the batch it lands in; and the docstring examples of the modules that build and
score queries."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from core.data import sequences
from core.data.sequences import Sequences
from core.data.splits import leave_one_out
from core.models import inputs, scoring
from core.models.bert import ModelConfig, PreferenceModel
from core.models.inputs import (
    history_rows,
    history_width,
    query_batches,
    query_inputs,
)
from core.models.scoring import ModelScorer
from core.training.cluster import Cluster
from core.training.validation import ValidationSet, rank_targets, tie_floor

# Histories of every shape a log has: cold, one item, short, exactly the window, longer.
HISTORIES = [
    np.array([], dtype=np.int64),
    np.array([4]),
    np.array([3, 9, 2]),
    np.array([5, 6, 7, 8, 9, 10, 11]),
    np.arange(1, 21),
    np.array([12, 12, 13]),
]


@pytest.mark.parametrize("module", [inputs, scoring, sequences], ids=lambda m: m.__name__)
def test_the_docstring_examples(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def _model(causal: bool) -> PreferenceModel:
    torch.manual_seed(0)
    config = ModelConfig(n_items=40, max_len=8, hidden=16, heads=2, causal=causal)
    return PreferenceModel(config).eval()


def test_a_bidirectional_query_is_the_history_then_the_mask() -> None:
    config = ModelConfig(n_items=40, max_len=4)
    rows = history_rows([np.array([1, 2, 3, 4, 5]), np.array([7])], history_width(config))
    assert rows.tolist() == [[2, 3, 4, 5], [0, 0, 0, 7]]
    mask = config.mask_index
    # The oldest column gives way to the mask; the batch keeps the columns it needs.
    assert query_inputs(torch.from_numpy(rows), config).tolist() == [
        [3, 4, 5, mask],
        [0, 0, 7, mask],
    ]
    assert query_inputs(torch.from_numpy(rows[1:]), config).tolist() == [[7, mask]]
    # A cold user asks with the mask alone; event types put "no type" in its place.
    cold = torch.zeros(1, 4, dtype=torch.long)
    assert query_inputs(cold, config).tolist() == [[mask]]
    types = torch.tensor([[0, 1, 2, 1]])
    assert query_inputs(types, config, width=3, mask_value=0).tolist() == [[2, 1, 0]]


def test_a_causal_query_is_the_history_as_it_is() -> None:
    config = ModelConfig(n_items=40, max_len=4, causal=True)
    rows = history_rows([np.array([1, 2, 3, 4, 5]), np.array([7])], history_width(config))
    assert rows.tolist() == [[3, 4, 5], [0, 0, 7]]
    assert query_inputs(torch.from_numpy(rows), config).tolist() == [[3, 4, 5], [0, 0, 7]]
    assert query_inputs(torch.from_numpy(rows[1:]), config).tolist() == [[7]]


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_every_batch_answers_as_one_row_alone_would(causal: bool) -> None:
    model = _model(causal)
    rows = history_rows(HISTORIES, history_width(model.config))
    seen, widths = [], []
    with torch.no_grad():
        for query in query_batches(rows, model.config, batch=2):
            widths.append(query.inputs.shape[1])
            states = model.encode(query.inputs)[:, -1]
            for r, state in zip(query.rows, states, strict=True):
                alone = query_inputs(torch.from_numpy(rows[r : r + 1]), model.config)
                torch.testing.assert_close(state, model.encode(alone)[0, -1])
                seen.append(int(r))
    assert sorted(seen) == list(range(len(HISTORIES)))
    # Shortest first, so the first batches do not carry the long histories' padding.
    assert widths == sorted(widths) and widths[0] < widths[-1]


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_validation_and_evaluation_rank_a_history_alike(causal: bool) -> None:
    """Training's validation and the evaluation's scorer read the same query: the same
    history and target get the same rank from both."""
    model = _model(causal)
    scorer = ModelScorer(model, "bert")
    rows = history_rows(HISTORIES[1:], scorer.history_len)
    targets = np.array([1, 5, 30, 2, 20])
    ranks = rank_targets(model, rows, targets, torch.device("cpu"), exclude_seen=False)
    scores = scorer.score(torch.from_numpy(rows))
    target = scores.gather(1, torch.from_numpy(targets)[:, None])
    scores[:, 0] = scores[:, -1] = float("-inf")
    scores.scatter_(1, torch.from_numpy(targets)[:, None], float("-inf"))
    # A tie, or a difference within rounding, counts against the target in both.
    expected = (scores >= tie_floor(target)).sum(1).numpy()
    assert ranks.tolist() == expected.tolist()
    assert len(set(ranks.tolist())) > 1  # the ranks tell the histories apart


def test_serving_rows_are_the_sequences_own_padding() -> None:
    seqs = Sequences(
        np.array([f"u{i}" for i in range(len(HISTORIES))], dtype=object),
        np.array(["", *(f"i{i}" for i in range(1, 41))], dtype=object),
        np.concatenate([[0], np.cumsum([len(h) for h in HISTORIES])]),
        np.concatenate(HISTORIES).astype(np.int32),
    )
    assert (history_rows(HISTORIES, 8) == seqs.padded(8)).all()
    users = np.array([4, 1])
    assert (history_rows([HISTORIES[4], HISTORIES[1]], 5) == seqs.padded(5, users)).all()


def test_validation_reads_as_many_items_as_serving() -> None:
    """A long history is validated on the same last items a recommendation reads (before,
    validation rows were one column short, so the mask took one more item's place)."""
    history = np.arange(1, 21)  # 20 items: 18 train, 1 validation target, 1 test target
    seqs = Sequences(
        np.array(["u"], dtype=object),
        np.array(["", *(f"i{i}" for i in range(1, 41))], dtype=object),
        np.array([0, len(history)]),
        history.astype(np.int32),
    )
    split = leave_one_out(seqs)
    config = ModelConfig(n_items=40, max_len=8)
    validation = ValidationSet.of(split, Cluster(), config, with_types=False)
    asked = query_inputs(torch.from_numpy(validation.histories), config)
    served = query_inputs(torch.from_numpy(history_rows([history[:18]], 8)), config)
    assert asked.tolist() == served.tolist() == [[12, 13, 14, 15, 16, 17, 18, config.mask_index]]
    assert validation.targets.tolist() == [19]
