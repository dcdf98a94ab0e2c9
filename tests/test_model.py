"""The preference model, its training, checkpoints and the train/models/recommend CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import TINY, seqs_of

from core.cli import main
from core.common.columns import MetricKeys
from core.data.demo import generate_demo, load_demo
from core.data.ingest import ingest
from core.data.mapping import EventMapping, ItemMapping
from core.data.sequences import dataset_sequences, load_sequences
from core.data.splits import leave_one_out
from core.models.bert import ModelConfig, PreferenceModel, append_mask
from core.models.checkpoint import (
    CheckpointError,
    load_model,
    model_card,
    read_training,
    save_model,
    stale_warning,
)
from core.models.record import TrainingRecord
from core.models.registry import resolve_model
from core.serving.model_data import next_item_probabilities
from core.serving.recommend import recommend
from core.store import Store
from core.training.config import TrainConfig
from core.training.loop import Progress, StopTraining, train
from core.training.runs import train_dataset, training_record
from core.training.validation import ndcg_hr_at
from core.training.windows import mask_batch, prefix_ends, training_windows, windows_ending_at

ROOT = Path(__file__).resolve().parents[1]


def popularity_val_ndcg(seqs) -> float:
    """Validation NDCG@10 of a most-popular ranking (seen items excluded), computed naively."""
    split = leave_one_out(seqs)
    pop = np.bincount(split.train.items, minlength=seqs.n_items + 2).astype(float)
    pop[0] = pop[-1] = -np.inf
    ranks = []
    for user, target in zip(split.val_users, split.val_targets, strict=True):
        scores = pop.copy()
        scores[split.train.history(user)] = -np.inf
        ranks.append(int((scores > pop[target]).sum()))
    return ndcg_hr_at(np.array(ranks))[0]


# --------------------------------------------------------------------------- the model


def test_scores_cover_items_only_and_trimmed_batches_mean_the_same() -> None:
    torch.manual_seed(0)
    model = PreferenceModel(ModelConfig(n_items=30, max_len=10, hidden=16, heads=2)).eval()
    full = torch.zeros(2, 10, dtype=torch.long)
    full[0, -4:] = torch.tensor([3, 5, 7, 9])
    full[1, -3:] = torch.tensor([2, 4, 6])
    inputs = append_mask(full, model.config.mask_index)
    logits = model.next_item_logits(inputs)
    assert logits.shape == (2, 32)
    assert torch.isinf(logits[:, 0]).all() and torch.isinf(logits[:, -1]).all()
    assert torch.isfinite(logits[:, 1:-1]).all()
    # Dropping leading padding columns changes nothing: positions count from the right.
    trimmed = model.next_item_logits(inputs[:, -5:])
    torch.testing.assert_close(trimmed, logits)


def test_training_windows_cover_long_histories() -> None:
    from core.data.sequences import Sequences

    seqs = Sequences(
        np.array(["a", "b"], dtype=object),
        np.array(["", *"xyz"], dtype=object),
        np.array([0, 9, 11]),
        np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 3, 1]),
    )
    windows = training_windows(seqs, 4)
    # 9 items, windows of 4 every 2 items back from the end; a 2-item history: one window.
    assert windows.tolist() == [
        [3, 1, 2, 3],
        [1, 2, 3, 1],
        [2, 3, 1, 2],
        [0, 1, 2, 3],
        [0, 0, 3, 1],
    ]


def test_next_item_windows_are_every_prefix_masked_at_its_end() -> None:
    from core.data.sequences import Sequences

    seqs = Sequences(
        np.array(["a", "b", "c"], dtype=object),
        np.array(["", *"wxyz"], dtype=object),
        np.array([0, 4, 5, 7]),
        np.array([1, 2, 3, 4, 2, 4, 1]),
    )
    users, ends = prefix_ends(seqs)
    # User a (4 items) asks 3 next-item questions, b (1 item) none, c (2 items) one.
    assert users.tolist() == [0, 0, 0, 2]
    windows = windows_ending_at(seqs, users, ends, 3)
    assert windows.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 4, 1]]
    inputs, mask = mask_batch(
        torch.as_tensor(windows),
        9,
        0.9,
        0.0,
        torch.Generator().manual_seed(0),
        force_last=torch.tensor([True, True, False, True]),
    )
    forced = [0, 1, 3]
    assert mask[forced, -1].all() and not mask[forced, :-1].any()
    assert (inputs[forced, -1] == 9).all()
    assert inputs[forced, :-1].tolist() == [[0, 1], [1, 2], [0, 4]]


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def demo_seqs(demo_store):
    return load_sequences(demo_store, "demo")


def test_fast_preset_beats_most_popular_by_a_wide_margin(demo_seqs) -> None:
    config = TrainConfig.from_preset("fast", text_encoder="none", epochs=6)
    result = train(demo_seqs, config)
    pop = popularity_val_ndcg(demo_seqs)
    assert result.best_val_ndcg10 > 2 * pop, (result.best_val_ndcg10, pop)
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))


def test_training_is_reproducible(demo_seqs) -> None:
    config = TrainConfig.from_preset("fast", epochs=1, **TINY)
    a = train(demo_seqs, config)
    b = train(demo_seqs, config)
    assert a.history[0]["loss"] == pytest.approx(b.history[0]["loss"], rel=1e-5)
    assert a.best_val_ndcg10 == pytest.approx(b.best_val_ndcg10, abs=1e-9)


def test_next_item_windows_add_steps_and_stay_reproducible(demo_seqs) -> None:
    def steps(share: float) -> tuple[int, float]:
        seen: list[Progress] = []
        config = TrainConfig.from_preset("fast", epochs=1, **{**TINY, "next_item_share": share})
        result = train(demo_seqs, config, callback=seen.append)
        return seen[-1].steps_per_epoch, result.history[0]["loss"]

    split = leave_one_out(demo_seqs)
    cloze = len(training_windows(split.train, TINY["max_len"]))
    prefixes = int((np.maximum(split.train.lengths - 1, 0)).sum())
    plain, _ = steps(0.0)
    with_half, loss = steps(0.5)
    assert plain == -(-cloze // TINY["batch"])
    assert with_half == -(-(cloze + round(0.5 * prefixes)) // TINY["batch"])
    assert steps(0.5)[1] == pytest.approx(loss, rel=1e-5)


def test_a_prefix_model_reads_a_history_as_training_read_each_prefix() -> None:
    torch.manual_seed(0)
    model = PreferenceModel(ModelConfig(n_items=30, max_len=8, dropout=0.0, attention="prefix"))
    model.eval()
    window = torch.tensor([[0, 0, 3, 7, 5, 9, 2, 4]])
    later_changed = window.clone()
    later_changed[0, 5:] = torch.tensor([11, 12, 13])
    with torch.no_grad():
        every = model.encode_every_prefix(window)
        changed = model.encode_every_prefix(later_changed)
        # The mask after the history 3 7 5 9 2, as ranking reads it.
        history = append_mask(window[:, :7], model.config.mask_index)[:, 1:]
        ranked = model.encode(history)[:, -1]
        both_ways = PreferenceModel(replace(model.config, attention="bidirectional"))
        both_ways.load_state_dict(model.state_dict())
        bidirectional = both_ways.eval().encode(history)[:, -1]
    # The state that asks for item t was computed from the items before t only...
    torch.testing.assert_close(every[0, :6], changed[0, :6])
    assert not torch.allclose(every[0, 6:], changed[0, 6:])
    # ...exactly as the mask after that history is when a user is ranked.
    torch.testing.assert_close(every[:, 7], ranked)
    assert not torch.allclose(ranked, bidirectional)
    assert torch.isfinite(every).all() and torch.isfinite(changed).all()


def test_prefix_training_asks_for_every_item_of_a_window_in_one_step(demo_seqs) -> None:
    config = TrainConfig.from_preset(
        "fast", epochs=1, **{**TINY, "attention": "prefix", "item_targets": False}
    )
    seen: list[Progress] = []
    result = train(demo_seqs, config, callback=seen.append)
    split = leave_one_out(demo_seqs)
    windows = len(training_windows(split.train, TINY["max_len"]))
    assert seen[-1].steps_per_epoch == -(-windows // TINY["batch"])  # no next-item windows
    assert result.model.config.attention == "prefix"
    again = train(demo_seqs, config)
    assert again.history[0]["loss"] == pytest.approx(result.history[0]["loss"], rel=1e-5)
    assert result.best_val_ndcg10 > popularity_val_ndcg(demo_seqs)
    # The items' own states can name the next item too, from the same pass.
    both = train(demo_seqs, replace(config, item_targets=True))
    assert both.history[0]["loss"] != pytest.approx(result.history[0]["loss"], rel=1e-3)
    assert both.best_val_ndcg10 > popularity_val_ndcg(demo_seqs)
    with pytest.raises(ValueError, match="unknown attention 'sideways'"):
        TrainConfig.from_preset("fast", attention="sideways")


class _TickingClock:
    """``core.training.loop``'s clock in a test: every reading is ``tick`` seconds after the last,
    so a time budget ends a run after the same steps on a quiet or a busy machine."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_a_time_budget_anneals_the_learning_rate_before_it_stops(demo_seqs, monkeypatch) -> None:
    # 200 epochs cannot fit in the budget: it ends the run, and the schedule has
    # followed the budget, so the last epochs ran at the floor of the cosine decay.
    import core.training.loop

    monkeypatch.setattr(core.training.loop, "time", _TickingClock(0.03))
    config = TrainConfig.from_preset("fast", epochs=200, time_budget=4.0, patience=1000, **TINY)
    result = train(demo_seqs, config)
    lrs = [h["lr"] for h in result.history]
    assert 3 <= len(lrs) < 200
    assert lrs[-1] < 0.1 * config.lr, lrs
    peak = lrs.index(max(lrs))
    assert lrs[peak:] == sorted(lrs[peak:], reverse=True), lrs  # warmup, then decay


def test_progress_reports_and_stop(demo_seqs) -> None:
    seen: list[Progress] = []

    def stop_after_first_epoch(progress: Progress) -> None:
        seen.append(progress)
        if progress.phase == "validate":
            raise StopTraining

    config = TrainConfig.from_preset("fast", epochs=5, **TINY)
    result = train(demo_seqs, config, callback=stop_after_first_epoch, report_every=1)
    assert result.interrupted
    assert len(result.history) == 1
    train_reports = [p for p in seen if p.phase == "train"]
    assert train_reports and all(p.loss > 0 and p.eta_s is not None for p in train_reports)
    assert seen[-1].phase == "stopped"


def test_resume_continues_instead_of_restarting(demo_seqs, tmp_path) -> None:
    config = TrainConfig.from_preset("fast", epochs=4, patience=10, **TINY)

    def stop_after_two(progress: Progress) -> None:
        if progress.phase == "validate" and progress.epoch == 2:
            raise StopTraining

    first = train(demo_seqs, config, tmp_path, callback=stop_after_two)
    assert len(first.history) == 2
    resumed_epochs: list[int] = []
    second = train(
        demo_seqs,
        config,
        tmp_path,
        resume=True,
        callback=lambda p: resumed_epochs.append(p.epoch) if p.phase == "validate" else None,
    )
    assert resumed_epochs == [3, 4]
    assert [h["epoch"] for h in second.history] == [1, 2, 3, 4]
    assert second.history[:2] == first.history
    # The same run without interruption gives the same model.
    straight = train(demo_seqs, config)
    assert [round(h["loss"], 4) for h in straight.history[:2]] == [
        round(h["loss"], 4) for h in second.history[:2]
    ]


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def saved_dir(demo_store, tmp_path_factory):
    seqs = dataset_sequences(demo_store, "demo")
    result = train(seqs, TrainConfig.from_preset("fast", epochs=1, **TINY))
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(
        folder,
        result.model,
        seqs.item_ids,
        TrainingRecord(name="tiny", dataset="demo", metrics={"val_ndcg@10": 0.1}),
    )
    return folder, result.model, seqs


def test_save_then_load_gives_identical_scores(saved_dir) -> None:
    folder, model, seqs = saved_dir
    loaded = load_model(folder)
    histories = [seqs.history(0), seqs.history(1)[:3], np.array([], dtype=np.int64)]
    model.eval()
    before = next_item_probabilities(
        type(loaded)(model, model.config, seqs.item_ids, TrainingRecord(), folder), histories
    )
    after = next_item_probabilities(loaded, histories)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert (folder / "README.md").read_text().startswith("# tiny")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "items.json",
        "model.safetensors",
        "training.json",
    ]


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: (f / "model.safetensors").write_bytes(
                (f / "model.safetensors").read_bytes()[:200]
            ),
            "corrupt or truncated",
        ),
        (lambda f: (f / "config.json").write_text('{"format": "reclens'), "corrupt or truncated"),
        (lambda f: (f / "items.json").unlink(), "missing items.json"),
        (lambda f: (f / "items.json").write_text('["", "a"]'), "items.json lists 2"),
        (
            lambda f: (f / "config.json").write_text(json.dumps({"format": "other"})),
            "not a RecLens preference model",
        ),
    ],
)
def test_damaged_model_directories_give_clear_errors(saved_dir, tmp_path, damage, message):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(saved_dir[0], folder)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


class _Booby:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def test_model_loading_never_unpickles(saved_dir, tmp_path) -> None:
    import pickle
    import shutil

    folder = tmp_path / "evil"
    shutil.copytree(saved_dir[0], folder)
    marker = tmp_path / "marker"
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": _Booby(marker)}))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(folder)
    assert not marker.exists()


# --------------------------------------------------------------------------- training records

# The keys of training.json, in order, as training_record's dict and the save's "saved"
# stamp wrote them before the record was typed: the files keep that shape.
TRAINING_KEYS = [
    "name",
    "dataset",
    "dataset_fingerprint",
    "users",
    "validation_users",
    "config",
    "loss_mode",
    "event_types",
    "text_encoder",
    "history",
    "epochs",
    "best_epoch",
    "seconds",
    "stopped_early",
    "interrupted",
    "metrics",
    "transitions",
    "saved",
]

FULL_RECORD = {
    "name": "m",
    "dataset": "demo",
    "dataset_fingerprint": "fp",
    "users": 1200,
    "validation_users": 1000,
    "config": {"preset": "fast", "hidden": 16},
    "loss_mode": "full",
    "event_types": [],
    "text_encoder": None,
    "history": [
        {"epoch": 1, "loss": 2.0, "val_ndcg@10": 0.3, "val_hr@10": 0.5},
        {"epoch": 2, "loss": 1.5, "val_ndcg@10": 0.4, "val_hr@10": 0.6},
    ],
    "epochs": 2,
    "best_epoch": 2,
    "seconds": 12.5,
    "stopped_early": False,
    "interrupted": False,
    "metrics": {"val_ndcg@10": 0.45, "val_hr@10": 0.6},
    "transitions": {
        "kept": True,
        "pairs": 8,
        "alpha": 1.0,
        "val_ndcg@10": 0.45,
        "val_ndcg@10_without": 0.4,
    },
    "saved": "2024-05-01T12:00:00+00:00",
}


def test_a_training_record_round_trips_and_keeps_keys_it_does_not_know() -> None:
    newer = {**FULL_RECORD, "trained_by": {"version": "9.9"}}  # a key of another version
    record = TrainingRecord.from_dict(newer)
    assert list(FULL_RECORD) == TRAINING_KEYS
    assert record.extra == {"trained_by": {"version": "9.9"}}
    assert record.to_dict() == newer and list(record.to_dict()) == list(newer)
    assert TrainingRecord.from_dict(record.to_dict()) == record
    assert record.best_entry() == FULL_RECORD["history"][1]
    assert record.memory_kept and record.memory_ndcg == 0.45 and record.without_memory == 0.4
    newer["config"]["hidden"] = 99  # the record shares no container with the dict it read
    assert record.config["hidden"] == 16 and record.to_dict()["config"]["hidden"] == 16


def test_the_training_record_docstring_example() -> None:
    import doctest

    from core.models import record

    result = doctest.testmod(record)
    assert result.attempted > 0 and result.failed == 0


def test_a_training_record_reads_partial_files_with_defaults() -> None:
    old = TrainingRecord.from_dict(
        {"name": "m", "dataset": "demo", "metrics": None, "history": "?", "best_epoch": 3}
    )
    assert (old.name, old.dataset, old.dataset_fingerprint, old.users) == ("m", "demo", None, None)
    assert (old.epochs, old.seconds, old.saved, old.text_encoder) == (None, None, "", None)
    assert old.metrics == {} and old.history == [] and old.transitions == {} and old.extra == {}
    assert not old.stopped_early and not old.interrupted
    assert old.best_entry() == {} and not old.memory_kept
    assert old.memory_ndcg is None and old.without_memory is None
    # missing keys are written with their defaults; "saved" only once saved
    assert list(old.to_dict()) == TRAINING_KEYS[:-1]
    assert TrainingRecord.from_dict(old.to_dict()) == old
    assert TrainingRecord.from_dict({}) == TrainingRecord()


def test_the_model_card_reads_as_before_the_record_was_typed() -> None:
    config = ModelConfig(8, max_len=20, hidden=16, layers=1, heads=2, dropout=0.0, transitions=8)
    # the text the card had when training.json was a dict (same record, same config)
    assert model_card(config, TrainingRecord.from_dict(FULL_RECORD)) == (
        "# m\n\nA BERT4Rec-style preference model (bidirectional Transformer over item "
        "sequences, built on Hugging Face `BertModel`) trained by RecLens with masked-item "
        "prediction.\n\n## Data\n- dataset: `demo` (fingerprint `fp`)\n- items: 8; users: "
        "1200\n- split: leave-one-out (last item = test, never used in training; "
        "second-to-last = validation for 1,000 users, training data for the rest)\n\n"
        "## Settings\n- preset: fast; max length 20, hidden 16, layers 1, heads 2, dropout "
        "0.0\n- text features: none\n- loss: full; epochs run: 2, best epoch 2\n"
        "- transition memory: 8 recorded (item, next item) pairs, prior weight 1 (the "
        "Transformer alone: validation NDCG@10 0.4000)\n\n## Metrics (validation, full "
        "ranking over all items, seen items excluded)\n- val_ndcg@10: 0.4500\n"
        "- val_hr@10: 0.6000\n\nTrained 2024-05-01T12:00:00+00:00 in 12 s.\n"
    )
    # what a partial record does not say reads "?", as it did
    card = model_card(replace(config, transitions=0), TrainingRecord.from_dict({"epochs": 3}))
    assert card.startswith("# RecLens model\n")
    assert "- dataset: `?` (fingerprint `?`)\n- items: 8; users: ?\n" in card
    assert "every user with 3+ events" in card
    assert "- loss: ?; epochs run: 3, best epoch ?\n- transition memory: none\n" in card


def test_a_saved_models_training_json_keeps_the_keys_it_always_had(tmp_path) -> None:
    histories = [[1 + (k + j) % 8 for j in range(6)] for k in range(60)]
    seqs = seqs_of(histories, 8)
    result = train(seqs, TrainConfig.from_preset("fast", epochs=1, **TINY))
    record = training_record("m", "demo", "fp", seqs, result, None)
    assert list(record.to_dict()) == TRAINING_KEYS[:-1]  # a run's result.json: not yet saved
    assert record.extra == {} and record.metrics[MetricKeys.NDCG] == result.best_val_ndcg10
    folder = save_model(tmp_path / "m", result.model, seqs.item_ids, record)
    written = json.loads((folder / "training.json").read_text())
    assert list(written) == TRAINING_KEYS and written["saved"]
    assert record.saved == ""  # the save stamps what it writes, not the caller's record
    loaded = load_model(folder)
    assert loaded.training == replace(record, saved=written["saved"])
    assert loaded.training.to_dict() == written
    assert read_training(folder) == loaded.training


def test_a_model_saved_by_an_older_version_loads_and_saves_again_losing_nothing(
    saved_dir, tmp_path
) -> None:
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(saved_dir[0], folder)
    # an old or hand-made training.json: no name, fingerprint, history..., a foreign key
    partial = {"dataset": "demo", "epochs": 3, "note": {"by": "hand"}}
    (folder / "training.json").write_text(json.dumps(partial))
    loaded = load_model(folder)
    assert loaded.name == "old" and loaded.dataset == "demo"  # no name: the folder's
    assert loaded.training.epochs == 3 and loaded.training.users is None
    assert loaded.training.extra == {"note": {"by": "hand"}} and loaded.warnings == []
    assert read_training(folder) == loaded.training
    assert stale_warning(loaded.training, "today") is None  # no fingerprint to compare

    again = save_model(tmp_path / "again", loaded.model, loaded.item_ids, loaded.training)
    written = json.loads((again / "training.json").read_text())
    assert list(written) == [*TRAINING_KEYS, "note"]
    assert {k: written[k] for k in partial} == partial
    assert load_model(again).training == replace(loaded.training, saved=written["saved"])
    card = (again / "README.md").read_text()
    assert card.startswith("# RecLens model\n") and "epochs run: 3, best epoch ?" in card

    # a training.json that is no JSON object is an unreadable file, said as such
    (folder / "training.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="training.json is not a JSON object"):
        load_model(folder)
    assert read_training(folder) is None


# --------------------------------------------------------------------------- cold start


def test_cold_start_items_are_scored_from_their_text(tmp_path) -> None:
    """Items with no events but a text get scores that follow the user's interests."""
    data = generate_demo(n_users=400, seed=3)
    cold = set(data.items["item_id"][::20])  # 5% of the catalogue never appears in events
    events = data.events[~data.events["item_id"].isin(cold)]
    events.to_parquet(tmp_path / "e.parquet", index=False)
    data.items.to_parquet(tmp_path / "i.parquet", index=False)
    store = Store(tmp_path / "db.duckdb")
    ingest(
        store,
        "cold",
        tmp_path / "e.parquet",
        EventMapping(user="user_id", item="item_id", time="timestamp"),
        items_path=tmp_path / "i.parquet",
        item_mapping=ItemMapping(
            item="item_id", title="title", categories="categories", text="text"
        ),
    )
    config = TrainConfig.from_preset("fast", epochs=3, text_encoder="auto")
    model_info, _ = train_dataset(
        store, "cold", config, name="cold-model", out_dir=tmp_path / "model"
    )
    saved = resolve_model(store, model_info.name)
    index = saved.index_of()
    assert cold <= set(index), "cold items are in the model's vocabulary"
    main_category = dict(zip(data.items["item_id"], data.items["categories"].str[0], strict=True))
    cold_ids = sorted(cold)
    cold_idx = torch.as_tensor([index[i] for i in cold_ids])
    planted = data.planted.set_index("user_id")["final_interest"]
    seqs = load_sequences(store, "cold")
    wins = total = 0
    for user in range(0, seqs.n_users, 4):
        probs = next_item_probabilities(saved, [seqs.history(user)])[0][cold_idx]
        liked = planted[seqs.user_ids[user]]
        inside = [
            p for i, p in zip(cold_ids, probs.tolist(), strict=True) if main_category[i] == liked
        ]
        outside = [
            p for i, p in zip(cold_ids, probs.tolist(), strict=True) if main_category[i] != liked
        ]
        if inside and outside:
            total += 1
            wins += np.mean(inside) > np.mean(outside)
    assert total > 50
    assert wins / total > 0.7, (wins, total)
    store.close()


# --------------------------------------------------------------------------- the CLI


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", "--db", str(db), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_cli_train_models_recommend(tmp_path) -> None:
    db = tmp_path / "cli.duckdb"
    assert _cli(db, "demo", "--users", "200").returncode == 0
    run = _cli(
        db,
        "train",
        "--dataset",
        "demo",
        "--name",
        "m1",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--text-encoder",
        "none",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {"model", "path", "epochs", "best_val_ndcg@10", "seconds"} <= set(out)
    assert out["model"] == "m1" and Path(out["path"]).is_dir()
    assert out["transition_memory"] is True  # the demo's planted successors
    plain = _cli(
        db,
        *("train", "--dataset", "demo", "--name", "m0", "--epochs", "1", "--hidden", "16"),
        *("--layers", "1", "--text-encoder", "none", "--no-transitions", "--no-item-targets"),
        "--json",
    )
    assert plain.returncode == 0, plain.stderr
    plain_out = json.loads(plain.stdout)
    assert plain_out["transition_memory"] is False
    assert json.loads((Path(plain_out["path"]) / "config.json").read_text())["transitions"] == 0
    settings = {
        name: json.loads((Path(out["path"]) / "training.json").read_text())["config"]
        for name, out in (("m1", out), ("m0", plain_out))
    }
    assert settings["m1"]["item_targets"] is True  # the fast preset's
    assert settings["m0"]["item_targets"] is False
    models = json.loads(_cli(db, "models", "--json").stdout)
    assert sorted(m["name"] for m in models) == ["m0", "m1"]
    rec = _cli(db, "recommend", "--model", "m1", "--user", "u00001", "--k", "5", "--json")
    assert rec.returncode == 0, rec.stderr
    result = json.loads(rec.stdout)
    assert result["user"] == "u00001" and len(result["items"]) == 5
    assert {"item_id", "score", "title", "categories"} <= set(result["items"][0])
    scores = [i["score"] for i in result["items"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    # Recommending from the directory works too, and seen items are excluded by default.
    by_dir = json.loads(
        _cli(
            db, "recommend", "--model", out["path"], "--user", "u00001", "--k", "5", "--json"
        ).stdout
    )
    assert by_dir["items"] == result["items"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "nope"], "no dataset called 'nope'"),
        (["train", "--dataset", "demo", "--epochs", "0"], "--epochs must be positive"),
        (
            ["train", "--dataset", "demo", "--next-items", "1.5"],
            "next item share must be between 0 and 1, not 1.5",
        ),
        (["recommend", "--model", "ghost", "--user", "u1"], "no model called 'ghost'"),
        (["train", "--dataset", "demo", "--text-encoder", "/nowhere"], "has no config.json"),
    ],
)
def test_cli_train_bad_input(small_demo_db, capsys, args, message) -> None:
    """A user error exits 2 with its one-line reason. In-process: tests/test_cli.py runs
    ``python -m core`` itself, and each subprocess here spent 10 s importing torch."""
    assert main(["--db", str(small_demo_db), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def small_demo_db(tmp_path_factory) -> Path:
    """A 50-user demo database (the bad-input cases only read it)."""
    db = tmp_path_factory.mktemp("bad") / "bad.duckdb"
    store = Store(db)
    load_demo(store, n_users=50)
    store.close()
    return db


def test_recommend_excludes_seen_items(saved_dir) -> None:
    folder, _, seqs = saved_dir
    saved = load_model(folder)
    history = list(seqs.item_ids[seqs.history(0)])
    top = recommend(saved, history, k=50)
    assert not set(top["item_id"]) & set(history)
    with_seen = recommend(saved, history, k=saved.config.n_items, exclude_seen=False)
    assert set(history) <= set(with_seen["item_id"])


# --------------------------------------------------------------------------- event types


def test_event_types_are_loaded_in_history_order(demo_store) -> None:
    seqs = load_sequences(demo_store, "demo", with_types=True)
    assert seqs.type_names == ("view", "cart", "purchase")
    user = 0
    raw = demo_store.query_df(
        "SELECT event_type FROM events WHERE user_id = ? ORDER BY pos", [seqs.user_ids[user]]
    )["event_type"].tolist()
    types = seqs.types[seqs.offsets[user] : seqs.offsets[user + 1]]
    assert [seqs.type_names[t - 1] for t in types] == raw
    split = leave_one_out(seqs)  # the split cuts the types with the items
    assert len(split.train.types) == len(split.train.items)
    assert (split.train.padded_types(20) > 0).sum() == (split.train.padded(20) > 0).sum()


def test_event_type_embeddings_train_save_and_load(demo_store, tmp_path) -> None:
    seqs = dataset_sequences(demo_store, "demo", with_types=True)
    config = TrainConfig.from_preset("fast", epochs=2, event_types=True, **TINY)
    result = train(seqs, config)
    assert result.model_config.n_event_types == 3
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    model = result.model.eval()
    items = torch.as_tensor(seqs.padded(10, np.arange(4)), dtype=torch.long)
    kinds = torch.as_tensor(seqs.padded_types(10, np.arange(4)), dtype=torch.long)
    with torch.no_grad():
        typed = model.next_item_logits(
            append_mask(items, model.config.mask_index), append_mask(kinds, 0)
        )
        untyped = model.next_item_logits(append_mask(items, model.config.mask_index))
    assert not torch.allclose(typed, untyped)  # the types are read
    record = training_record("typed", "demo", "fp", seqs, result, None)
    assert record.event_types == ["view", "cart", "purchase"]
    save_model(tmp_path / "typed", result.model, seqs.item_ids, record)
    loaded = load_model(tmp_path / "typed")
    assert loaded.config.n_event_types == 3
    with torch.no_grad():
        again = loaded.model.next_item_logits(
            append_mask(items, model.config.mask_index), append_mask(kinds, 0)
        )
    torch.testing.assert_close(again, typed)
    # Without types (an untyped history, a cold user) the model still ranks.
    assert len(recommend(loaded, list(seqs.item_ids[seqs.history(0)]), k=5)) == 5


def test_event_types_are_ignored_when_the_dataset_has_one_type(demo_seqs) -> None:
    one_type = replace(
        demo_seqs, types=np.ones(len(demo_seqs.items), np.int32), type_names=("view",)
    )
    config = TrainConfig.from_preset("fast", epochs=1, event_types=True, **TINY)
    assert train(one_type, config).model_config.n_event_types == 0
