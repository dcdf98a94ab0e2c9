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
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.data.sequences import Sequences
from core.data.splits import leave_one_out
from core.models.bert import ATTENTIONS, ModelConfig, PreferenceModel, append_mask, fuse_log_probs
from core.models.checkpoint import replace_folder, restore_interrupted
from core.models.text import native_bfloat16, usable_cpus

PRECISIONS = ("auto", "float32", "bfloat16")

PRESETS: dict[str, dict] = {
    # Trains the demo dataset to good quality in under a minute on 2 CPU cores. Prefix
    # attention asks for every item of a window from the items before it in one pass:
    # six such epochs beat two epochs of cloze plus next-item windows, in less time
    # (demo val NDCG@10 0.448 against 0.375 for the Transformer). The items' own states
    # also name the next item, and above 5,000 items the loss samples 2,048 negatives
    # (about 40 % of the full softmax's work or less): on MovieLens, val 0.056 against
    # 0.050 in two thirds of the time (BENCHMARKS.md, "Item targets").
    "fast": dict(
        max_len=50,
        hidden=64,
        layers=2,
        heads=2,
        epochs=6,
        batch=64,
        lr=5e-3,
        patience=3,
        dropout=0.2,
        attention="prefix",
        item_targets=True,
        sampled_threshold=5_000,
        item_init="pmi",
    ),
    # Minutes on a CPU for a mid-sized catalogue: every prefix every epoch, large
    # batches, and 8,192 sampled negatives when the catalogue is over the sampled-softmax
    # threshold. On Amazon Beauty (54k items), starting the items from co-occurrence, the
    # Transformer alone reaches val NDCG@10 0.0356 and test 0.0329 in 10 minutes on 2
    # cores with bfloat16 units (a hidden size of 128 learned less per second there).
    # Prefix attention halves the epoch there but learns less per epoch (val 0.0334
    # against 0.0348 in 10 minutes on an AVX2-only CPU), so this preset keeps
    # bidirectional next-item windows.
    "balanced": dict(
        max_len=100,
        hidden=64,
        layers=2,
        heads=2,
        epochs=8,
        batch=512,
        lr=5e-3,
        patience=3,
        dropout=0.2,
        next_item_share=1.0,
        item_init="pmi",
        negatives=8192,
    ),
    # A bigger model for a GPU or a long run.
    "quality": dict(
        max_len=200,
        hidden=256,
        layers=3,
        heads=4,
        epochs=150,
        batch=256,
        lr=1e-3,
        patience=8,
        dropout=0.2,
        next_item_share=1.0,
        item_init="pmi",
    ),
}


@dataclass
class TrainConfig:
    """Everything that shapes a training run; presets fill the defaults.

    Args:
        preset (str): ``fast``, ``balanced`` or ``quality``.
        epochs (int): passes over the training windows (early stopping may end sooner).
        max_len (int): window length; longer histories give several windows.
        hidden, layers, heads, dropout: model shape (see :class:`core.models.bert.ModelConfig`).
        batch (int): windows per step.
        lr (float): peak learning rate of AdamW (linear warmup, then cosine decay).
        weight_decay (float): AdamW weight decay.
        warmup (float): fraction of all steps spent warming up.
        mask_prob (float): probability that a position is masked (cloze).
        last_item_prob (float): fraction of windows with only the final item masked.
        next_item_share (float): share of all next-item prefixes (a history's first k
            items, the last one masked) added to each epoch's windows, drawn afresh
            every epoch; 1 = every prefix of every history. Not used with
            ``attention="prefix"``, which trains every prefix of every window.
        attention (str): ``bidirectional`` (BERT4Rec: cloze-masked windows, every
            position sees every other) or ``prefix`` (an item sees the items before it,
            a mask token every item before it; each step asks for every item of each
            window from the items before it in one pass; see
            :meth:`core.models.bert.PreferenceModel.encode_every_prefix`).
        item_targets (bool): with ``prefix`` attention, each item's own state is also
            trained to name the next item (as a causal model's is), from the same pass.
        loss (str): ``auto`` (full softmax unless the catalogue exceeds
            ``sampled_threshold`` items), ``full`` or ``sampled``.
        sampled_threshold (int): catalogue size above which ``auto`` samples.
        negatives (int): shared negatives per step for sampled softmax.
        patience (int): epochs without a better validation NDCG@10 before stopping.
        clip (float): gradient-norm clipping.
        seed (int): seeds Python, numpy and torch.
        time_budget (float | None): stop after this many seconds (best epoch kept); the
            learning-rate schedule then follows the time or the steps, whichever runs
            out first, so a run cut short by its budget still ends annealed.
        device (str): ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        text_encoder (str): ``auto``, ``none`` or a model folder (see :mod:`core.models.text`).
        eval_batch (int): users per validation batch.
        min_steps_per_epoch (int): small datasets repeat their windows (each copy masked
            afresh) so that an epoch has at least this many steps between validations.
        event_types (bool): embed each event's type (view, cart, ...) when the dataset
            has two or more; masked positions carry no type, and a fraction
            (``TYPE_DROPOUT``) of windows none at all, so the model also works when
            types are unknown.
        causal (bool): train a left-to-right model instead (SASRec-style, the baseline of
            :mod:`core.evaluation.baselines`): every position predicts the next item, no masking.
        precision (str): ``auto`` (bfloat16 mixed precision on CUDA, and on a CPU that
            computes bfloat16 products natively, AVX512-BF16 or AMX-BF16; float32
            elsewhere), ``float32`` or ``bfloat16``. Training steps only: the weights,
            the optimiser and every validation and ranking stay float32.
        item_init (str): ``random``, or ``pmi``: item embeddings start from a truncated
            SVD of the items' positive pointwise mutual information within 3 positions
            of each other in the training histories (:func:`pmi_item_vectors`).
        transitions (bool): after training, try a transition memory (how often each item
            followed each other one in the training histories, with the Transformer's
            prediction as the prior; see :mod:`core.models.bert`) and keep it when it raises
            validation NDCG@10 (:func:`fit_transitions`). Never for a causal model.
    """

    preset: str = "fast"
    epochs: int = 30
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    mask_prob: float = 0.2
    last_item_prob: float = 0.15
    next_item_share: float = 0.0
    attention: str = "bidirectional"
    item_targets: bool = False
    loss: str = "auto"
    sampled_threshold: int = 50_000
    negatives: int = 2048
    patience: int = 3
    clip: float = 1.0
    seed: int = 0
    time_budget: float | None = None
    device: str = "auto"
    text_encoder: str = "auto"
    eval_batch: int = 512
    min_steps_per_epoch: int = 50
    event_types: bool = False
    causal: bool = False
    transitions: bool = True
    precision: str = "auto"
    item_init: str = "random"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"unknown attention {self.attention!r}: choose {' or '.join(ATTENTIONS)}"
            )
        if self.item_init not in ("random", "pmi"):
            raise ValueError(f"unknown item init {self.item_init!r}: choose random or pmi")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}"
            )
        for name in ("mask_prob", "last_item_prob", "next_item_share", "dropout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must be between 0 and 1, not {value}")

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides) -> TrainConfig:
        """A config from a preset, with any field overridden (None = keep the preset's)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def loss_mode(self, n_items: int) -> str:
        if self.loss == "auto":
            return "sampled" if n_items > self.sampled_threshold else "full"
        if self.loss not in ("full", "sampled"):
            raise ValueError(f"unknown loss {self.loss!r}: choose auto, full or sampled")
        return self.loss

    def to_dict(self) -> dict:
        return asdict(self)

    def model_config(self, n_items: int, text_dim: int = 0, n_event_types: int = 0) -> ModelConfig:
        """The shape of the model these settings train, for ``n_items`` items."""
        return ModelConfig(
            n_items=n_items,
            max_len=self.max_len,
            hidden=self.hidden,
            layers=self.layers,
            heads=self.heads,
            dropout=self.dropout,
            text_dim=text_dim,
            causal=self.causal,
            attention="bidirectional" if self.causal else self.attention,
            n_event_types=n_event_types,
        )


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


# --------------------------------------------------------------------------- data


def training_windows(
    train: Sequences, max_len: int, values: np.ndarray | None = None
) -> np.ndarray:
    """All training windows, shape (n_windows, max_len), left-padded.

    ``values`` (aligned with ``train.items``, e.g. ``train.types``) are cut into the
    same windows instead of the items.

    A history of length n gives the window ending at its last item, plus windows
    ending every ``max_len // 2`` items earlier while they still hold 2+ items.
    """
    lengths = train.lengths
    stride = max(1, max_len // 2)
    n_extra = np.maximum(0, np.ceil((lengths - max_len) / stride)).astype(np.int64)
    n_windows = np.where(lengths >= 2, 1 + n_extra, 0)
    users = np.repeat(np.arange(train.n_users), n_windows)
    k = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    ends = train.offsets[users + 1] - k * stride  # exclusive end of each window
    return windows_ending_at(train, users, ends, max_len, values)


def prefix_ends(train: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Every next-item prefix of the training histories: (users, exclusive ends).

    A history of n items has n - 1 prefixes of 2+ items; the window ending at
    ``end`` asks for the item at ``end - 1`` given the ones before it, which is
    exactly the question a recommendation asks.
    """
    lengths = np.maximum(train.lengths - 1, 0)
    users = np.repeat(np.arange(train.n_users), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return users, train.offsets[users] + 2 + within


def windows_ending_at(
    train: Sequences,
    users: np.ndarray,
    ends: np.ndarray,
    max_len: int,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Left-padded windows of up to ``max_len`` items of ``users`` ending before ``ends``."""
    starts = np.maximum(train.offsets[users], ends - max_len)
    width = ends - starts
    out = np.zeros((len(users), max_len), dtype=np.int64)
    rows = np.repeat(np.arange(len(users)), width)
    within = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width)
    cols = max_len - np.repeat(width, width) + within
    source = train.items if values is None else values
    out[rows, cols] = source[np.repeat(starts, width) + within]
    return out


def length_bucketed_batches(
    lengths: np.ndarray, batch: int, generator: torch.Generator, pool: int = 64
) -> list[np.ndarray]:
    """Shuffled batches of window indices, each drawn from windows of similar length.

    Windows are shuffled, cut into pools of ``pool`` batches, sorted by length
    inside each pool and cut into batches, whose order is shuffled again. Each
    batch can then drop the padding columns none of its windows needs, which
    saves most of the work on datasets with short histories.
    """
    order = torch.randperm(len(lengths), generator=generator).numpy()
    batches = []
    for start in range(0, len(order), batch * pool):
        chunk = order[start : start + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    shuffle = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffle]


def mask_batch(
    windows: torch.Tensor,
    mask_index: int,
    mask_prob: float,
    last_item_prob: float,
    generator: torch.Generator,
    force_last: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloze-mask a batch of windows.

    ``force_last`` (bool per row) marks next-item windows, which always have only
    their final item masked.

    Returns:
        (inputs, mask): inputs with masked positions replaced by ``mask_index`` and
        the boolean mask of positions to predict (at least one per row).
    """
    real = windows != 0
    mask = (torch.rand(windows.shape, generator=generator) < mask_prob) & real
    last_only = torch.rand(windows.shape[0], generator=generator) < last_item_prob
    if force_last is not None:
        last_only |= force_last
    mask[last_only] = False
    mask[:, -1] |= last_only
    mask[~mask.any(1), -1] = True  # every row predicts something
    inputs = windows.masked_fill(mask, mask_index)
    return inputs, mask


def prefix_targets(windows: torch.Tensor) -> torch.Tensor:
    """The positions of left-padded ``windows`` that have an item before them: what a
    ``prefix`` model is asked for in one pass (every item but each window's first)."""
    real = windows != 0
    targets = torch.zeros_like(real)
    targets[:, 1:] = real[:, 1:] & real[:, :-1]
    return targets


def causal_batch(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-item targets for a left-to-right model: every item predicts the one after it.

    Returns:
        (inputs, mask, labels): ``windows`` without its last column, the positions that
        have a next item, and ``windows`` without its first column.
    """
    inputs, labels = windows[:, :-1], windows[:, 1:]
    return inputs, (inputs != 0) & (labels != 0), labels


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def rank_targets(
    model: PreferenceModel,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int = 512,
    exclude_seen: bool = True,
) -> np.ndarray:
    """0-based rank of each target among all items (full ranking), by the Transformer.

    A transition memory, if the model has one, is not applied here (training
    validates the Transformer alone; :mod:`core.evaluation.runner` ranks with the memory).

    Args:
        histories: (n, max_len) left-padded histories (the inputs; the mask token is
            appended internally).
        targets: (n,) item indices to rank.
        exclude_seen: items of the history are not ranked (the target always is).

    Returns:
        (n,) int64 ranks: the number of other items scored at least as high as the
        target (a tie counts against it).
    """
    return _count_above(model, histories, targets, device, batch, exclude_seen)


@torch.no_grad()
def _count_above(
    model: PreferenceModel,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int = 512,
    exclude_seen: bool = True,
    cap: int | None = None,
    types: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`rank_targets`; with ``cap``, a rank of ``cap`` or more may stop early.

    ``types``: the histories' event types (same shape), for a model with event types.

    A target stops being scored once ``cap`` items are known to beat it, and its
    rank is then some number >= ``cap``: NDCG@k and HR@k need ranks below k only.
    Items are indexed by popularity, so most targets are settled by the first
    slice of the catalogue.
    """
    model.eval()
    table, bias = model.item_table(), model.item_bias
    vocab = table.shape[0]
    not_item = model.not_item.nonzero().flatten()
    ranks = np.empty(len(targets), dtype=np.int64)
    for rows, hist, inputs, kinds in _trimmed_batches(model, histories, types, batch, device):
        tgt = torch.as_tensor(targets[rows], device=device).long()
        states = model.head(model.encode(inputs, kinds, table=table)[:, -1])
        target_logit = (states * table[tgt]).sum(1, keepdim=True) + bias[tgt, None]
        target_logit = _tie_floor(target_logit)
        # Columns never counted, each once: the non-items, the target itself and,
        # if asked, the history's items.
        skip = [not_item.expand(len(rows), -1), tgt[:, None]] + ([hist] if exclude_seen else [])
        skip = torch.cat(skip, 1).sort(1).values
        first = torch.ones_like(skip, dtype=torch.bool)
        first[:, 1:] = skip[:, 1:] != skip[:, :-1]
        # Count the items scored above the target a slice of the catalogue at a time
        # (the full batch x catalogue matrix is never stored), then take back the
        # skipped columns that were counted (their values from the same product).
        greater = torch.zeros(len(rows), dtype=torch.int64, device=device)
        chunk = vocab if states.is_cuda else _RANK_CHUNK
        live = None  # rows still counted (None = all)
        for lo in range(0, vocab, chunk):
            hi = lo + chunk
            if cap is not None and lo > 0:
                live = (greater < cap).nonzero().flatten()
                if len(live) == 0:
                    break
            sel = slice(None) if live is None else live
            logits = torch.addmm(bias[lo:hi], states[sel], table[lo:hi].T)
            above = (logits >= target_logit[sel]).sum(1, dtype=torch.int32)
            inside = first[sel] & (skip[sel] >= lo) & (skip[sel] < lo + logits.shape[1])
            values = logits.gather(1, (skip[sel] - lo).clamp(0, logits.shape[1] - 1))
            above -= ((values >= target_logit[sel]) & inside).sum(1, dtype=torch.int32)
            if live is None:
                greater += above
            else:
                greater.index_add_(0, live, above.long())
        ranks[rows] = greater.cpu().numpy()
    return ranks


def _tie_floor(target: torch.Tensor) -> torch.Tensor:
    """The score an item must reach to count as ranked above ``target``: a tie counts
    against the target (items the model cannot tell apart, such as items never seen in
    training, which start alike, never rank a target first), and so does a
    difference within float32 rounding of how the score was computed."""
    return target - 1e-6 * (1.0 + target.abs())


def _trimmed_batches(
    model: PreferenceModel,
    histories: np.ndarray,
    types: np.ndarray | None,
    batch: int,
    device: torch.device,
):
    """Model inputs for left-padded ``histories``, ``batch`` rows at a time.

    Users are taken shortest history first so that each batch drops the padding
    columns none of its rows needs (positions count from the right, so a trimmed batch
    means the same); for a bidirectional model the mask token replaces the oldest column.

    Yields:
        (row numbers, their histories as a tensor, the trimmed inputs, the trimmed event
        types or None).
    """
    n_cols = histories.shape[1]
    causal = model.config.causal  # a left-to-right model reads the history as it is
    if causal:
        needed = np.maximum((histories != 0).sum(1), 1)
    else:
        needed = (histories[:, 1:] != 0).sum(1) + 1
    order = np.argsort(needed, kind="stable")
    mask_index = model.config.mask_index
    for start in range(0, len(histories), batch):
        rows = order[start : start + batch]
        width = int(needed[rows].max())
        hist = torch.as_tensor(histories[rows], device=device).long()
        inputs = (hist if causal else append_mask(hist, mask_index))[:, n_cols - width :]
        kinds = None
        if types is not None:
            kinds = torch.as_tensor(types[rows], device=device).long()
            kinds = (kinds if causal else append_mask(kinds, 0))[:, n_cols - width :]
        yield rows, hist, inputs, kinds


_RANK_CHUNK = 4096  # catalogue columns scored at once by rank_targets on a CPU


def ndcg_hr_at(ranks: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Mean NDCG@k and HR@k of 0-based ranks (one relevant item per user)."""
    if len(ranks) == 0:
        return 0.0, 0.0
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(ndcg.mean()), float(hit.mean())


# --------------------------------------------------------------------------- checkpoints


def _save_run_checkpoint(
    folder: Path,
    model: PreferenceModel,
    optimizer: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor],
    state: dict,
) -> None:
    """Write the resumable state of a run atomically (tmp folder, then rename)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        tmp / "model.safetensors",
    )
    save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": opt_meta}))
    replace_folder(tmp, folder)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            tensors[f"{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --------------------------------------------------------------------------- the loop


def pick_device(spec: str = "auto", threads: int | None = None) -> torch.device:
    """CUDA when asked for or available (``auto``), else the CPU with every core this
    process may use (:func:`core.models.text.usable_cpus`), or ``threads`` of them."""
    if spec not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {spec!r}: choose auto, cpu or cuda")
    if spec == "cuda" or (spec == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        return torch.device("cuda")
    torch.set_num_threads(threads or usable_cpus())
    return torch.device("cpu")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a data-parallel run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's rows of a batch of ``n``: every ``world``-th from ``rank``."""
        return slice(self.rank, n, self.world)

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true on any process (so that every process takes the same branch)."""
        if self.world == 1:
            return list(flags)
        values = torch.tensor([float(f) for f in flags])
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values]

    def max(self, *values: float) -> list[float]:
        """Maxima of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        values = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values.tolist()

    def total(self, *values: float) -> list[float]:
        """Sums of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        return summed.tolist()


def join_cluster(spec: str = "auto") -> tuple[Cluster, torch.device]:
    """The cluster and device of this process.

    Alone, that is :func:`pick_device`. Started by ``torchrun`` (``WORLD_SIZE`` > 1),
    it joins the process group (NCCL on GPUs, gloo on CPUs) and takes GPU
    ``LOCAL_RANK``, or its share of the CPU cores.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Cluster(), pick_device(spec)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = spec == "cuda" or (spec == "auto" and torch.cuda.is_available())
    if cuda:
        pick_device("cuda")  # checks that there is one
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = pick_device("cpu", max(1, usable_cpus() // local_world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Cluster(dist.get_rank(), dist.get_world_size()), device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16`` for a run's ``precision`` setting on ``device``.

    ``auto`` takes bfloat16 where the hardware computes it natively (CUDA, or a CPU with
    AVX512-BF16 or AMX-BF16: there a matrix product runs about 2.7 times faster than
    in float32, BENCHMARKS.md "bfloat16 on the CPU"); elsewhere oneDNN would emulate it,
    no faster than float32.
    """
    if precision != "auto":
        return precision
    return "bfloat16" if device.type == "cuda" or native_bfloat16() else "float32"


def _autocast(device: torch.device, precision: str):
    """The training step's mixed precision (bfloat16 products, float32 weights)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * 0.95 + 0.05


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
    cluster, device = join_cluster(config.device)
    precision = resolve_precision(config.precision, device)
    stop_asked = False

    def say(progress: Progress) -> None:
        nonlocal stop_asked
        if callback is not None and cluster.leader:
            try:
                callback(progress)
            except StopTraining:
                stop_asked = True  # acted on where every process agrees (cluster.any)

    generator = _seed_everything(config.seed)
    split = leave_one_out(seqs)
    windows = training_windows(split.train, config.max_len)
    if len(windows) == 0:
        raise ValueError("no user has 2 or more training events: nothing to learn from")
    val_share = cluster.share(len(split.val_users))
    val_users, val_targets = split.val_users[val_share], split.val_targets[val_share]
    val_hist = split.train.padded(config.max_len - 1, val_users).astype(np.int64)
    n_types = len(seqs.type_names) if config.event_types and seqs.types is not None else 0
    n_types = n_types if n_types >= 2 else 0  # one type tells nothing
    type_windows = val_types = None
    if n_types:
        type_windows = training_windows(split.train, config.max_len, split.train.types)
        val_types = split.train.padded_types(config.max_len - 1, val_users).astype(np.int64)
    model_config = config.model_config(
        seqs.n_items, 0 if text_vectors is None else int(text_vectors.shape[1]), n_types
    )
    model = PreferenceModel(model_config, text_vectors).to(device)
    if config.item_init == "pmi":  # before DDP, which hands rank 0's start to every rank
        _start_from_cooccurrence(model, split.train, config.seed)
    step_loss = _LossStep(model)
    if cluster.world > 1:
        step_loss = DistributedDataParallel(
            step_loss,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # the only buffers (text vectors, masks) are constant
        )
    unseen = np.flatnonzero(np.bincount(split.train.items, minlength=model_config.vocab_size) == 0)
    if text_vectors is not None and len(unseen):
        # Items without training events start from their text alone (cold start).
        with torch.no_grad():
            model.item_embeddings.weight[torch.as_tensor(unseen)] = 0.0
    loss_mode = config.loss_mode(seqs.n_items)
    popularity = np.bincount(split.train.items, minlength=model_config.vocab_size).astype(
        np.float64
    )
    popularity[0] = popularity[-1] = 0
    sampling_q = torch.as_tensor(
        (popularity + 1e-3 * (popularity.sum() / len(popularity))) / popularity.sum(),
        dtype=torch.float32,
    )
    sampling_q[0] = sampling_q[-1] = 0
    sampling_q = (sampling_q / sampling_q.sum()).to(device)

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(
            param
        )

    def groups() -> list[dict]:
        return [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    try:
        # One fused kernel per step instead of a dozen small ops per parameter.
        optimizer = torch.optim.AdamW(groups(), lr=config.lr, fused=True)
    except (RuntimeError, ValueError):
        optimizer = torch.optim.AdamW(groups(), lr=config.lr)
    # Next-item windows: a fresh random share of all prefixes each epoch, masked at
    # their final item only (the question a recommendation asks).
    n_next = 0
    every_prefix = model_config.attention == "prefix"
    item_targets = every_prefix and config.item_targets
    if config.next_item_share and not config.causal and not every_prefix:
        next_users, next_ends = prefix_ends(split.train)
        n_next = int(round(config.next_item_share * len(next_ends)))
    copies = max(1, math.ceil(config.min_steps_per_epoch * config.batch / (len(windows) + n_next)))
    if copies > 1:
        windows = np.tile(windows, (copies, 1))
        if type_windows is not None:
            type_windows = np.tile(type_windows, (copies, 1))
    cloze_lengths = (windows != 0).sum(1)
    steps_per_epoch = math.ceil((len(windows) + n_next) / config.batch)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup * total_steps))

    history: list[dict] = []
    best_ndcg, best_epoch, bad_epochs, start_epoch = -1.0, 0, 0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint = Path(run_dir) / "checkpoint" if run_dir else None
    if resume and checkpoint:
        restore_interrupted(checkpoint)  # a kill between the two renames of a save
    if resume and checkpoint and (checkpoint / "state.json").exists():
        state = json.loads((checkpoint / "state.json").read_text())
        model.load_state_dict(load_file(checkpoint / "model.safetensors", device=str(device)))
        best_state = load_file(checkpoint / "best.safetensors", device=str(device))
        _restore_optimizer(
            optimizer,
            load_file(checkpoint / "optimizer.safetensors", device=str(device)),
            state["optimizer"],
        )
        history = state["history"]
        best_ndcg, best_epoch = state["best_ndcg"], state["best_epoch"]
        bad_epochs, start_epoch = state["bad_epochs"], state["epoch"]
        generator = torch.Generator().manual_seed(config.seed + 7919 * start_epoch)

    stopped_early = interrupted = False
    seen_sequences = 0
    budget_used = 0.0  # share of the time budget spent, agreed by every process
    try:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            epoch_windows, epoch_types, window_lengths = windows, type_windows, cloze_lengths
            force_last = None
            if n_next:
                pick = torch.randperm(len(next_ends), generator=generator)[:n_next].numpy()
                users, ends = next_users[pick], next_ends[pick]
                cut = windows_ending_at(split.train, users, ends, config.max_len)
                epoch_windows = np.concatenate([windows, cut])
                if type_windows is not None:
                    cut = windows_ending_at(
                        split.train, users, ends, config.max_len, split.train.types
                    )
                    epoch_types = np.concatenate([type_windows, cut])
                widths = np.minimum(ends - split.train.offsets[users], config.max_len)
                window_lengths = np.concatenate([cloze_lengths, widths])
                force_last = np.arange(len(epoch_windows)) >= len(windows)
            batches = length_bucketed_batches(window_lengths, config.batch, generator)
            epoch_loss, shared_loss, epoch_started = 0.0, 0.0, time.perf_counter()
            for step, idx in enumerate(batches):
                global_step = epoch * steps_per_epoch + step
                for group in optimizer.param_groups:
                    # With a time budget the schedule follows whichever runs out first,
                    # the steps or the time, so a cut-short run still ends annealed.
                    lr_step = max(global_step, int(budget_used * total_steps))
                    group["lr"] = config.lr * _lr_at(lr_step, total_steps, warmup_steps)
                width = int(window_lengths[idx].max())
                batch = torch.as_tensor(epoch_windows[idx, config.max_len - width :])
                types = None
                if epoch_types is not None:
                    types = torch.as_tensor(epoch_types[idx, config.max_len - width :])
                if config.causal:
                    inputs, mask, batch = causal_batch(batch)
                    types = None if types is None else types[:, :-1]
                elif every_prefix:  # every item asked for from the items before it
                    inputs, mask = batch, prefix_targets(batch)
                else:
                    inputs, mask = mask_batch(
                        batch,
                        model_config.mask_index,
                        config.mask_prob,
                        config.last_item_prob,
                        generator,
                        None if force_last is None else torch.as_tensor(force_last[idx]),
                    )
                    if types is not None:  # a masked event's type would give it away
                        types = types.masked_fill(mask, 0)
                if types is not None:
                    unknown = torch.rand(len(idx), generator=generator) < TYPE_DROPOUT
                    types[unknown] = 0
                # Each process takes its share of the rows; weighting its mean loss by
                # its share of the masked positions makes the gradient, averaged over
                # the processes, the mean over the whole batch.
                share = cluster.share(len(idx))
                weight = float(mask[share].sum()) * cluster.world / float(mask.sum())
                inputs, mask, batch = (
                    inputs[share].to(device),
                    mask[share].to(device),
                    batch[share].to(device),
                )
                types = None if types is None else types[share].to(device)
                with _autocast(device, precision):
                    loss = step_loss(
                        inputs,
                        mask,
                        batch,
                        loss_mode,
                        config.negatives,
                        sampling_q,
                        generator,
                        device,
                        types,
                        every_prefix,
                        item_targets,
                    )
                optimizer.zero_grad(set_to_none=True)
                (loss * weight).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
                epoch_loss += float(loss.detach())  # this process's (for progress)
                shared_loss += float(loss.detach()) * weight / cluster.world
                seen_sequences += len(idx)
                if (step + 1) % report_every == 0 or step + 1 == steps_per_epoch:
                    elapsed = time.perf_counter() - started
                    rate = (
                        (step + 1) * config.batch / max(1e-9, time.perf_counter() - epoch_started)
                    )
                    remaining = (config.epochs - epoch) * steps_per_epoch - step - 1
                    say(
                        Progress(
                            "train",
                            epoch + 1,
                            config.epochs,
                            step + 1,
                            steps_per_epoch,
                            loss=epoch_loss / (step + 1),
                            best_val_ndcg10=best_ndcg if best_ndcg >= 0 else None,
                            best_epoch=best_epoch or None,
                            sequences_per_s=rate,
                            elapsed_s=elapsed,
                            eta_s=remaining * config.batch / max(rate, 1e-9),
                        )
                    )
                used = (
                    (time.perf_counter() - started) / config.time_budget
                    if config.time_budget
                    else 0.0
                )
                interrupt, budget_used = cluster.max(float(stop_asked), used)
                if interrupt:
                    raise StopTraining
                if budget_used > 1.0:
                    break
            ranks = _count_above(
                model, val_hist, val_targets, device, config.eval_batch, cap=10, types=val_types
            )
            ndcg, hr = ndcg_hr_at(ranks, 10)
            (shared_loss,) = cluster.total(shared_loss)  # the whole batches' mean loss
            if cluster.world > 1:
                ndcg_sum, hit_sum, n_val = cluster.total(
                    ndcg * len(ranks), hr * len(ranks), len(ranks)
                )
                ndcg, hr = ndcg_sum / max(n_val, 1), hit_sum / max(n_val, 1)
            record = {
                "epoch": epoch + 1,
                "loss": shared_loss / steps_per_epoch,
                "val_ndcg@10": ndcg,
                "val_hr@10": hr,
                "seconds": time.perf_counter() - epoch_started,
                "elapsed_s": time.perf_counter() - started,  # since the run began
                "lr": optimizer.param_groups[0]["lr"],  # at the epoch's last step
            }
            history.append(record)
            if ndcg > best_ndcg:
                best_ndcg, best_epoch, bad_epochs = ndcg, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if checkpoint and cluster.leader:
                _save_run_checkpoint(
                    checkpoint,
                    model,
                    optimizer,
                    best_state,
                    {
                        "epoch": epoch + 1,
                        "history": history,
                        "best_ndcg": best_ndcg,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "config": config.to_dict(),
                        "model_config": model_config.to_dict(),
                    },
                )
            elapsed = time.perf_counter() - started
            say(
                Progress(
                    "validate",
                    epoch + 1,
                    config.epochs,
                    steps_per_epoch,
                    steps_per_epoch,
                    loss=record["loss"],
                    val_ndcg10=ndcg,
                    val_hr10=hr,
                    best_val_ndcg10=best_ndcg,
                    best_epoch=best_epoch,
                    elapsed_s=elapsed,
                    eta_s=(config.epochs - epoch - 1) * elapsed / max(1, epoch + 1 - start_epoch),
                    message=f"epoch {epoch + 1}: val NDCG@10 {ndcg:.4f}",
                )
            )
            interrupt, over_budget = cluster.any(
                stop_asked, bool(config.time_budget and elapsed > config.time_budget)
            )
            if interrupt:
                raise StopTraining
            if bad_epochs >= config.patience or over_budget:
                stopped_early = True
                break
    except StopTraining:
        interrupted = True
    model.load_state_dict(best_state)
    model.eval()
    best_hr = next((h["val_hr@10"] for h in history if h["epoch"] == best_epoch), 0.0)
    transitions: dict = {}
    if config.transitions and not config.causal and not interrupted and best_epoch:
        transitions = fit_transitions(
            model, split.train, val_hist, val_targets, device, config.eval_batch, val_types, cluster
        )
        if transitions["kept"]:
            best_ndcg, best_hr = transitions["val_ndcg@10"], transitions["val_hr@10"]
        say(
            Progress(
                "transitions",
                history[-1]["epoch"],
                config.epochs,
                steps_per_epoch,
                steps_per_epoch,
                best_val_ndcg10=best_ndcg,
                best_epoch=best_epoch,
                elapsed_s=time.perf_counter() - started,
                message=transitions["message"],
            )
        )
    seconds = time.perf_counter() - started
    say(
        Progress(
            "stopped" if interrupted else "done",
            best_epoch,
            config.epochs,
            0,
            steps_per_epoch,
            best_val_ndcg10=max(best_ndcg, 0.0),
            best_epoch=best_epoch,
            elapsed_s=seconds,
            message="stopped" if interrupted else "finished",
        )
    )
    return TrainResult(
        model,
        model_config,
        replace(config, precision=precision),  # as run: "auto" resolved
        history,
        best_epoch,
        max(best_ndcg, 0.0),
        seconds,
        stopped_early,
        interrupted,
        transitions,
        float(best_hr),
    )


# --------------------------------------------------------------------------- transitions

# Weights of the Transformer's prior tried on validation. A strong Transformer wants a
# heavy prior: on Beauty the `balanced` preset picked 100, the old grid's edge.
TRANSITION_ALPHAS = (1.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _start_from_cooccurrence(model: PreferenceModel, train: Sequences, seed: int) -> None:
    """Item embeddings from :func:`pmi_item_vectors`, at the random start's scale (items
    that co-occur with nothing start at zero); a log where nothing co-occurs keeps the
    random start."""
    start = pmi_item_vectors(train, model.config.hidden, seed=seed)[1:-1]
    if not start.abs().sum():
        return
    with torch.no_grad():
        table = model.item_embeddings.weight
        scale = table[1:-1].std() / start.std().clamp_min(1e-12)
        table[1:-1] = (start * scale).to(table.device, table.dtype)


def pmi_item_vectors(train: Sequences, dim: int, window: int = 3, seed: int = 0) -> torch.Tensor:
    """(n_items + 2, dim) item vectors from co-occurrence: what counting already knows.

    Items within ``window`` positions of each other in a history co-occur; the
    positive pointwise mutual information of the pairs is factorised by a randomised
    truncated SVD (3 power iterations), and each item gets ``U sqrt(S)``. About 2 s on
    Amazon Beauty (54k items). Rows 0 (padding) and n_items + 1 (mask) are zero, as
    are the rows of items that co-occur with nothing (all of them if nothing does);
    a catalogue smaller than ``dim + 10`` gets fewer singular vectors (the last columns
    zero).
    """
    vocab = train.n_items + 2
    owner = np.repeat(np.arange(train.n_users), np.diff(train.offsets))
    items = train.items.astype(np.int64)
    firsts, seconds = [], []
    for off in range(1, window + 1):
        same = owner[off:] == owner[:-off]
        a, b = items[:-off][same], items[off:][same]
        firsts += [a, b]
        seconds += [b, a]
    key, count = np.unique(
        np.concatenate(firsts) * vocab + np.concatenate(seconds), return_counts=True
    )
    rows, cols = key // vocab, key % vocab
    margin = np.bincount(rows, weights=count, minlength=vocab)
    pmi = np.log(count * count.sum() / (margin[rows] * margin[cols]))
    keep = pmi > 0
    matrix = torch.sparse_coo_tensor(
        np.vstack([rows[keep], cols[keep]]),
        torch.as_tensor(pmi[keep], dtype=torch.float32),
        (vocab, vocab),
        check_invariants=False,  # built from unique keys within bounds just above
    ).coalesce()
    vectors = torch.zeros(vocab, dim)
    if not keep.any():
        return vectors  # nothing co-occurs
    rank = min(dim + 10, vocab)  # a catalogue smaller than the vectors: fewer columns
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(vocab, rank, generator=gen)
    for _ in range(3):
        basis, _ = torch.linalg.qr(torch.sparse.mm(matrix, basis))
    small = torch.sparse.mm(matrix, basis).T  # basis^T A, A symmetric
    u, s, _ = torch.linalg.svd(small @ small.T)
    width = min(dim, rank)
    vectors[:, :width] = (basis @ u[:, :width]) * s[:width].sqrt().sqrt()
    vectors[0] = vectors[-1] = 0.0
    return vectors


def transition_pairs(train: Sequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, next item, count) of every distinct consecutive pair of the histories.

    >>> s = Sequences(np.array(["a", "b"], dtype=object), np.array(["", "x", "y", "z"],
    ...     dtype=object), np.array([0, 3, 5]), np.array([1, 2, 3, 1, 2], dtype=np.int32))
    >>> [x.tolist() for x in transition_pairs(s)]
    [[1, 2], [2, 3], [2, 1]]
    """
    vocab = train.n_items + 2
    follows = np.ones(len(train.items), dtype=bool)
    follows[train.offsets[:-1][train.lengths > 0]] = False  # a user's first event
    nxt = np.flatnonzero(follows)
    keys, counts = np.unique(
        train.items[nxt - 1].astype(np.int64) * vocab + train.items[nxt], return_counts=True
    )
    return keys // vocab, keys % vocab, counts


@torch.no_grad()
def fit_transitions(
    model: PreferenceModel,
    train: Sequences,
    histories: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch: int = 512,
    types: np.ndarray | None = None,
    cluster: Cluster | None = None,
    alphas: tuple[float, ...] = TRANSITION_ALPHAS,
) -> dict:
    """Attach a transition memory of ``train`` to ``model`` if it ranks the validation
    targets better (NDCG@10, full ranking, history items excluded); else leave none.

    Each ``alpha`` of ``alphas`` is tried; the best one is kept when it beats the
    Transformer alone. Returns what was found: ``kept``, ``alpha``, ``pairs``,
    ``val_ndcg@10`` / ``val_hr@10`` (of the model as it now is), ``val_ndcg@10_without``,
    ``tried`` (alpha -> val NDCG@10) and a one-line ``message``.
    """
    src, dst, counts = transition_pairs(train)
    model.drop_transitions()
    if not len(src):
        return {"kept": False, "pairs": 0, "message": "transition memory: no item follows another"}
    model.attach_transitions(
        torch.as_tensor(src), torch.as_tensor(dst), torch.as_tensor(counts), alphas[0]
    )
    table = model.item_table()
    variants = [None, *alphas]  # None = the Transformer alone
    ranks = {v: np.empty(len(targets), dtype=np.int64) for v in variants}
    for rows, hist, inputs, kinds in _trimmed_batches(model, histories, types, batch, device):
        tgt = torch.as_tensor(targets[rows], device=device).long()[:, None]
        logits = model.score(model.encode(inputs, kinds, table=table)[:, -1], table).float()
        log_probs = torch.log_softmax(logits, dim=-1)  # one softmax for every alpha
        followed = model.transitions_of(hist[:, -1])
        for v in variants:
            scores = logits if v is None else fuse_log_probs(log_probs, *followed, v)
            target_score = _tie_floor(scores.gather(1, tgt))
            # Not counted: the history's items and the target itself.
            scores = scores.scatter(1, hist, float("-inf")).scatter(1, tgt, float("-inf"))
            ranks[v][rows] = (scores >= target_score).sum(1).cpu().numpy()
    found = {}
    for v in variants:
        ndcg, hr = ndcg_hr_at(ranks[v], 10)
        if cluster is not None and cluster.world > 1:
            ndcg_sum, hit_sum, n = cluster.total(
                ndcg * len(targets), hr * len(targets), len(targets)
            )
            ndcg, hr = ndcg_sum / max(n, 1), hit_sum / max(n, 1)
        found[v] = (ndcg, hr)
    best = max(alphas, key=lambda a: found[a][0])
    without = found[None][0]
    kept = found[best][0] > without
    if kept:
        model.config.transition_alpha = float(best)
        message = (
            f"transition memory kept: val NDCG@10 {found[best][0]:.4f} "
            f"(Transformer alone {without:.4f})"
        )
    else:
        model.drop_transitions()
        message = f"transition memory left out: it did not beat val NDCG@10 {without:.4f}"
    return {
        "kept": kept,
        "alpha": float(best) if kept else None,
        "pairs": int(len(src)),
        "val_ndcg@10": found[best if kept else None][0],
        "val_hr@10": found[best if kept else None][1],
        "val_ndcg@10_without": without,
        "tried": {str(a): found[a][0] for a in alphas},
        "message": message,
    }


class _LossStep(nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: PreferenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, mask, labels, *args) -> torch.Tensor:  # noqa: D102
        if not mask.any():  # a process left without rows: a zero that reaches every weight
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return _step_loss(self.model, inputs, mask, labels, *args)


TYPE_DROPOUT = 0.25  # training windows whose event types are all hidden


def _step_loss(
    model: PreferenceModel,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    labels_full: torch.Tensor,
    loss_mode: str,
    negatives: int,
    sampling_q: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
    event_types: torch.Tensor | None = None,
    every_prefix: bool = False,
    item_targets: bool = False,
) -> torch.Tensor:
    """Cross-entropy of the masked positions: full softmax or sampled with logQ correction.

    ``every_prefix``: ``inputs`` are plain windows, each position of ``mask`` predicted
    from the items before it (:meth:`PreferenceModel.encode_every_prefix`); with
    ``item_targets`` each item's own state also names the item after it.

    On a CPU both losses take their log-sum-exp from :class:`_TiledLogSumExp`, which
    never stores the (targets, candidates) logits; on CUDA, plenty of memory bandwidth
    (and bfloat16 autocast) makes the plain expressions the faster ones.
    """
    table = model.item_table()
    if item_targets:
        masks, items = model.encode_every_prefix(inputs, event_types, table, with_items=True)
        after = mask[:, 1:]
        states = torch.cat([masks[mask], items[:, :-1][after]])
        labels = torch.cat([labels_full[mask], labels_full[:, 1:][after]])
    else:
        encode = model.encode_every_prefix if every_prefix else model.encode
        states = encode(inputs, event_types, table=table)[mask]  # (M, hidden): masked only
        labels = labels_full[mask]
    if loss_mode == "full":
        if states.is_cuda:
            return F.cross_entropy(model.score(states, table), labels)
        # The padding and mask columns, -inf in model.score, drop out of the softmax,
        # so only the real items (rows 1..n_items) are candidates.
        low = torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False):  # the loss manages its own precision
            hidden = model.head(states).float()
            weight, bias = table[1:-1].float(), model.item_bias[1:-1].float()
            lse = _TiledLogSumExp.apply(hidden, weight, bias, low)
            target = (hidden * weight[labels - 1]).sum(1) + bias[labels - 1]
            return (lse - target).mean()
    hidden = model.head(states)
    neg = torch.multinomial(sampling_q.cpu(), negatives, replacement=True, generator=generator).to(
        device
    )
    log_q = torch.log(sampling_q * negatives)
    pos_logit = (hidden * table[labels]).sum(-1) + model.item_bias[labels] - log_q[labels]
    neg_bias = model.item_bias[neg] - log_q[neg]
    if states.is_cuda:
        neg_logit = hidden @ table[neg].T + neg_bias
        neg_logit = neg_logit.masked_fill(neg[None, :] == labels[:, None], float("-inf"))
        logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(labels), dtype=torch.long, device=device))
    low = torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", enabled=False):
        hidden, pos_logit = hidden.float(), pos_logit.float()
        # a negative that happens to be the row's own target is left out of its softmax
        lse = _TiledLogSumExp.apply(hidden, table[neg].float(), neg_bias.float(), low, neg, labels)
        return (torch.logaddexp(pos_logit, lse) - pos_logit).mean()


_LOSS_TILE = 1024  # rows and candidates per tile of the CPU loss: 4 MB of logits


class _TiledLogSumExp(torch.autograd.Function):
    """``logsumexp(hidden @ weight.T + bias, dim=1)``, one tile at a time.

    The (rows, candidates) logits are never stored whole: the forward pass keeps each
    row's log-sum-exp, and the backward pass recomputes the logits a tile of
    ``_LOSS_TILE`` rows by ``_LOSS_TILE`` candidates at a time, turning each tile into
    its gradients while it is still in the cache. The matrix is far larger than the
    caches (6,400 targets by 9,700 items is 250 MB), and each plain pass over it costs
    more than the products: on 2 CPU cores a step's loss takes a third to a half of
    the time of the plain expression, for one extra matrix product.

    ``ids`` and ``labels`` (optional): the item of each candidate and the target of
    each row; a candidate that is its row's target is left out (a sampled negative
    that hit the positive). With ``low`` the products take bfloat16 inputs (as
    autocast would), while the log-sum-exp and every gradient stay float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, low=False, ids=None, labels=None):  # noqa: D102
        h, w = (hidden.bfloat16(), weight.bfloat16()) if low else (hidden, weight)
        lse = torch.empty(hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        for rows, cols, logits in _loss_tiles(h, w, bias, ids, labels):
            part = torch.logsumexp(logits, 1)
            lse[rows] = part if cols.start == 0 else torch.logaddexp(lse[rows], part)
        ctx.save_for_backward(hidden, weight, bias, lse, ids, labels)
        ctx.low = low
        return lse

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        hidden, weight, bias, lse, ids, labels = ctx.saved_tensors
        low = ctx.low
        h, w = (hidden.bfloat16(), weight.bfloat16()) if low else (hidden, weight)
        lse = lse.masked_fill(torch.isinf(lse), 0.0)  # a row with no candidate left
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros_like(bias)
        for rows, cols, logits in _loss_tiles(h, w, bias, ids, labels):
            # softmax of this tile, times d(loss)/d(lse) of its rows
            p = logits.sub_(lse[rows, None]).exp_().mul_(grad[rows, None])
            pl = p.bfloat16() if low else p
            grad_hidden[rows] += _product(pl, w[cols])
            grad_weight[cols] += _product(pl.T, h[rows])
            grad_bias[cols] += p.sum(0)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def _loss_tiles(h, w, bias, ids, labels):
    """(rows, candidates, float32 logits) of every tile of ``h @ w.T + bias``, with a
    candidate that is its row's label at minus infinity."""
    for r in range(0, h.shape[0], _LOSS_TILE):
        rows = slice(r, r + _LOSS_TILE)
        for c in range(0, w.shape[0], _LOSS_TILE):
            cols = slice(c, c + _LOSS_TILE)
            logits = _product(h[rows], w[cols].T).add_(bias[cols])
            if ids is not None:
                logits.masked_fill_(ids[None, cols] == labels[rows, None], float("-inf"))
            yield rows, cols, logits


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` as float32, whatever the inputs' precision."""
    return torch.mm(a, b).float() if a.dtype == torch.bfloat16 else torch.mm(a, b)
