"""The baselines that train, and fitting baselines by name for an evaluation.

* ``sasrec``: a causal (left-to-right) Transformer, SASRec-style: our own
  :class:`core.models.bert.PreferenceModel` on the same Hugging Face ``BertModel`` blocks
  (``is_decoder=True``), trained by :func:`core.training.loop.train` with ``causal=True``
  (full-softmax cross-entropy of the next item at every position, same windows, schedule
  and early stopping), ranked as a :class:`core.models.scoring.ModelScorer`.
* :func:`fit_baselines` fits the named baselines on a split's training data: the counting
  ones of :mod:`core.models.baselines` (where the names and their descriptions live) and
  ``sasrec``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields, replace

from core.common.progress import ProgressFn
from core.data.splits import EvalSplit
from core.models.baselines import (
    EASE,
    EASE_MAX_ITEMS,
    ItemKNN,
    Markov,
    most_popular,
    recent_popularity,
)
from core.models.scoring import ModelScorer
from core.training.config import TrainConfig
from core.training.loop import ProgressCallback, train


def sasrec_config(base: TrainConfig | dict | None = None, **overrides) -> TrainConfig:
    """The causal baseline's settings: ``base``'s (the evaluated model's) shape, schedule
    and budget, made causal, with full-softmax loss and no text features."""
    if isinstance(base, dict):
        known = {f.name for f in fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in base.items() if k in known})
    base = base or TrainConfig.from_preset("fast")
    return replace(base, causal=True, loss="full", text_encoder="none", **overrides)


def sasrec(
    split: EvalSplit, config: TrainConfig | None = None, callback: ProgressCallback | None = None
) -> ModelScorer:
    """Train the causal Transformer on the split's training data (see :func:`sasrec_config`)."""
    config = config if config is not None and config.causal else sasrec_config(config)
    result = train(split.train_input, config, None, callback=callback)
    scorer = ModelScorer(result.model, "sasrec")
    scorer.fit_seconds = result.seconds
    scorer.history = result.history
    return scorer


def fit_baselines(
    names: Sequence[str],
    split: EvalSplit,
    *,
    ease_max_items: int = EASE_MAX_ITEMS,
    sasrec_settings: TrainConfig | dict | None = None,
    progress: ProgressFn | None = None,
    train_callback: ProgressCallback | None = None,
) -> tuple[list, list[str]]:
    """Fit the named baselines on ``split.fit``; returns (scorers, notes on skipped ones)."""
    say = progress or (lambda f, m: None)
    scorers, notes = [], []
    for n, name in enumerate(names):
        say(n / max(len(names), 1), f"fitting {name}")
        started = time.perf_counter()
        if name == "pop":
            scorer = most_popular(split.fit)
        elif name == "recent":
            scorer = recent_popularity(split.fit, split.fit_times)
        elif name == "itemknn":
            scorer = ItemKNN(split.fit)
        elif name == "markov":
            scorer = Markov(split.fit)
        elif name == "ease":
            if split.fit.n_items > ease_max_items:
                notes.append(
                    f"ease skipped: {split.fit.n_items:,} items is above the EASE limit of "
                    f"{ease_max_items:,} (its dense item x item inverse would need "
                    f"{8 * split.fit.n_items**2 / 2**30:.0f} GiB)"
                )
                continue
            scorer = EASE(split.fit)
        elif name == "sasrec":
            scorer = sasrec(split, sasrec_config(sasrec_settings), train_callback)
        else:
            raise ValueError(f"unknown baseline {name!r}")
        scorer.fit_seconds = time.perf_counter() - started
        scorers.append(scorer)
    say(1.0, "baselines fitted")
    return scorers, notes
