"""The report's evaluation section: a stored run as the Metrics page shows it.

Part of :mod:`core.reports.page` (see its docstring): the protocol, the metrics table with
95% intervals and the significance mark against the best baseline, bars, metric@K
curves, the breakdowns by history length and target popularity, beyond accuracy.
Reads the stored run only; never evaluates.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.evaluation.beyond_accuracy import BEYOND_METRICS
from core.evaluation.results import METRIC_LABELS, describe
from core.evaluation.runner import load
from core.evaluation.statistics import significance_label
from core.reports import charts
from core.reports import markup as H
from core.store import DatasetInfo, Store


def evaluation_section(
    store: Store, run_id: str | None, info: DatasetInfo, saved, figs: H.Figures
) -> str:
    """A stored run as the Metrics page shows it: protocol, table, bars, curves, breakdowns."""
    result = load(store, run_id) if run_id else None
    if result is None:
        return H.absent(
            f"No stored evaluation of {info.name}: run one on the Metrics page or with "
            "python -m core evaluate."
        )
    settings, k = result.settings, int(result.settings.get("k", 10))
    out = [
        H.paragraph(f"Run {run_id}, {settings.get('created', '')}: {describe(settings)}.", "lead")
    ]
    for note in [*settings.get("notes", []), *settings.get("warnings", [])]:
        out.append(H.paragraph(str(note), "note"))
    out.append(H.paragraph(_uncertainty_sentence(settings), "note"))
    name = saved.name if saved is not None else None
    if name in result.results:
        out.append(H.facts(_model_headline(result.results[name], name, k)))
    out.append(H.table(metric_rows(result, k), numeric=_numeric_columns(result, k)))
    out.append(H.paragraph("* significantly different from the best baseline (p < 0.05).", "note"))
    out += _evaluation_charts(result, k, figs)
    return "".join(out)


def _uncertainty_sentence(settings: dict[str, Any]) -> str:
    best = settings.get("best_baseline")
    return (
        f"Confidence intervals: {settings.get('ci', '95% bootstrap')}. Significance: "
        f"{settings.get('significance', 'paired permutation test')}"
        + (f"; best baseline: {best}" if best else "")
        + ". Ties are counted as their expected position."
    )


def _model_headline(res: dict[str, Any], name: str, k: int) -> list[tuple[str, str, str]]:
    """The model's own figures at K, each with its 95% interval."""
    pairs = []
    for metric in (f"ndcg@{k}", f"hr@{k}", "mrr"):
        low, high = (res.get("ci") or {}).get(metric, (None, None))
        interval = f"95% CI [{H.fmt_num(low)}, {H.fmt_num(high)}]" if low is not None else ""
        pairs.append((f"{metric.upper()} of {name}", H.fmt_num(res.get(metric)), interval))
    sig = res.get("significance")
    if sig:
        label = significance_label(sig)
        pairs.append(("vs best baseline", f"{sig['difference']:+.4f}", label))
    return pairs


def metric_rows(result, k: int) -> list[dict[str, Any]]:
    """One row per model and baseline: each metric at K with its 95% interval in one cell
    ("0.4020 [0.3570, 0.4580]", as on the Metrics page), sampled figures, the mark.
    Beyond-accuracy figures are charted below it."""
    table = result.table(k)
    rows = []
    for record in table.to_dict("records"):
        row: dict[str, Any] = {"name": record["name"], "kind": record["kind"]}
        for column in (f"ndcg@{k}", f"hr@{k}", "mrr", f"recall@{k}", f"precision@{k}"):
            value, low = record.get(column), record.get(f"{column} low")
            cell = H.fmt_num(value)
            if low is not None and not pd.isna(low):
                cell += f" [{H.fmt_num(low)}, {H.fmt_num(record.get(f'{column} high'))}]"
            row[column.upper()] = cell
        for column in [c for c in table.columns if c.startswith("sampled ")]:
            row[column] = H.fmt_num(record.get(column))
        row["vs best baseline"] = record.get("vs best baseline") or ""
        row["users"] = H.fmt_int(record.get("users"))
        rows.append(row)
    return rows


def _numeric_columns(result, k: int) -> list[str]:
    names = [f"ndcg@{k}", f"hr@{k}", "mrr", f"recall@{k}", f"precision@{k}"]
    sampled = [c for c in result.table(k).columns if c.startswith("sampled ")]
    return [n.upper() for n in names] + sampled + ["users"]


def _evaluation_charts(result, k: int, figs: H.Figures) -> list[str]:
    """The Metrics page's charts for NDCG and HR: bars with CIs, metric@K, sampled ones,
    breakdowns by history length and target popularity, beyond accuracy."""
    long = result.long_frame()
    stars = {
        name: "*" if (res.get("significance") or {}).get("significant") else ""
        for name, res in result.results.items()
    }
    long = long.assign(marker=long["name"].map(stars))
    out = []
    for ranking in ("full", "sampled") if result.settings.get("sampled") else ("full",):
        part = long[long["ranking"] == ranking]
        for label, metric in (("NDCG", "ndcg"), ("HR", "hr")):
            rows = part[part["metric"] == metric]
            bars = rows[rows["k"] == k]
            out.append(
                figs.pair(
                    [
                        charts.metric_bars(bars, f"{label}@{k}", ranking=ranking),
                        charts.metric_at_k(rows[rows["k"].notna()], label, ranking=ranking),
                    ]
                )
            )
    out.append(H.heading(3, "By user segment"))
    segments = result.segment_frame()
    seg_figs = []
    for segment in ("history length", "target popularity"):
        part = (
            segments[segments["segment"] == segment].rename(columns={f"ndcg@{k}": "value"})
            if not segments.empty
            else pd.DataFrame(columns=["name", "bucket", "order", "users", "value"])
        )
        seg_figs.append(charts.segment_chart(part, segment, f"NDCG@{k}"))
    out.append(figs.pair(seg_figs))
    out.append(H.heading(3, "Beyond accuracy"))
    beyond = long[long["metric"].isin(BEYOND_METRICS) & (long["k"] == k)]
    beyond = beyond.assign(metric=beyond["metric"].map(METRIC_LABELS))
    out.append(figs.place(charts.beyond_accuracy(beyond, k)))
    basis = result.settings.get("diversity_basis")
    out.append(
        H.paragraph(
            "Coverage: share of items in anyone's list. Gini: inequality of exposure "
            "(0 = even). Novelty: mean self-information of recommended items (bits). "
            f"Diversity: mean pairwise dissimilarity inside a list ({basis or 'not available'}). "
            "Avg. recommended popularity: mean training events of recommended items.",
            "note",
        )
    )
    return out
