"""Training the preference model: masked-item prediction with early stopping.

Protocol (shared with evaluation): per user, the last item is the test target and
is never seen here. The second-to-last item is the validation target of a fixed
sample of users (every user on small datasets; see :func:`core.data.splits.validation_users`) and
training data for everyone else; the rest is training data. Training samples are
windows of each training history; in each batch a fraction of positions is
replaced by the mask token (cloze), and some samples have only their final item
masked so that training matches next-item inference. The loss is full softmax
cross-entropy over all items, or, for large catalogues, sampled softmax over many
shared negatives with logQ correction.

Everything a run needs to continue lives in its run folder: a checkpoint is
written after every epoch (safetensors + JSON, never pickle), and a stopped or
killed run resumes from the last complete one.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs data-parallel with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs): every process draws the
same batches and masks from the same seed and trains on its share of each
batch's rows, with the loss weighted so that the averaged gradient is the one a
single process would compute on the whole batch. Validation users are shared out
too; rank 0 alone reports progress and writes checkpoints.

This module is the loop itself, told as its steps: :func:`train` sets a run up, trains
and validates epoch after epoch, and finishes. The parts live beside it: the settings in
:mod:`core.training.config`, windows and masking in :mod:`core.training.windows`, the
loss in :mod:`core.training.losses`, ranking and early stopping in
:mod:`core.training.validation`, the transition memory in :mod:`core.training.memory`,
the optimiser in :mod:`core.training.optimizer`, the per-epoch checkpoint in
:mod:`core.training.run_checkpoint`, devices and DDP in :mod:`core.training.cluster`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.common.columns import MetricKeys
from core.data.sequences import Sequences
from core.data.splits import leave_one_out
from core.models.bert import ModelConfig, PreferenceModel
from core.training.cluster import Cluster, autocast, join_cluster, resolve_precision
from core.training.config import TrainConfig
from core.training.cooccurrence import start_from_cooccurrence
from core.training.losses import LossStep, sampling_distribution
from core.training.memory import fit_transitions
from core.training.optimizer import Schedule, build_optimizer
from core.training.run_checkpoint import load_run_checkpoint, save_run_checkpoint
from core.training.validation import EarlyStopping, ValidationSet, snapshot
from core.training.windows import Batch, TrainingWindows, length_bucketed_batches


@dataclass
class Progress:
    """What a training run reports after each step group and each epoch."""

    phase: str  # "train", "validate", "transitions", "done", "stopped"
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float | None = None
    val_ndcg10: float | None = None
    val_hr10: float | None = None
    best_val_ndcg10: float | None = None
    best_epoch: int | None = None
    sequences_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The trained model (best epoch restored) and its history."""

    model: PreferenceModel
    model_config: ModelConfig
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_ndcg10: float = 0.0
    seconds: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False
    transitions: dict = field(default_factory=dict)
    best_val_hr10: float = 0.0  # of the model as saved (with its memory, if kept)


class StopTraining(Exception):
    """Raised by a progress callback to stop a run (its last checkpoint stays resumable)."""


ProgressCallback = Callable[[Progress], None]


class _Reporter:
    """Hands progress to the run's callback (on rank 0 alone) and remembers a request to
    stop, acted on where every process agrees (:meth:`Cluster.any`)."""

    def __init__(self, callback: ProgressCallback | None, cluster: Cluster) -> None:
        self.callback, self.leader = callback, cluster.leader
        self.stop_asked = False

    def __call__(self, progress: Progress) -> None:
        if self.callback is not None and self.leader:
            try:
                self.callback(progress)
            except StopTraining:
                self.stop_asked = True


@dataclass
class _Run:
    """A training run as its steps share it: what was set up once, then what changes."""

    config: TrainConfig
    cluster: Cluster
    device: torch.device
    precision: str  # as run: "auto" resolved
    say: _Reporter
    started: float  # time.perf_counter() when the run began
    train: Sequences  # the training histories of the split
    windows: TrainingWindows
    validation: ValidationSet
    model: PreferenceModel
    model_config: ModelConfig
    step_loss: nn.Module  # the loss, wrapped for DDP when data-parallel
    optimizer: torch.optim.Optimizer
    loss_mode: str
    sampling_q: torch.Tensor  # sampled softmax: how negatives are drawn
    schedule: Schedule
    generator: torch.Generator  # batches, masks and negatives
    standing: EarlyStopping
    checkpoint: Path | None = None
    start_epoch: int = 0
    budget_used: float = 0.0  # share of the time budget spent, agreed by every process

    @property
    def item_targets(self) -> bool:
        return self.windows.every_prefix and self.config.item_targets


def train(
    seqs: Sequences,
    config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    text_vectors: torch.Tensor | None = None,
    resume: bool = False,
    callback: ProgressCallback | None = None,
    report_every: int = 10,
) -> TrainResult:
    """Train a :class:`PreferenceModel` on ``seqs`` (leave-one-out split inside).

    Args:
        seqs: every user's full history (see :mod:`core.data.sequences`).
        config: the run's settings.
        run_dir: folder for the per-epoch checkpoint (``checkpoint/``); None = no
            checkpoints (and no resume).
        text_vectors: (n_items + 2, d) item text vectors, or None.
        resume: continue from ``run_dir/checkpoint`` when it exists.
        callback: receives :class:`Progress`; may raise :class:`StopTraining`.
        report_every: steps between training progress reports.

    Returns:
        The best-epoch model with its validation history.
    """
    started = time.perf_counter()
    run = _set_up(seqs, config, run_dir, text_vectors, callback, started)
    if resume:
        _resume(run)
    stopped_early = interrupted = False
    try:
        for epoch in range(run.start_epoch, config.epochs):
            shared_loss, epoch_started = _train_epoch(run, epoch, report_every)
            if _validate_epoch(run, epoch, shared_loss, epoch_started):
                stopped_early = True
                break
    except StopTraining:
        interrupted = True
    return _finish(run, stopped_early, interrupted)


# --------------------------------------------------------------------------- setup


def _set_up(
    seqs: Sequences,
    config: TrainConfig,
    run_dir: str | Path | None,
    text_vectors: torch.Tensor | None,
    callback: ProgressCallback | None,
    started: float,
) -> _Run:
    """Everything a run needs before its first epoch: where it computes, its windows and
    validation users, its model, loss and optimiser (all drawn from ``config.seed``)."""
    cluster, device = join_cluster(config.device)
    precision = resolve_precision(config.precision, device)
    generator = _seed_everything(config.seed)
    split = leave_one_out(seqs)
    n_types = len(seqs.type_names) if config.event_types and seqs.types is not None else 0
    n_types = n_types if n_types >= 2 else 0  # one type tells nothing
    model_config = config.model_config(
        seqs.n_items, 0 if text_vectors is None else int(text_vectors.shape[1]), n_types
    )
    windows = TrainingWindows.build(split.train, config, model_config)
    model, step_loss = _build_model(
        model_config, text_vectors, split.train, config, cluster, device
    )
    return _Run(
        config=config,
        cluster=cluster,
        device=device,
        precision=precision,
        say=_Reporter(callback, cluster),
        started=started,
        train=split.train,
        windows=windows,
        validation=ValidationSet.of(split, cluster, model_config, with_types=n_types > 0),
        model=model,
        model_config=model_config,
        step_loss=step_loss,
        optimizer=build_optimizer(model, config),
        loss_mode=config.loss_mode(seqs.n_items),
        sampling_q=sampling_distribution(split.train, model_config.vocab_size, device),
        schedule=Schedule.of(windows.steps_per_epoch, config),
        generator=generator,
        standing=EarlyStopping(snapshot(model)),
        checkpoint=Path(run_dir) / "checkpoint" if run_dir else None,
    )


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _build_model(
    model_config: ModelConfig,
    text_vectors: torch.Tensor | None,
    train: Sequences,
    config: TrainConfig,
    cluster: Cluster,
    device: torch.device,
) -> tuple[PreferenceModel, nn.Module]:
    """The model at its start, and its loss as this process trains it."""
    model = PreferenceModel(model_config, text_vectors).to(device)
    if config.item_init == "pmi":  # before DDP, which hands rank 0's start to every rank
        start_from_cooccurrence(model, train, config.seed)
    step_loss = cluster.parallel(LossStep(model), device)
    unseen = np.flatnonzero(np.bincount(train.items, minlength=model_config.vocab_size) == 0)
    if text_vectors is not None and len(unseen):
        # Items without training events start from their text alone (cold start).
        with torch.no_grad():
            model.item_embeddings.weight[torch.as_tensor(unseen)] = 0.0
    return model, step_loss


def _resume(run: _Run) -> None:
    """Continue from the run's last checkpoint, when it has one."""
    if run.checkpoint is None:
        return
    saved = load_run_checkpoint(run.checkpoint, run.model, run.optimizer, run.device)
    if saved is None:
        return
    state, best_state = saved
    run.standing = EarlyStopping.resumed(state, best_state)
    run.start_epoch = state["epoch"]
    run.generator = torch.Generator().manual_seed(run.config.seed + 7919 * run.start_epoch)


# --------------------------------------------------------------------------- an epoch


def _train_epoch(run: _Run, epoch: int, report_every: int) -> tuple[float, float]:
    """One pass over the epoch's windows, a step per batch, reporting every
    ``report_every`` steps; ends early when the time budget is spent.

    Returns:
        (the sum over the steps of this process's weighted share of the batch loss, the
        time the epoch started)
    """
    config, schedule = run.config, run.schedule
    run.model.train()
    drawn = run.windows.draw(run.generator)
    batches = length_bucketed_batches(drawn.lengths, config.batch, run.generator)
    epoch_loss, shared_loss, epoch_started = 0.0, 0.0, time.perf_counter()
    for step, idx in enumerate(batches):
        global_step = epoch * schedule.steps_per_epoch + step
        schedule.apply(run.optimizer, config.lr, global_step, run.budget_used)
        loss, weight = _train_step(run, run.windows.batch(drawn, idx, run.generator))
        epoch_loss += loss  # this process's (for progress)
        shared_loss += loss * weight / run.cluster.world
        if (step + 1) % report_every == 0 or step + 1 == schedule.steps_per_epoch:
            _report_training(run, epoch, step, epoch_loss / (step + 1), epoch_started)
        if _out_of_time(run):
            break
    return shared_loss, epoch_started


def _train_step(run: _Run, batch: Batch) -> tuple[float, float]:
    """One optimiser step on this process's share of ``batch``.

    Returns:
        (this process's mean loss, its weight in the gradient)
    """
    cluster, device, config = run.cluster, run.device, run.config
    # Each process takes its share of the rows; weighting its mean loss by
    # its share of the masked positions makes the gradient, averaged over
    # the processes, the mean over the whole batch.
    share = cluster.share(len(batch.inputs))
    weight = float(batch.mask[share].sum()) * cluster.world / float(batch.mask.sum())
    inputs, mask, labels = (
        batch.inputs[share].to(device),
        batch.mask[share].to(device),
        batch.labels[share].to(device),
    )
    types = None if batch.types is None else batch.types[share].to(device)
    with autocast(device, run.precision):
        loss = run.step_loss(
            inputs,
            mask,
            labels,
            run.loss_mode,
            config.negatives,
            run.sampling_q,
            run.generator,
            device,
            types,
            run.windows.every_prefix,
            run.item_targets,
        )
    run.optimizer.zero_grad(set_to_none=True)
    (loss * weight).backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.clip)
    run.optimizer.step()
    return float(loss.detach()), weight


def _report_training(
    run: _Run, epoch: int, step: int, mean_loss: float, epoch_started: float
) -> None:
    config, steps, standing = run.config, run.schedule.steps_per_epoch, run.standing
    elapsed = time.perf_counter() - run.started
    rate = (step + 1) * config.batch / max(1e-9, time.perf_counter() - epoch_started)
    remaining = (config.epochs - epoch) * steps - step - 1
    run.say(
        Progress(
            "train",
            epoch + 1,
            config.epochs,
            step + 1,
            steps,
            loss=mean_loss,
            best_val_ndcg10=standing.best_ndcg if standing.best_ndcg >= 0 else None,
            best_epoch=standing.best_epoch or None,
            sequences_per_s=rate,
            elapsed_s=elapsed,
            eta_s=remaining * config.batch / max(rate, 1e-9),
        )
    )


def _out_of_time(run: _Run) -> bool:
    """Whether the time budget is spent, as every process agrees (the share spent also
    steers the learning rate); raises :class:`StopTraining` when any process was asked
    to stop."""
    config = run.config
    used = (time.perf_counter() - run.started) / config.time_budget if config.time_budget else 0.0
    interrupt, run.budget_used = run.cluster.max(float(run.say.stop_asked), used)
    if interrupt:
        raise StopTraining
    return run.budget_used > 1.0


# --------------------------------------------------------------------------- validate


def _validate_epoch(run: _Run, epoch: int, shared_loss: float, epoch_started: float) -> bool:
    """Validate the model after ``epoch``: record it, keep the best weights, write the
    checkpoint and report; raises :class:`StopTraining` when any process was asked to stop.

    Returns:
        Whether the run stops here: out of patience, or out of time.
    """
    config, cluster, standing = run.config, run.cluster, run.standing
    steps = run.schedule.steps_per_epoch
    (shared_loss,) = cluster.total(shared_loss)  # the whole batches' mean loss
    ndcg, hr = run.validation.measure(run.model, run.device, config.eval_batch, cluster)
    record = {
        "epoch": epoch + 1,
        "loss": shared_loss / steps,
        MetricKeys.NDCG: ndcg,
        MetricKeys.HR: hr,
        "seconds": time.perf_counter() - epoch_started,
        "elapsed_s": time.perf_counter() - run.started,  # since the run began
        "lr": run.optimizer.param_groups[0]["lr"],  # at the epoch's last step
    }
    standing.record(record, run.model)
    if run.checkpoint and cluster.leader:
        state = {
            "epoch": epoch + 1,
            **standing.to_state(),
            "config": config.to_dict(),
            "model_config": run.model_config.to_dict(),
        }
        save_run_checkpoint(run.checkpoint, run.model, run.optimizer, standing.best_state, state)
    elapsed = time.perf_counter() - run.started
    run.say(
        Progress(
            "validate",
            epoch + 1,
            config.epochs,
            steps,
            steps,
            loss=record["loss"],
            val_ndcg10=ndcg,
            val_hr10=hr,
            best_val_ndcg10=standing.best_ndcg,
            best_epoch=standing.best_epoch,
            elapsed_s=elapsed,
            eta_s=(config.epochs - epoch - 1) * elapsed / max(1, epoch + 1 - run.start_epoch),
            message=f"epoch {epoch + 1}: val NDCG@10 {ndcg:.4f}",
        )
    )
    interrupt, over_budget = cluster.any(
        run.say.stop_asked, bool(config.time_budget and elapsed > config.time_budget)
    )
    if interrupt:
        raise StopTraining
    return standing.out_of_patience(config.patience) or over_budget


# --------------------------------------------------------------------------- finish


def _finish(run: _Run, stopped_early: bool, interrupted: bool) -> TrainResult:
    """The run's result: the best epoch's weights, with a transition memory when it helps
    (never after a stop, nor for a causal model)."""
    config, standing = run.config, run.standing
    run.model.load_state_dict(standing.best_state)
    run.model.eval()
    best_ndcg, best_hr = standing.best_ndcg, standing.best_hr()
    transitions: dict = {}
    if config.transitions and not config.causal and not interrupted and standing.best_epoch:
        transitions = _fit_memory(run)
        if transitions["kept"]:
            best_ndcg, best_hr = transitions[MetricKeys.NDCG], transitions[MetricKeys.HR]
    seconds = time.perf_counter() - run.started
    run.say(
        Progress(
            "stopped" if interrupted else "done",
            standing.best_epoch,
            config.epochs,
            0,
            run.schedule.steps_per_epoch,
            best_val_ndcg10=max(best_ndcg, 0.0),
            best_epoch=standing.best_epoch,
            elapsed_s=seconds,
            message="stopped" if interrupted else "finished",
        )
    )
    return TrainResult(
        run.model,
        run.model_config,
        replace(config, precision=run.precision),  # as run: "auto" resolved
        standing.history,
        standing.best_epoch,
        max(best_ndcg, 0.0),
        seconds,
        stopped_early,
        interrupted,
        transitions,
        float(best_hr),
    )


def _fit_memory(run: _Run) -> dict:
    """Try a transition memory on the best model (:func:`fit_transitions`) and report."""
    config, standing, val = run.config, run.standing, run.validation
    transitions = fit_transitions(
        run.model,
        run.train,
        val.histories,
        val.targets,
        run.device,
        config.eval_batch,
        val.types,
        run.cluster,
    )
    steps = run.schedule.steps_per_epoch
    best_ndcg = transitions[MetricKeys.NDCG] if transitions["kept"] else standing.best_ndcg
    run.say(
        Progress(
            "transitions",
            standing.history[-1]["epoch"],
            config.epochs,
            steps,
            steps,
            best_val_ndcg10=best_ndcg,
            best_epoch=standing.best_epoch,
            elapsed_s=time.perf_counter() - run.started,
            message=transitions["message"],
        )
    )
    return transitions
