"""Honest offline evaluation: one call ranks, scores and compares models and baselines on
the same split, and stores the run.

The protocol (shared by the app, the CLI, the tests and the benchmarks):

* **Splits.** Leave-one-out (default): per user the last item is the test target;
  the one before it is the validation target of a fixed sample of users (all of them
  up to 2,000; :func:`core.data.splits.validation_users`) and training data for the rest;
  everything earlier is what every model may learn from (exactly
  :func:`core.data.splits.leave_one_out`'s training part). Users with fewer than 3 events
  are not evaluated (their last item is training data). Global
  temporal split: everything before a cut-off time is training data, and each user
  with events on both sides is tested on their first item after it.
* **Baselines** are scorers like our models (:class:`core.models.scoring.Scorer`), fitted
  on the split's training part only by :func:`core.training.baselines.fit_baselines`: the
  counting ones of :mod:`core.models.baselines` (popularity, recent popularity, ItemKNN,
  Markov, EASE) and the SASRec-style causal Transformer of :mod:`core.training.baselines`.
* **Full ranking** (:mod:`core.evaluation.ranking`). The target is ranked against every
  item; by default the items of the user's input history are left out of the ranking
  (``exclude_seen``). *Sampled* ranking (the target against N negatives drawn uniformly or
  by popularity, as in many papers) is computed only when asked and always labelled.
* **Ties** are handled exactly: when ``t`` other items share the target's score
  and ``g`` score higher, every metric is its expectation over the ``t + 1``
  equally likely positions ``g .. g + t`` (a constant scorer gets chance-level
  figures, not perfect ones). Every scorer's ties are counted, the neural models'
  too: items they cannot tell apart (never seen in training, they start alike)
  score exactly alike.
* **Metrics**, one module per family, each with its formula:
  :mod:`core.evaluation.accuracy` (HR, NDCG, MRR, Recall, Precision at K) and
  :mod:`core.evaluation.beyond_accuracy` (coverage, Gini of exposure, novelty, diversity,
  popularity of the top-K lists); per segment of users in :mod:`core.evaluation.segments`.
* **Uncertainty** (:mod:`core.evaluation.statistics`). 95 % confidence intervals by a
  Poisson bootstrap over users (each user weighted by a Poisson(1) draw per resample, 1,000
  resamples); significance of each model against the best baseline by a paired sign-flip
  permutation test on per-user NDCG@K (two-sided, 2,000 flips).

Results (:class:`core.evaluation.results.Evaluation`) are stored in DuckDB
(``evaluations``, one row per model or baseline, the rows of one run sharing
``settings.run_id``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.common.columns import Columns, MetricKeys
from core.common.progress import ProgressFn
from core.data.sequences import Sequences, dataset_sequences
from core.data.splits import EvalSplit, event_times, make_split
from core.evaluation.accuracy import KS, per_user_metrics
from core.evaluation.beyond_accuracy import list_metrics
from core.evaluation.ranking import Ranked, rank
from core.evaluation.results import EvalConfig, Evaluation
from core.evaluation.segments import segment_figures, segment_labels
from core.evaluation.statistics import bootstrap_ci, paired_comparison, poisson_weights
from core.models.baselines import EASE_MAX_ITEMS
from core.models.checkpoint import SavedModel, read_training
from core.models.registry import model_dataset, resolve_model
from core.models.scoring import ModelScorer, Scorer
from core.training.baselines import fit_baselines, sasrec_config

# --------------------------------------------------------------------------- one split


def evaluate(
    scorers: Sequence[Scorer],
    split: EvalSplit,
    config: EvalConfig | None = None,
    *,
    models: Sequence[str] = (),
    item_features: np.ndarray | None = None,
    diversity_basis: str | None = None,
    notes: Sequence[str] = (),
    extra_settings: dict | None = None,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Rank, score and compare every scorer on the same split.

    Args:
        scorers: our models and the baselines (see :class:`Scorer`).
        split: from :func:`make_split`.
        models: names of the scorers that are models (the rest are baselines); each is
            tested against the best baseline (highest NDCG@K).
        item_features: (n_items + 2, d) features for intra-list diversity, or None.
        diversity_basis: ``category`` or ``text embedding`` (for labels).
        notes: messages for the settings (skipped baselines...).
        progress: ``progress(fraction, message)``.
    """
    config = config or EvalConfig()
    say = progress or (lambda f, m: None)
    n_items = split.inputs.n_items
    item_count, item_users, n_fit_users = _training_popularity(split)
    ks = _cutoffs(config.k, n_items)
    k_main = min(config.k, n_items)
    segments = segment_labels(split, item_count)
    ev = Evaluation(_settings(split, config, ks, k_main, diversity_basis, notes, extra_settings))
    if len(split.users) == 0:
        raise ValueError("no user can be evaluated on this split (too few events per user)")
    # One set of bootstrap weights for every scorer (at most ~400 MB; else drawn per call).
    weights = (
        poisson_weights(config.bootstrap, len(split.users), config.seed)
        if config.bootstrap * len(split.users) <= 100_000_000
        else None
    )
    for i, scorer in enumerate(scorers):

        def step(fraction: float, message: str, i: int = i) -> None:
            say((i + fraction) / len(scorers), message)

        ranked = rank(
            scorer,
            split,
            max_k=max(ks),
            exclude_seen=config.exclude_seen,
            sampled=config.sampled,
            sampling=config.sampling,
            popularity=item_count,
            batch=config.batch,
            seed=config.seed,
            progress=step,
        )
        per_user = per_user_metrics(ranked.greater, ranked.ties, ks)
        lists = list_metrics(
            ranked.top,
            ks,
            n_items=n_items,
            item_count=item_count,
            item_users=item_users,
            n_users=n_fit_users,
            features=item_features,
        )
        kind = "model" if scorer.name in models else "baseline"
        ev.results[scorer.name] = _scorer_results(
            scorer, ranked, per_user, lists, kind=kind, ks=ks, config=config, weights=weights
        )
        ev.per_user[scorer.name] = per_user[f"ndcg@{k_main}"]
        ev.segments[scorer.name] = segment_figures(per_user, segments, k_main)
    _significance(ev, models, k_main, config, weights)
    say(1.0, "done")
    return ev


def _training_popularity(split: EvalSplit) -> tuple[np.ndarray, np.ndarray, int]:
    """What the training part of the split says of each item's popularity.

    Returns:
        (n_items + 2,) training events per item (padding and mask columns 0), (n_items + 2,)
        training users per item, and the number of users with training events.
    """
    n_items = split.inputs.n_items
    item_count = np.bincount(split.fit.items, minlength=n_items + 2).astype(np.float64)
    item_count[0] = item_count[-1] = 0
    # Users per item (not events): self-information counts users.
    pairs = np.unique(
        np.repeat(np.arange(split.fit.n_users), split.fit.lengths).astype(np.int64) * (n_items + 2)
        + split.fit.items
    )
    item_users = np.bincount(pairs % (n_items + 2), minlength=n_items + 2)
    n_fit_users = int((split.fit.lengths > 0).sum())
    return item_count, item_users, n_fit_users


def _cutoffs(k: int, n_items: int) -> tuple[int, ...]:
    """The K of every figure: those of :data:`KS` up to the number of items, and the
    headline ``k`` (at most the number of items)."""
    ks = tuple(x for x in KS if x <= n_items) or (1,)
    if k not in ks:
        ks = tuple(sorted({*ks, min(k, n_items)}))
    return ks


def _settings(
    split: EvalSplit,
    config: EvalConfig,
    ks: tuple[int, ...],
    k_main: int,
    diversity_basis: str | None,
    notes: Sequence[str],
    extra_settings: dict | None,
) -> dict[str, Any]:
    """The run's protocol in words and numbers (stored with it and shown beside it)."""
    return {
        "split": split.kind,
        "split_note": split.note,
        "ranking": "full",
        "exclude_seen": config.exclude_seen,
        "sampled": (
            {"negatives": config.sampled, "by": config.sampling} if config.sampled else None
        ),
        "users_evaluated": int(len(split.users)),
        "users_total": int(split.inputs.n_users),
        "items": int(split.inputs.n_items),
        "k": k_main,
        "ks": list(ks),
        "ties": "expected value over random tie-breaking",
        "ci": f"95% Poisson bootstrap over users ({config.bootstrap} resamples)",
        "significance": (
            f"paired sign-flip permutation test on per-user NDCG@{k_main} vs the best "
            f"baseline ({config.permutations} flips), two-sided, alpha 0.05"
        ),
        "diversity_basis": diversity_basis,
        "notes": list(notes),
        **(extra_settings or {}),
    }


def _scorer_results(
    scorer: Scorer,
    ranked: Ranked,
    per_user: dict[str, np.ndarray],
    lists: dict[str, float],
    *,
    kind: str,
    ks: tuple[int, ...],
    config: EvalConfig,
    weights: torch.Tensor | None,
) -> dict[str, Any]:
    """One scorer's entry of :attr:`Evaluation.results`: the mean of every per-user metric
    with its bootstrap interval, the list metrics, sampled figures when asked, and times."""
    keys = list(per_user)
    ci = bootstrap_ci(
        np.stack([per_user[k] for k in keys], axis=1),
        config.bootstrap,
        config.seed,
        weights=weights,
    )
    res: dict[str, Any] = {"kind": kind, "users": int(len(ranked.greater))}
    res.update({key: float(per_user[key].mean()) for key in keys})
    res["ci"] = {key: [float(lo), float(hi)] for key, (lo, hi) in zip(keys, ci, strict=True)}
    res.update(lists)
    if config.sampled:
        sampled = per_user_metrics(ranked.sampled_greater, ranked.sampled_ties, ks)
        res["sampled"] = {key: float(v.mean()) for key, v in sampled.items()}
    res["seconds"] = round(ranked.seconds, 3)
    if hasattr(scorer, "fit_seconds"):
        res["fit_seconds"] = round(float(scorer.fit_seconds), 3)
    return res


def _significance(
    ev: Evaluation,
    models: Sequence[str],
    k: int,
    config: EvalConfig,
    weights: torch.Tensor | None = None,
) -> None:
    """Test each model against the best baseline (highest NDCG@k) on per-user NDCG@k."""
    baselines = [n for n, r in ev.results.items() if r["kind"] == "baseline"]
    if not baselines:
        return
    best = max(baselines, key=lambda n: ev.results[n][f"ndcg@{k}"])
    ev.settings["best_baseline"] = best
    for name in models:
        if name not in ev.per_user:
            continue
        ev.results[name]["significance"] = {
            "against": best,
            "metric": f"ndcg@{k}",
            **paired_comparison(
                ev.per_user[name],
                ev.per_user[best],
                config.bootstrap,
                config.permutations,
                config.seed,
                weights,
            ),
        }


# --------------------------------------------------------------------------- storage


def category_features(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray | None:
    """(len(item_ids) + 1, n_categories) indicator matrix from an item table with
    ``item_id`` and ``categories`` (lists); None when no item has a category.
    Row ``i`` belongs to item index ``i`` (row 0 and the mask row stay zero)."""
    if items is None or items.empty or "categories" not in items:
        return None
    exploded = items[[Columns.ITEM, "categories"]].explode("categories").dropna()
    if exploded.empty:
        return None
    index = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids.astype(str)))
    rows = index.reindex(exploded[Columns.ITEM].astype(str)).to_numpy()
    cats, codes = np.unique(exploded["categories"].astype(str).to_numpy(), return_inverse=True)
    keep = ~np.isnan(rows)
    out = np.zeros((len(item_ids) + 1, len(cats)), dtype=np.float32)
    out[rows[keep].astype(np.int64), codes[keep]] = 1.0
    return out


def save(store, dataset_id: int, ev: Evaluation) -> str:
    """Store a run (one row per scorer); returns its run id."""
    run_id = ev.settings.get("run_id") or uuid.uuid4().hex[:12]
    ev.settings["run_id"] = run_id
    ev.settings.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
    for order, (name, res) in enumerate(ev.results.items()):
        store.save_evaluation(
            f"{run_id}-{order}",
            name,
            dataset_id,
            {**ev.settings, "order": order, "kind": res.get("kind"), "scorer": name},
            res,
            ev.segments.get(name),
        )
    return run_id


def stored_runs(store, dataset_id: int) -> pd.DataFrame:
    """Stored runs of a dataset, newest first: run_id, created, split, ranking, scorers."""
    rows = store.list_evaluations(dataset_id)
    runs: dict[str, dict] = {}
    for row in rows:
        s = row["settings"]
        run = runs.setdefault(
            s.get("run_id", row["evaluation_id"]),
            {
                "run_id": s.get("run_id", row["evaluation_id"]),
                "created": row["created"],
                "split": s.get("split"),
                "sampled": bool(s.get("sampled")),
                "users": s.get("users_evaluated"),
                "scorers": [],
            },
        )
        run["scorers"].append(row["model_name"])
    frame = pd.DataFrame(
        list(runs.values()),
        columns=["run_id", "created", "split", "sampled", "users", "scorers"],
    )
    return frame.sort_values("created", ascending=False, ignore_index=True)


def load(store, run_id: str) -> Evaluation | None:
    """A stored run, or None."""
    rows = store.list_evaluations(run_id=run_id)
    return Evaluation.from_rows(rows) if rows else None


# --------------------------------------------------------------------------- one call


def run(
    store,
    *,
    models: Sequence[str] = (),
    dataset: str | None = None,
    baselines: Sequence[str] = (),
    config: EvalConfig | None = None,
    ease_max_items: int | None = None,
    sasrec_settings: dict | None = None,
    save_results: bool = True,
    progress: ProgressFn | None = None,
) -> tuple[Evaluation, list[str]]:
    """Evaluate saved models (names or directories) and baselines on their dataset.

    What the CLI's ``evaluate`` and the Metrics page call. The dataset is the models'
    (they must share it) or ``dataset`` when only baselines are asked for. The run is
    stored in the database unless ``save_results`` is false.

    Returns:
        (the evaluation, warnings such as a model trained on older data).

    Raises:
        ValueError: nothing to evaluate, models of different datasets, a model whose
            items no longer match its dataset, or a split that cannot be made.
    """
    config = config or EvalConfig()
    say = progress or (lambda f, m: None)
    if not models and not baselines:
        raise ValueError("nothing to evaluate: name a model or at least one baseline")
    saved = [resolve_model(store, name) for name in models]
    dataset = _shared_dataset(saved, dataset)
    info = model_dataset(store, saved[0]) if saved else store.get_dataset(dataset)
    say(0.0, "reading the sequences")
    seqs = dataset_sequences(store, dataset)
    warnings = [w for s in saved for w in s.warnings]
    _check_items(saved, seqs, dataset)
    split = make_split(seqs, config.split, event_times(store, dataset))
    if config.split == "time" and saved:
        warnings.append(
            "the models were trained with leave-one-out, so their training data may include "
            "events after the cut-off of the time split; baselines are fitted before it"
        )
    features, basis = _diversity_features(store.items_frame(info.dataset_id), seqs, saved)
    scorers = _model_scorers(saved)
    # a record without settings (an old or hand-made file) gives the fast preset's shape
    base_settings = sasrec_settings or ((saved[0].training.config or None) if saved else None)
    fitted, notes = fit_baselines(
        list(baselines),
        split,
        ease_max_items=ease_max_items or EASE_MAX_ITEMS,
        sasrec_settings=sasrec_config(base_settings) if "sasrec" in baselines else None,
        progress=lambda f, m: say(0.05 + 0.45 * f, m),
    )
    if features is None:
        notes = [*notes, "intra-list diversity: the items have no categories or text vectors"]
    ev = evaluate(
        scorers + fitted,
        split,
        config,
        models=[s.name for s in saved],
        item_features=features,
        diversity_basis=basis,
        notes=notes,
        extra_settings={"dataset": dataset, "models": [s.name for s in saved]},
        progress=lambda f, m: say(0.5 + 0.5 * f, m),
    )
    ev.settings["warnings"] = warnings
    if save_results:
        save(store, info.dataset_id, ev)
    return ev, warnings


def _shared_dataset(saved: list[SavedModel], dataset: str | None) -> str:
    """The one dataset of the models (and of ``dataset`` when given); raises when they
    differ."""
    datasets = {s.dataset for s in saved} | ({dataset} if dataset else set())
    if len(datasets) != 1:
        raise ValueError(
            "the models were trained on different datasets "
            f"({', '.join(sorted(map(str, datasets)))}); evaluate them separately"
        )
    return datasets.pop()


def _check_items(saved: list[SavedModel], seqs: Sequences, dataset: str) -> None:
    """Raise when a model's items are not the dataset's items of today."""
    for s in saved:
        if len(s.item_ids) != len(seqs.item_ids) or not np.array_equal(
            s.item_ids.astype(str), seqs.item_ids.astype(str)
        ):
            raise ValueError(
                f"model {s.name!r} was trained on an earlier version of dataset {dataset!r} "
                "whose items differ from today's; train it again to evaluate it"
            )


def _diversity_features(
    items: pd.DataFrame, seqs: Sequences, saved: list[SavedModel]
) -> tuple[np.ndarray | None, str | None]:
    """Item features for intra-list diversity and their basis: the items' categories, else
    the first model's text vectors, else (None, None)."""
    categories = category_features(items, seqs.item_ids)
    if categories is not None:
        return categories, "category"
    for s in saved:
        vectors = getattr(s.model, "text_vectors", None)
        if vectors is not None:
            return vectors.detach().cpu().numpy(), "text embedding"
    return None, None


def _model_scorers(saved: list[SavedModel]) -> list:
    """Each saved model as a scorer, with its training time."""
    scorers: list = []
    for s in saved:
        scorer = ModelScorer(s.model, s.name)
        scorer.fit_seconds = float(s.training.seconds or 0.0)
        scorers.append(scorer)
    return scorers


def model_curves(path: str) -> tuple[list[dict], float | None]:
    """A saved model's training curves from one read of its ``training.json``.

    Returns:
        The per-epoch history in the shape of :func:`core.reports.charts.training_curves`'
        records (empty when unreadable), and the validation NDCG@10 with its
        transition memory (None when it has none or the file is unreadable).
    """
    training = read_training(path)
    if training is None:
        return [], None
    history = [
        {"epoch": h.get("epoch"), "loss": h.get("loss"), "val_ndcg10": h.get(MetricKeys.NDCG)}
        for h in training.history
        if isinstance(h, dict)
    ]
    return history, training.memory_ndcg
