"""Benchmark: training speed and quality of the preference model on Amazon Beauty.

    .venv/bin/python bench/train.py [--epochs N] [--time-budget S] [--loss full|sampled|both]
                                    [--device auto|cpu|cuda] [--naive-steps K] [--data PATH]

Loads ``beauty.txt`` (``user item``, space-delimited, no header, file order = time;
40,226 users, 54,542 items) into a temporary store with ``core.data.ingest.ingest``, reads
it back with ``core.data.sequences.load_sequences``, then:

* for each loss mode, trains with ``core.training.loop.train`` in the ``fast`` preset's shape
  (max_len 50, hidden 64, 2 layers, 2 heads, batch 256, lr 3e-3, no text encoder) and reports
  steps/epoch, seconds/step, seconds/epoch (training steps alone, and validation +
  checkpoint separately), sequences/s, validation NDCG@10 of every epoch, the best
  one and the time to reach it, and the TEST NDCG@10/HR@10 of the best model: the
  last item of every user ranked against all items, the user's earlier items
  excluded, given the history before it (``core.training.validation.rank_targets``);
* times a few steps of a naive reference written here: the same model and masking,
  but every batch is 256 x 50 with no padding trimmed and no length bucketing, and
  full-softmax logits are computed for every position of the batch (cross-entropy
  taken on the masked ones), as a textbook BERT4Rec loop does. The same-batch loss of
  the naive step and of ours is compared (dropout off) to show it is the same
  objective;
* reports most-popular's test NDCG@10/HR@10 on the same protocol for context.

Defaults: both modes, full softmax for 10 epochs and sampled for 20 (the cosine
schedule spans them), at most 480 s of training per mode, 3 timed naive steps:
about 12 minutes in all on 2 CPU cores. The JSON's ``ran`` says what was run.

Wall-clock figures depend on the machine's load: the 1-minute load average is
sampled at start, after every epoch and at the end, and process CPU seconds are
reported next to wall seconds. On a shared machine run it as
``OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/train.py``: with libgomp's default
busy-waiting, 2-thread torch steps get several times slower as soon as other work
competes for the cores (see BENCHMARKS.md); the policy in force is in the JSON.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, code_state, ingest_beauty, loadavg, log  # noqa: E402  (bench/common.py)
from common import machine as machine_facts  # noqa: E402

from core.data.sequences import Sequences, load_sequences  # noqa: E402
from core.data.splits import leave_one_out  # noqa: E402
from core.models.bert import PreferenceModel  # noqa: E402
from core.store import Store  # noqa: E402
from core.training.cluster import pick_device  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.loop import Progress, train  # noqa: E402
from core.training.losses import _step_loss  # noqa: E402
from core.training.validation import ndcg_hr_at, rank_targets  # noqa: E402
from core.training.windows import mask_batch, training_windows  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "amazon-beauty" / "beauty.txt"
MEASURED_CODE = ("core/training/", "core/models/bert.py", "core/models/dropout.py")
DEFAULT_EPOCHS = {"full": 10, "sampled": 20}
DEFAULT_BUDGET_S = 480.0
# The naive reference of issue 3, measured on this machine before any of this work.
ISSUE_NAIVE_S_PER_STEP = 1.8
# The bar from the product brief (full ranking, leave-one-out, same 2-core CPU).
RECBOLE_SASREC = {"test_ndcg@10": 0.0119, "minutes": 24}


def machine(device: torch.device) -> dict:
    info = machine_facts(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp spins)"),
        device=str(device),
    )
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


# --------------------------------------------------------------------------- data


def load_beauty(path: Path, work: Path) -> tuple[Sequences, dict]:
    """Ingest the file into a temporary store and read the sequences back."""
    t0 = time.perf_counter()
    store = Store(work / "bench.duckdb")
    try:
        result = ingest_beauty(store, path)
        t1 = time.perf_counter()
        seqs = load_sequences(store, "beauty")
        t2 = time.perf_counter()
    finally:
        store.close()
    info = {
        "file": str(path),
        "events": int(result.dataset.n_events),
        "users": int(seqs.n_users),
        "items": int(seqs.n_items),
        "mean_history": r(seqs.lengths.mean(), 2),
        "ingest_s": r(t1 - t0, 2),
        "load_sequences_s": r(t2 - t1, 2),
        "mapping": "column 1 = user, column 2 = item, no time column (file order)",
    }
    return seqs, info


def test_split(seqs: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(histories, targets) of the test protocol: last item vs everything before it.

    Histories are each user's full history minus the last item, left-padded to
    ``max_len - 1`` exactly like the validation histories inside ``train``.
    """
    lengths = seqs.lengths
    users = np.flatnonzero(lengths >= 3)  # the users that have a test target in train()
    keep = lengths - 1
    offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    take = np.repeat(seqs.offsets[:-1], keep) + (
        np.arange(keep.sum()) - np.repeat(offsets[:-1], keep)
    )
    before_last = Sequences(seqs.user_ids, seqs.item_ids, offsets, seqs.items[take])
    histories = before_last.padded(max_len - 1, users).astype(np.int64)
    targets = seqs.items[seqs.offsets[users + 1] - 1].astype(np.int64)
    return histories, targets


def popularity_test(seqs: Sequences, seed: int = 0) -> dict:
    """Most-popular on the test protocol (counts from everything but the test items).

    Ties are broken at random (fixed seed): with strict "greater than" ranking,
    ties would otherwise all count in the target's favour.
    """
    lengths = seqs.lengths
    users = np.flatnonzero(lengths >= 3)
    last = seqs.offsets[1:] - 1
    not_test = np.ones(len(seqs.items), dtype=bool)
    not_test[last[users]] = False
    counts = np.bincount(seqs.items[not_test], minlength=seqs.n_items + 2).astype(np.float64)
    rng = np.random.default_rng(seed)
    score = counts + rng.random(len(counts)) * 0.5  # below 1: only breaks ties
    score[0] = score[-1] = -np.inf
    order_desc = np.sort(score[1:-1])[::-1]
    ranks = np.empty(len(users), dtype=np.int64)
    for k, u in enumerate(users):
        target = seqs.items[last[u]]
        t = score[target]
        greater = int(np.searchsorted(-order_desc, -t, side="left"))  # items scored > t
        seen = np.unique(seqs.items[seqs.offsets[u] : last[u]])
        greater -= int((score[seen] > t).sum())
        ranks[k] = greater
    ndcg, hr = ndcg_hr_at(ranks, 10)
    return {"test_ndcg@10": r(ndcg), "test_hr@10": r(hr), "users": int(len(users))}


# --------------------------------------------------------------------------- naive


def naive_loss(
    model: PreferenceModel,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    windows: torch.Tensor,
    exact: bool = False,
) -> torch.Tensor:
    """Textbook loss: logits over every item at every position, CE on the masked ones.

    The timed version is a plain output layer over the whole item table (tied
    weights + bias), as in textbook BERT4Rec code. ``exact`` uses ``model.score``
    instead (padding and mask columns at -inf), which is exactly the objective
    ``core.training.losses`` optimises; it is slower (one more pass over the logits), so the
    timed naive step is the faster of the two.
    """
    states = model.encode(inputs)  # (batch, max_len, hidden): every position
    if exact:
        logits = model.score(states)
    else:
        logits = F.linear(model.head(states), model.item_table(), model.item_bias)
    labels = windows.masked_fill(~mask, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def naive_reference(
    seqs: Sequences, config: TrainConfig, device: torch.device, steps: int, seed: int
) -> dict:
    """Time ``steps`` steps of the naive loop (plus one untimed warm-up step)."""
    split = leave_one_out(seqs)
    windows = training_windows(split.train, config.max_len)
    steps_per_epoch = math.ceil(len(windows) / config.batch)
    mc = config.model_config(seqs.n_items)
    torch.manual_seed(seed)
    model = PreferenceModel(mc).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=generator).numpy()

    # Same objective: on one batch, with dropout off, the naive loss equals ours.
    idx = order[: config.batch]
    full = torch.as_tensor(windows[idx])
    inputs, mask = mask_batch(
        full, mc.mask_index, config.mask_prob, config.last_item_prob, generator
    )
    width = int((full != 0).sum(1).max())
    model.eval()
    with torch.no_grad():
        l_naive = float(
            naive_loss(model, inputs.to(device), mask.to(device), full.to(device), exact=True)
        )
        sampling_q = torch.ones(mc.vocab_size, device=device)
        l_ours = float(
            _step_loss(
                model,
                inputs[:, -width:].to(device),
                mask[:, -width:].to(device),
                full[:, -width:].to(device),
                "full",
                config.negatives,
                sampling_q,
                generator,
                device,
            )
        )
    model.train()

    times, cpu_times = [], []
    for k in range(steps + 1):
        idx = order[(k + 1) * config.batch : (k + 2) * config.batch]
        w = torch.as_tensor(windows[idx])
        inputs, mask = mask_batch(
            w, mc.mask_index, config.mask_prob, config.last_item_prob, generator
        )
        t0, c0 = time.perf_counter(), time.process_time()
        loss = naive_loss(model, inputs.to(device), mask.to(device), w.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        log(f"naive step {k} ({'warm-up' if k == 0 else 'timed'}): {dt:.2f} s (cpu {dc:.2f} s)")
        if k:
            times.append(dt)
            cpu_times.append(dc)
        del loss
    med = statistics.median(times)
    return {
        "what": (
            "same model, masking and AdamW; batches of 256 full-width (50) windows in random "
            "order (no padding trimmed, no length bucketing); an output layer (tied item "
            "table + bias) gives logits over all items for every position "
            "(256 x 50 x (n_items + 2)), cross-entropy on the masked positions"
        ),
        "timed_steps": steps,
        "s_per_step": [r(t, 3) for t in times],
        "s_per_step_median": r(med, 3),
        "cpu_s_per_step_median": r(statistics.median(cpu_times), 3),
        "steps_per_epoch": steps_per_epoch,
        "s_per_epoch_estimate": r(med * steps_per_epoch, 1),
        "estimate_note": "median s/step x steps/epoch (training steps only; not a full epoch run)",
        "same_batch_loss": {
            "what": "one batch, dropout off: naive with model.score (-inf columns) vs ours",
            "naive": r(l_naive, 6),
            "ours": r(l_ours, 6),
        },
        "loadavg_1min": loadavg(),
    }


# --------------------------------------------------------------------------- one mode


def run_mode(
    seqs: Sequences,
    config: TrainConfig,
    device: torch.device,
    test_hist: np.ndarray,
    test_targets: np.ndarray,
    work: Path,
) -> dict:
    events: list[tuple[str, int, int, float, float, float | None]] = []
    loads: dict[int, float | None] = {}

    def callback(p: Progress) -> None:
        events.append(
            (p.phase, p.epoch, p.step, time.perf_counter(), time.process_time(), p.val_ndcg10)
        )
        if p.phase == "validate":
            loads[p.epoch] = loadavg()
        if p.phase == "validate":
            log(
                f"  {p.message} (best {p.best_val_ndcg10:.4f} @ {p.best_epoch}, "
                f"{p.elapsed_s:.0f} s, load {loadavg()})"
            )
        elif p.phase == "train" and p.step % 50 == 0:
            log(
                f"  epoch {p.epoch} step {p.step}/{p.steps_per_epoch} loss {p.loss:.3f} "
                f"{p.sequences_per_s:.0f} seq/s"
            )

    run_dir = work / f"run-{config.loss}"
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(seqs, config, run_dir, callback=callback, report_every=1)
    t_train = time.perf_counter() - t0
    shutil.rmtree(run_dir, ignore_errors=True)

    steps_per_epoch = max(e[2] for e in events if e[0] == "train")
    by_epoch = {h["epoch"]: h for h in result.history}
    step_dts: list[float] = []  # every step but the first of epoch 1 (it holds the setup)
    epochs: list[dict] = []
    start_t, start_c = t0, c0
    steps: list[tuple[float, float]] = []
    for phase, epoch, _step, t, c, val in events:
        if phase == "train":
            steps.append((t, c))
        elif phase == "validate" and steps:
            times = [start_t] + [s[0] for s in steps]
            dts = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
            step_dts += dts[1:] if not epochs else dts
            epochs.append(
                {
                    "epoch": epoch,
                    "steps": len(steps),
                    "train_s": steps[-1][0] - start_t,
                    "train_cpu_s": r(steps[-1][1] - start_c, 2),
                    "validate_s": r(t - steps[-1][0], 2),
                    "validate_cpu_s": r(c - steps[-1][1], 2),
                    "loss": r(by_epoch[epoch]["loss"]),
                    "val_ndcg@10": r(val),
                    "val_hr@10": r(by_epoch[epoch]["val_hr@10"]),
                    "elapsed_s": r(t - t0, 1),
                    "loadavg_1min": loads.get(epoch),
                }
            )
            start_t, start_c = t, c
            steps = []
    med_step = statistics.median(step_dts) if step_dts else None
    setup_s = None
    if epochs and med_step is not None:
        # Epoch 1's first step also holds the setup (split, windows, model): count it
        # as a median step instead.
        first_step = next(e[3] for e in events if e[0] == "train")
        setup_s = (first_step - t0) - med_step
        epochs[0]["train_s"] -= setup_s
        epochs[0]["note"] = "setup excluded: first step counted as a median step"
    for e in epochs:
        e["train_s"] = r(e["train_s"], 2)
    full_epochs = [e for e in epochs if e["steps"] >= steps_per_epoch]
    train_epoch_s = statistics.median([e["train_s"] for e in full_epochs]) if full_epochs else None
    val_epoch_s = statistics.median([e["validate_s"] for e in epochs]) if epochs else None
    best = result.best_epoch
    best_row = next((e for e in epochs if e["epoch"] == best), None)

    te0 = time.perf_counter()
    ranks = rank_targets(result.model, test_hist, test_targets, device, config.eval_batch)
    test_s = time.perf_counter() - te0
    ndcg, hr = ndcg_hr_at(ranks, 10)
    n_windows = len(training_windows(leave_one_out(seqs).train, config.max_len))
    return {
        "loss": config.loss,
        "precision": result.config.precision,
        "negatives": config.negatives if config.loss == "sampled" else None,
        "epochs_run": len(epochs),
        "stopped_early": result.stopped_early,
        "steps_per_epoch": steps_per_epoch,
        "windows_per_epoch": n_windows,
        "s_per_step_median": r(med_step, 4),
        "s_per_step_mean": r(statistics.fmean(step_dts), 4) if step_dts else None,
        "train_s_per_epoch_median": r(train_epoch_s, 2),
        "validate_s_per_epoch_median": r(val_epoch_s, 2),
        "s_per_epoch_with_validation": r((train_epoch_s or 0) + (val_epoch_s or 0), 2),
        "sequences_per_s": r(n_windows / train_epoch_s, 1) if train_epoch_s else None,
        "setup_s": r(setup_s, 2),
        "total_train_call_s": r(t_train, 1),
        "best_epoch": best,
        "best_val_ndcg@10": r(result.best_val_ndcg10),
        "time_to_best_s": best_row["elapsed_s"] if best_row else None,
        "test_ndcg@10": r(ndcg),
        "test_hr@10": r(hr),
        "test_users": int(len(test_targets)),
        "test_eval_s": r(test_s, 2),
        "epochs": epochs,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="beauty.txt")
    parser.add_argument("--loss", choices=("full", "sampled", "both"), default="both")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of every mode (default: full 10, sampled 20, about 6 minutes each)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds per mode (default {DEFAULT_BUDGET_S:.0f}; 0 = no limit)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--precision", default="auto", help="auto, float32 or bfloat16 (training steps)"
    )
    parser.add_argument("--item-init", default=None, help="random or pmi (default: the preset's)")
    parser.add_argument("--patience", type=int, default=None, help="default: the preset's")
    parser.add_argument("--lr", type=float, default=None, help="default 3e-3")
    parser.add_argument("--negatives", type=int, default=None, help="sampled mode (default 2048)")
    parser.add_argument("--mask-prob", type=float, default=None, help="default: TrainConfig's")
    parser.add_argument("--last-item-prob", type=float, default=None, help="default: TrainConfig's")
    parser.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    parser.add_argument(
        "--next-items",
        type=float,
        default=0.0,
        help="share of next-item prefixes per epoch (default 0: masked windows only, as the "
        "naive reference and the recorded figures)",
    )
    parser.add_argument("--naive-steps", type=int, default=3, help="timed naive steps (0 = skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="temporary folder parent")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data} not found (the shared datasets live in ../shared/datasets)")

    device = pick_device(args.device)
    modes = ["full", "sampled"] if args.loss == "both" else [args.loss]
    # Defaults sized for about 15 minutes in all on 2 busy CPU cores.
    epochs = {m: args.epochs or DEFAULT_EPOCHS[m] for m in modes}
    budget = args.time_budget
    load_start = loadavg()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="reclens-bench-train-", dir=args.workdir))
    try:
        log(f"loading {args.data} (load average {load_start})")
        seqs, data_info = load_beauty(args.data, work)
        log(f"{data_info['users']} users, {data_info['items']} items, {data_info['events']} events")
        base = TrainConfig.from_preset(
            "fast",
            time_budget=budget or None,
            device=args.device,
            precision=args.precision,
            item_init=args.item_init,
            text_encoder="none",
            patience=args.patience,
            batch=256,  # the naive reference's batch, and the recorded figures'
            lr=args.lr or 3e-3,
            negatives=args.negatives,
            mask_prob=args.mask_prob,
            last_item_prob=args.last_item_prob,
            dropout=args.dropout,
            next_item_share=args.next_items,
            transitions=False,  # the Transformer's training is what this measures
            seed=args.seed,
        )
        test_hist, test_targets = test_split(seqs, base.max_len)
        pop = popularity_test(seqs, args.seed)
        log(f"most popular: test NDCG@10 {pop['test_ndcg@10']}")

        naive = None
        if args.naive_steps > 0:
            log(f"naive reference: {args.naive_steps} timed steps")
            naive = naive_reference(seqs, base, device, args.naive_steps, args.seed)

        results = {}
        for mode in modes:
            config = TrainConfig(**{**base.to_dict(), "loss": mode, "epochs": epochs[mode]})
            log(
                f"training, loss {mode}: up to {config.epochs} epochs, "
                f"time budget {config.time_budget} s"
            )
            res = run_mode(seqs, config, device, test_hist, test_targets, work)
            if res["train_s_per_epoch_median"]:
                issue_epoch_s = ISSUE_NAIVE_S_PER_STEP * res["steps_per_epoch"]
                res["speedup_vs_issue_naive_train_epoch"] = r(
                    issue_epoch_s / res["train_s_per_epoch_median"], 2
                )
                res["speedup_vs_issue_naive_epoch_with_validation"] = r(
                    issue_epoch_s / res["s_per_epoch_with_validation"], 2
                )
                res["target_5x_met"] = issue_epoch_s / res["train_s_per_epoch_median"] >= 5
            if naive and res["train_s_per_epoch_median"]:
                res["speedup_vs_naive_train_epoch"] = r(
                    naive["s_per_epoch_estimate"] / res["train_s_per_epoch_median"], 2
                )
                res["speedup_vs_naive_epoch_with_validation"] = r(
                    naive["s_per_epoch_estimate"] / res["s_per_epoch_with_validation"], 2
                )
            log(
                f"{mode}: {res['train_s_per_epoch_median']} s/epoch train + "
                f"{res['validate_s_per_epoch_median']} s validation; best val "
                f"{res['best_val_ndcg@10']} at {res['time_to_best_s']} s; test NDCG@10 "
                f"{res['test_ndcg@10']}"
            )
            results[mode] = res
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "benchmark": "train",
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "ran": {
            "modes": modes,
            "epochs_per_mode": epochs,
            "time_budget_s_per_mode": budget or None,
            "naive_timed_steps": args.naive_steps,
            "config": {k: v for k, v in base.to_dict().items() if k not in ("loss", "epochs")},
            "protocol": (
                "leave-one-out; validation = 2nd-to-last item (inside train), test = last item "
                "given all earlier items (history truncated to max_len - 1); full ranking over "
                "all items, the user's earlier items excluded; NDCG@10/HR@10"
            ),
        },
        "dataset": data_info,
        "popularity": pop,
        "naive": naive,
        "modes": results,
        "reference": {
            "issue_naive_s_per_step": ISSUE_NAIVE_S_PER_STEP,
            "recbole_sasrec": RECBOLE_SASREC,
        },
        "total_s": r(time.perf_counter() - started, 1),
        "loadavg_1min": {"start": load_start, "end": loadavg()},
        "code": code_state(MEASURED_CODE),
        "machine": machine(device),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
