"""What the app's pages and the command line call when a step takes more than one layer.

An entry point at core's top, beside :mod:`core.cli`: opening the app's database
(leftover uploads and exports swept, the demo seeded and its first model started on a
new database), recommending with the reasons shown beside each item, and training a
stored dataset in the foreground. Pages keep their widgets and the CLI its flags and
printing; what both need is computed here once, so the two cannot drift.

Unlike the CLI, which imports a command's modules when the command runs (to start
fast), this module imports everything at its top.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.common.columns import Columns, MetricKeys
from core.data.demo import load_demo
from core.data.uploads import sweep
from core.models.checkpoint import SavedModel
from core.models.registry import data_home, free_model_name
from core.serving.exports import PREFIX as EXPORT_PREFIX
from core.serving.model_data import Catalog
from core.serving.recommend import because_of, explain, recommend
from core.store import Store, open_store
from core.training.config import TrainConfig
from core.training.loop import ProgressCallback
from core.training.runs import start_run, train_dataset, train_distributed

log = logging.getLogger("reclens")

# How many history items each recommendation names as its reason ("because of"): the
# strongest one, on the Recommendations page and in ``recommend --explain`` alike.
REASONS = 1


# --------------------------------------------------------------------------- the app's store


def upload_home(store: Store) -> Path:
    """Where the Data page keeps its private copies of uploads (``uploads/`` beside the
    database)."""
    return data_home(store) / "uploads"


def export_home(store: Store) -> Path:
    """Where the Recommendations page writes exports before they are downloaded
    (``exports/``)."""
    return data_home(store) / "exports"


def open_app_store(autotrain: bool | None = None) -> Store:
    """The app's store, ready for its first page: uploads and exports left by an earlier
    run deleted, and a new database given the demo (:func:`first_start`).

    Args:
        autotrain: start the demo's first model on a new database; default: unless
            ``RECLENS_AUTOTRAIN`` is ``0``.
    """
    store = open_store()
    # No session holds an upload or an export before this runs.
    swept = sweep(upload_home(store)) + sweep(export_home(store), EXPORT_PREFIX)
    if swept:
        log.info("deleted %d uploaded or exported file(s) left by an earlier run", swept)
    if autotrain is None:
        autotrain = os.environ.get("RECLENS_AUTOTRAIN", "1") != "0"
    first_start(store, autotrain=autotrain)
    return store


def first_start(store: Store, autotrain: bool = True) -> bool:
    """Give an empty database the demo dataset and, with ``autotrain``, start a ``fast``
    demo model in the background, so every page has something to show about a minute
    after the app first starts. Returns whether the demo was loaded."""
    if store.list_datasets():
        return False
    load_demo(store, "demo")
    if autotrain and not store.list_models():
        config = TrainConfig.from_preset("fast", text_encoder="none")
        start_run(store, "demo", config, name=free_model_name(store, "demo-fast"))
    return True


# --------------------------------------------------------------------------- recommending


@dataclass
class Recommendations:
    """A top-K list with what explains it.

    Attributes:
        top: :func:`core.serving.recommend.recommend`'s frame (rank, item_id, score...).
        explanations: item id -> occlusion frame (:func:`core.serving.recommend.explain`);
            empty when not asked for or when the list is empty.
        because: per item of ``top``, the history items named as its reason (at most
            :data:`REASONS`, only ones that pushed it up); empty lists without
            explanations.
    """

    top: pd.DataFrame
    explanations: dict[str, pd.DataFrame]
    because: list[list[str]]


def recommend_with_reasons(
    saved: SavedModel,
    history: Sequence[str],
    k: int = 10,
    exclude_seen: bool = True,
    *,
    explained: bool = True,
    catalog: Catalog | None = None,
    category: str | None = None,
) -> Recommendations:
    """Top-``k`` items for a history and, with ``explained``, why: each item's occlusion
    attribution and its "because of" reason (the strongest history item that pushed it
    up). What the Recommendations page and ``python -m core recommend`` show.

    Args:
        explained: compute the explanations (one more batch through the model).
        catalog, category: as in :func:`core.serving.recommend.recommend`.
    """
    top = recommend(saved, history, k, exclude_seen, catalog=catalog, category=category)
    items = list(top[Columns.ITEM])
    explanations = explain(saved, history, items) if explained and items else {}
    return Recommendations(top, explanations, because_of(explanations, items, n=REASONS))


# --------------------------------------------------------------------------- training


def train_model(
    store: Store,
    dataset: str,
    config: TrainConfig,
    *,
    nproc: int = 1,
    name: str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    replace: bool = False,
    callback: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train a stored dataset in the foreground, save and register the model; returns
    what the run gave (model, path, epochs, best epoch and validation NDCG@10, seconds).

    With ``nproc`` > 1 it trains data-parallel in that many processes
    (:func:`core.training.runs.train_distributed`), else in this one with ``callback``
    told of its progress (:func:`core.training.runs.train_dataset`). The app trains in
    background runs instead (:func:`core.training.runs.start_run`).
    """
    where = {"name": name, "out_dir": out_dir, "resume": resume, "replace": replace}
    if nproc > 1:
        model, record = train_distributed(store, dataset, config, nproc=nproc, **where)
        return {
            "model": model.name,
            "path": model.path,
            "epochs": record.epochs,
            "best_epoch": record.best_epoch,
            MetricKeys.BEST_NDCG: record.metrics[MetricKeys.NDCG],
            "seconds": record.seconds,
            "dataset": model.dataset,
            "nproc": nproc,
        }
    model, result = train_dataset(store, dataset, config, callback=callback, **where)
    return {
        "model": model.name,
        "path": model.path,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        MetricKeys.BEST_NDCG: result.best_val_ndcg10,
        "transition_memory": result.transitions.get("kept", False),
        "seconds": round(result.seconds, 2),
        "dataset": model.dataset,
    }
