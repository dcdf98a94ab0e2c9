"""The settings of a training run: :class:`TrainConfig` and the presets that fill it.

Kept apart from the loop so that the pages, the CLI and the benchmarks can name a run's
settings (and list the presets) without reading how a run trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from core.models.bert import ATTENTIONS, ModelConfig

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
    # Transformer alone reaches test NDCG@10 0.0338 in 10 minutes on 2 AVX2-only cores
    # (6 epochs with the cheap CPU dropout; Markov 0.0322), and 0.0332 with bfloat16
    # units before it (a hidden size of 128 learned less per second there).
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
            (:data:`core.training.windows.TYPE_DROPOUT`) of windows none at all, so the
            model also works when types are unknown.
        causal (bool): train a left-to-right model instead (SASRec-style, the baseline of
            :mod:`core.training.baselines`): every position predicts the next item, no masking.
        precision (str): ``auto`` (bfloat16 mixed precision on CUDA, and on a CPU that
            computes bfloat16 products natively, AVX512-BF16 or AMX-BF16; float32
            elsewhere), ``float32`` or ``bfloat16``. Training steps only: the weights,
            the optimiser and every validation and ranking stay float32.
        item_init (str): ``random``, or ``pmi``: item embeddings start from a truncated
            SVD of the items' positive pointwise mutual information within 3 positions
            of each other in the training histories
            (:func:`core.training.cooccurrence.pmi_item_vectors`).
        transitions (bool): after training, try a transition memory (how often each item
            followed each other one in the training histories, with the Transformer's
            prediction as the prior; see :mod:`core.models.bert`) and keep it when it raises
            validation NDCG@10 (:func:`core.training.memory.fit_transitions`). Never for a
            causal model.
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
