"""What an evaluation run is: its settings (:class:`EvalConfig`), its results
(:class:`Evaluation`, the frames the Metrics page, the report and the CLI show) and the
words for both (metric labels, a one-line description of the protocol).

Computing a run is :mod:`core.evaluation.runner`'s work; this module only holds and
reshapes what it produced, and rebuilds stored runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.evaluation.beyond_accuracy import BEYOND_METRICS
from core.evaluation.statistics import significance_label

METRIC_LABELS = {
    "hr": "HR",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "recall": "Recall",
    "precision": "Precision",
    "coverage": "Catalogue coverage",
    "gini": "Gini of exposure",
    "novelty": "Novelty (bits)",
    "diversity": "Intra-list diversity",
    "arp": "Avg. recommended popularity",
}


@dataclass
class EvalConfig:
    """Settings of an evaluation run.

    Args:
        split (str): ``loo`` (default) or ``time``.
        k (int): the K of headline figures, segments and the significance test.
        exclude_seen (bool): leave the user's history out of the ranking (default).
        sampled (int): also report sampled-negative metrics against this many negatives.
        sampling (str): ``popularity`` or ``uniform`` negatives.
        batch (int): users per score matrix.
        bootstrap (int): bootstrap resamples for the confidence intervals.
        permutations (int): sign flips of the significance test.
        seed (int): seeds sampling, bootstrap and permutations.
    """

    split: str = "loo"
    k: int = 10
    exclude_seen: bool = True
    sampled: int = 0
    sampling: str = "popularity"
    batch: int = 1024
    bootstrap: int = 1000
    permutations: int = 2000
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """The results of one run: settings, metrics per scorer, segments, per-user NDCG.

    ``results[name]`` maps metric keys (``ndcg@10``, ``hr@10``, ``mrr``, ``coverage@10``...)
    to values, ``ci`` to ``{metric: [low, high]}``, ``sampled`` to sampled-ranking
    metrics (when asked), ``kind`` to ``model`` or ``baseline``, ``significance`` (models
    only) to the test against the best baseline.
    """

    settings: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    per_user: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"settings": ..., "results": ...}`` (what ``evaluate --json`` prints)."""
        return {"settings": self.settings, "results": self.results}

    # ---- frames for tables and charts

    def table(self, k: int | None = None) -> pd.DataFrame:
        """One row per scorer: headline metrics at ``k`` with 95 % CIs and significance."""
        k = k or self.settings["k"]
        rows = []
        for name, res in self.results.items():
            row: dict[str, Any] = {"name": name, "kind": res.get("kind", "")}
            for metric in (f"ndcg@{k}", f"hr@{k}", "mrr", f"recall@{k}", f"precision@{k}"):
                row[metric] = res.get(metric)
                lo, hi = res.get("ci", {}).get(metric, (None, None))
                row[f"{metric} low"], row[f"{metric} high"] = lo, hi
            for metric in BEYOND_METRICS:
                row[f"{metric}@{k}"] = res.get(f"{metric}@{k}")
            for key, value in res.get("sampled", {}).items():
                if key.endswith(f"@{k}") or key == "mrr":
                    row[f"sampled {key}"] = value
            sig = res.get("significance")
            row["vs best baseline"] = significance_label(sig)
            row["users"] = res.get("users")
            row["seconds"] = res.get("seconds")
            rows.append(row)
        return pd.DataFrame(rows)

    def long_frame(self) -> pd.DataFrame:
        """Every ranking metric at every K: name, kind, metric, k, value, low, high, ranking."""
        rows = []

        def row(name, res, key, value, low, high, ranking) -> dict:
            metric, _, k = key.partition("@")
            kind = res.get("kind", "")
            k = int(k) if k else None
            return dict(
                name=name,
                kind=kind,
                metric=metric,
                k=k,
                value=value,
                low=low,
                high=high,
                ranking=ranking,
            )

        for name, res in self.results.items():
            for key, value in res.items():
                if not isinstance(value, int | float) or key in ("users", "seconds", "fit_seconds"):
                    continue
                lo, hi = res.get("ci", {}).get(key, (value, value))
                rows.append(row(name, res, key, value, lo, hi, "full"))
            for key, value in res.get("sampled", {}).items():
                rows.append(row(name, res, key, value, value, value, "sampled"))
        return pd.DataFrame(
            rows, columns=["name", "kind", "metric", "k", "value", "low", "high", "ranking"]
        )

    def segment_frame(self) -> pd.DataFrame:
        """Per-segment figures: name, segment, bucket, order, users, and metric columns."""
        rows = [{"name": name, **row} for name, seg in self.segments.items() for row in seg or []]
        return pd.DataFrame(rows)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> Evaluation:
        """Rebuild a stored run from :meth:`core.store.Store.list_evaluations` rows."""
        rows = sorted(rows, key=lambda r: r["settings"].get("order", 0))
        settings = {
            k: v for k, v in rows[0]["settings"].items() if k not in ("order", "kind", "scorer")
        }
        ev = cls(settings)
        for row in rows:
            ev.results[row["model_name"]] = row["metrics"]
            ev.segments[row["model_name"]] = row["segments"] or []
        return ev


def describe(settings: dict) -> str:
    """One line saying how a run was made (split, ranking, users)."""
    sampled = settings.get("sampled")
    ranking = "full ranking over all items" + (
        ", the user's own items excluded" if settings.get("exclude_seen", True) else ""
    )
    if sampled:
        ranking += f"; sampled figures: {sampled['negatives']} negatives by {sampled['by']}"
    split = {"loo": "leave-one-out", "time": "global temporal split"}.get(
        settings.get("split"), str(settings.get("split"))
    )
    return (
        f"{split} · {ranking} · {settings.get('users_evaluated', 0):,} users evaluated "
        f"· {settings.get('items', 0):,} items"
    )
