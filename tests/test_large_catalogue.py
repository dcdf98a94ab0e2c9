"""The code paths only large catalogues take, and the training precision.

The demo has 800 items, below the tile sizes of the CPU loss and ranking, so these
tests build a random model over about 10,000 items: the tiled log-sum-exp of the full
and the sampled softmax against ``F.cross_entropy`` (values and gradients, float32 and
bfloat16 products),
the capped ranking against the plain one, a sampled-softmax step, one step of every
preset, and the bfloat16 setting itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import TINY, seqs_of
from test_cli import cli

from core.data.sequences import load_sequences
from core.models.bert import ModelConfig, PreferenceModel
from core.training.cluster import resolve_precision
from core.training.config import PRESETS, TrainConfig
from core.training.cooccurrence import pmi_item_vectors
from core.training.loop import train
from core.training.losses import _LOSS_TILE, _TiledLogSumExp
from core.training.validation import _RANK_CHUNK, rank_targets

N_ITEMS = 10_000  # several chunks of both the loss and the ranking
assert N_ITEMS > 4 * max(_LOSS_TILE, _RANK_CHUNK) // 2


def _loss_inputs(seed: int = 0, rows: int = 2 * _LOSS_TILE + 57):
    """Several tiles each way: rows of targets, and N_ITEMS candidates."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, 32, generator=gen)
    weight = torch.randn(N_ITEMS, 32, generator=gen) * 0.2
    bias = torch.randn(N_ITEMS, generator=gen) * 0.1
    labels = torch.randint(0, N_ITEMS, (rows,), generator=gen)
    return [t.requires_grad_() for t in (hidden, weight, bias)], labels


def _assert_same(loss, reference, inputs, tolerance: float) -> None:
    """Same value and same gradients (float32) for every input."""
    expected = torch.autograd.grad(reference, inputs, retain_graph=True)
    got = torch.autograd.grad(loss, inputs)
    loss, reference = loss.detach(), reference.detach()
    assert abs(float(loss) - float(reference)) <= tolerance * float(reference)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == torch.float32
        assert float((g - e).abs().max()) <= tolerance * float(e.abs().max())


@pytest.mark.parametrize(("low", "tolerance"), [(False, 1e-5), (True, 2e-2)])
def test_tiled_full_softmax_matches_cross_entropy(low: bool, tolerance: float) -> None:
    (hidden, weight, bias), labels = _loss_inputs()
    reference = F.cross_entropy(hidden @ weight.T + bias, labels)
    lse = _TiledLogSumExp.apply(hidden, weight, bias, low)
    loss = (lse - ((hidden * weight[labels]).sum(1) + bias[labels])).mean()
    _assert_same(loss, reference, (hidden, weight, bias), tolerance)


@pytest.mark.parametrize(("low", "tolerance"), [(False, 1e-5), (True, 2e-2)])
def test_tiled_sampled_softmax_leaves_out_negatives_that_hit_the_target(
    low: bool, tolerance: float
) -> None:
    """The sampled loss: each row's positive against shared negatives, where a negative
    equal to the row's target is left out, as the plain expression does it."""
    (hidden, weight, bias), labels = _loss_inputs(seed=1)
    gen = torch.Generator().manual_seed(2)
    neg = torch.randint(0, N_ITEMS, (3 * _LOSS_TILE // 2,), generator=gen)
    neg[:40] = labels[:40]  # 40 rows see their own target among the negatives,
    with torch.no_grad():  # a likely one, so counting it would show
        bias[labels[:40]] += 5.0
    pos = (hidden * weight[labels]).sum(1) + bias[labels]
    plain = (hidden @ weight[neg].T + bias[neg]).masked_fill(
        neg[None, :] == labels[:, None], float("-inf")
    )
    zeros = torch.zeros(len(labels), dtype=torch.long)
    reference = F.cross_entropy(torch.cat([pos[:, None], plain], 1), zeros)
    lse = _TiledLogSumExp.apply(hidden, weight[neg], bias[neg], low, neg, labels)
    loss = (torch.logaddexp(pos, lse) - pos).mean()
    _assert_same(loss, reference, (hidden, weight, bias), tolerance)


def _random_model(causal: bool = False) -> PreferenceModel:
    torch.manual_seed(3)
    config = ModelConfig(n_items=N_ITEMS, hidden=32, layers=1, heads=2, max_len=12, causal=causal)
    model = PreferenceModel(config).eval()
    with torch.no_grad():
        model.item_bias.normal_(0, 0.5)
    return model


def _histories(n: int = 300, width: int = 11, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, n)
    hist = np.zeros((n, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        hist[row, width - length :] = rng.integers(1, N_ITEMS + 1, length)
    return hist, rng.integers(1, N_ITEMS + 1, n)


def test_capped_ranking_agrees_with_the_plain_ranking_below_the_cap() -> None:
    model = _random_model()
    hist, targets = _histories()
    plain = rank_targets(model, hist, targets, torch.device("cpu"), batch=64)
    # by hand: every item's logit, history and non-items left out
    with torch.no_grad():
        inputs = torch.cat([torch.as_tensor(hist), torch.full((len(hist), 1), N_ITEMS + 1)], 1)
        scores = model.score(model.encode(inputs[:, 1:])[:, -1], model.item_table())
    for row in range(len(hist)):
        s = scores[row].clone()
        s[torch.as_tensor(hist[row][hist[row] > 0])] = float("-inf")
        s[targets[row]] = scores[row, targets[row]]
        # the ranking trims padding columns, so its scores may differ in the last bits
        target = s[targets[row]]
        assert int((s > target + 1e-4).sum()) <= plain[row] <= int((s > target - 1e-4).sum())
    capped = rank_targets(model, hist, targets, torch.device("cpu"), batch=64, cap=10)
    below = plain < 10
    assert (capped[below] == plain[below]).all()
    assert (capped[~below] >= 10).all()


def _big_catalogue_seqs(n_users: int = 120, length: int = 12):
    """Users walking a 10,000-item catalogue in strides: learnable, every item seen."""
    rng = np.random.default_rng(9)
    histories = []
    for _ in range(n_users):
        start = int(rng.integers(1, N_ITEMS))
        histories.append([(start + 7 * k) % N_ITEMS + 1 for k in range(length)])
    histories.append(list(range(1, N_ITEMS + 1)))  # one user sees every item
    return seqs_of(histories, N_ITEMS)


def test_a_sampled_softmax_step_learns_on_a_large_catalogue() -> None:
    seqs = _big_catalogue_seqs()
    config = TrainConfig(**{**TINY, "loss": "sampled", "negatives": 512, "epochs": 1})
    result = train(seqs, config)
    assert result.config.loss_mode(seqs.n_items) == "sampled"
    assert result.history and np.isfinite(result.history[0]["loss"])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_one_step_of_every_preset(preset: str) -> None:
    seqs = _big_catalogue_seqs(n_users=40)
    config = TrainConfig.from_preset(
        preset, epochs=1, min_steps_per_epoch=1, text_encoder="none", transitions=False
    )
    config = TrainConfig(**{**config.to_dict(), "batch": 32, "hidden": 16, "layers": 1, "heads": 2})
    result = train(seqs, config)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    assert result.config.precision in ("float32", "bfloat16")


def test_precision_setting_is_checked_and_resolved() -> None:
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        TrainConfig(precision="half")
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"
    from core.models.text import native_bfloat16

    assert resolve_precision("auto", cpu) == ("bfloat16" if native_bfloat16() else "float32")


@pytest.fixture(scope="module")
def demo_seqs(demo_store):
    return load_sequences(demo_store, "demo")


def test_bfloat16_and_float32_training_learn_the_same(demo_seqs) -> None:
    """Mixed precision changes the arithmetic, not what is learned (demo, full softmax)."""
    figures = {}
    for precision in ("float32", "bfloat16"):
        # Two epochs: on a CPU without bfloat16 units the products are emulated, slowly.
        config = TrainConfig.from_preset(
            "fast", text_encoder="none", transitions=False, precision=precision, seed=1, epochs=2
        )
        result = train(demo_seqs, config)
        assert result.config.precision == precision
        figures[precision] = result.best_val_ndcg10
    assert figures["bfloat16"] >= 0.9 * figures["float32"], figures


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_device_cuda_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    assert cli("demo", "--users", "50", db=db).returncode == 0
    run = cli("train", "--dataset", "demo", "--device", "cuda", "--epochs", "1", db=db)
    assert run.returncode == 2, run.stderr
    assert "no CUDA device is available" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_pmi_item_vectors_put_co_occurring_items_together() -> None:
    """Items that follow each other in histories start near each other; padding and
    mask rows are zero."""
    rng = np.random.default_rng(0)
    # 20 groups of 5 items; each history walks inside one group
    histories = []
    for _ in range(400):
        group = int(rng.integers(0, 20))
        histories.append([group * 5 + int(k) + 1 for k in rng.integers(0, 5, 8)])
    seqs = seqs_of(histories, 100)
    vectors = pmi_item_vectors(seqs, 16)
    assert vectors.shape == (102, 16)
    assert float(vectors[0].abs().sum()) == 0.0 and float(vectors[-1].abs().sum()) == 0.0
    unit = F.normalize(vectors[1:-1], dim=1)
    cosine = unit @ unit.T
    same = torch.block_diag(*[torch.ones(5, 5)] * 20).bool() & ~torch.eye(100, dtype=torch.bool)
    other = ~torch.block_diag(*[torch.ones(5, 5)] * 20).bool()
    assert float(cosine[same].mean()) > float(cosine[other].mean()) + 0.5
    with pytest.raises(ValueError, match="unknown item init 'svd'"):
        TrainConfig(item_init="svd")


def test_every_preset_starts_items_from_co_occurrence() -> None:
    assert all(TrainConfig.from_preset(p).item_init == "pmi" for p in PRESETS)
