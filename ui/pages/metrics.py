"""Metrics page: honest full-ranking evaluation of saved models against strong baselines.

UI only: the evaluation is :func:`core.evaluation.runner.run`, the figures :mod:`core.reports.charts`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.evaluation.accuracy import KS
from core.evaluation.beyond_accuracy import BEYOND_METRICS
from core.evaluation.results import METRIC_LABELS, EvalConfig, Evaluation, describe
from core.evaluation.runner import load, model_curves, run, stored_runs
from core.models.baselines import BASELINES, DESCRIPTIONS, FAST_BASELINES
from core.models.checkpoint import CheckpointError
from core.models.registry import model_warning
from core.reports import charts
from core.reports.page import ReportError, build_report
from core.store import StoreError
from ui.common import ACTIVE_MODEL, fmt_int, get_store, md_escape, require_dataset

RUN_KEY = "metrics_run_id"
REPORT_KEY = "metrics_report"  # (what it was built for, the HTML bytes)
METRICS = {"NDCG": "ndcg", "HR": "hr", "Recall": "recall", "Precision": "precision"}


def run_section(info) -> None:
    """Pick models, baselines and the protocol; run an evaluation with progress."""
    with st.container(border=True):
        st.subheader("Run an evaluation")
        cols = st.columns(2)
        models = _model_choice(info, cols[0])
        baselines = cols[1].multiselect(
            "Baselines",
            list(BASELINES),
            default=list(FAST_BASELINES),
            key="eval_baselines",
            format_func=lambda b: f"{b}: {DESCRIPTIONS[b]}",
            help="Each is fitted on the same training data as the models. sasrec trains a "
            "causal Transformer with the first model's settings (as long as that model took).",
        )
        config = _protocol(info)
        if not st.button("Run evaluation", type="primary", key="run_eval"):
            return
    if not models and not baselines:
        st.warning("Pick at least one model or baseline.")
        return
    _run_evaluation(info, models, baselines, config)


def _model_choice(info, column) -> list[str]:
    """The saved models to evaluate (the active one first picked), each one's warning."""
    store = get_store()
    registered = {m.name: m for m in store.list_models(info.name)}
    names = list(registered)
    active = st.session_state.get(ACTIVE_MODEL)
    models = column.multiselect(
        "Models",
        names,
        default=[active] if active in names else names[:1],
        key="eval_models",
        help="Saved models of this dataset (train more on the Train page).",
    )
    for model in models:
        warning = model_warning(store, registered[model])
        if warning:
            st.warning(
                md_escape(f"{model}: {warning}.")
                + " An evaluation needs the items it was trained on: if they changed, "
                "train it again."
            )
    return models


def _protocol(info) -> EvalConfig:
    """The split, K, seen items and sampled negatives, in an expander."""
    with st.expander("Protocol"):
        p = st.columns(4)
        split = p[0].radio(
            "Split",
            ["loo", "time"],
            format_func=lambda s: {"loo": "leave-one-out", "time": "temporal"}[s],
            key="eval_split",
            disabled=not info.has_time,
            help="Leave-one-out: each user's last item is the test target. Temporal: "
            "train before a cut-off time, test on each user's next item after it "
            "(needs timestamps).",
        )
        k = p[1].selectbox("K", list(KS), index=2, key="eval_k")
        include_seen = p[2].checkbox(
            "Rank the user's own items too",
            key="eval_include_seen",
            help="By default items the user already interacted with are not ranked.",
        )
        sampled = p[3].number_input(
            "Sampled negatives (0 = off)",
            0,
            10_000,
            0,
            step=50,
            key="eval_sampled",
            help="Also report metrics against N negatives sampled by popularity, as "
            "many papers do. They flatter every model and are always labelled sampled.",
        )
    return EvalConfig(split=split, k=int(k), exclude_seen=not include_seen, sampled=int(sampled))


def _run_evaluation(info, models: list[str], baselines: list[str], config: EvalConfig) -> None:
    """Evaluate with a progress bar; the new run becomes the one shown below."""
    with st.status("Evaluating…", expanded=True) as status:
        bar = st.progress(0.0, text="starting…")
        try:
            result, warnings = run(
                get_store(),
                models=models,
                dataset=info.name,
                baselines=baselines,
                config=config,
                progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m),
            )
        except (ValueError, StoreError, CheckpointError) as exc:
            status.update(label="Evaluation failed", state="error")
            st.error(md_escape(str(exc)))
            return
        for warning in warnings:
            st.warning(md_escape(warning))
        status.update(
            label=f"Evaluated {len(result.results)} models and baselines on "
            f"{fmt_int(result.settings['users_evaluated'])} users",
            state="complete",
        )
    st.session_state[RUN_KEY] = result.settings["run_id"]


def pick_run(info) -> Evaluation | None:
    """The stored run to show: the one just made, or one picked from the list."""
    runs = stored_runs(get_store(), info.dataset_id)
    if runs.empty:
        st.info("No evaluations of this dataset yet: run one above.")
        return None
    ids = list(runs["run_id"])
    labels = {
        r.run_id: f"{r.created:%Y-%m-%d %H:%M:%S} · {r.split} · {', '.join(r.scorers)}"
        for r in runs.itertuples()
    }
    wanted = st.session_state.get(RUN_KEY)
    run_id = st.selectbox(
        "Stored evaluation",
        ids,
        index=ids.index(wanted) if wanted in ids else 0,
        format_func=labels.get,
        key="eval_pick",
    )
    return load(get_store(), run_id)


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Each metric with its 95% interval in one cell, "0.402 [0.357, 0.458]"
    (the CSV download keeps the numbers apart)."""
    out = table[[c for c in table.columns if not c.endswith((" low", " high"))]].copy()
    for column in out.columns:
        if f"{column} low" not in table.columns:
            continue
        out[column] = [
            "" if pd.isna(v) else f"{v:.4f}" + ("" if pd.isna(lo) else f" [{lo:.4f}, {hi:.4f}]")
            for v, lo, hi in zip(
                table[column], table[f"{column} low"], table[f"{column} high"], strict=True
            )
        ]
    return out


def results_section(result: Evaluation) -> None:
    """A stored evaluation: the table, the charts by metric, by segment and beyond
    accuracy, and the training curves of its models."""
    k = result.settings["k"]
    long = result.long_frame()
    _results_table(result, long)
    _metric_charts(result, long, k)
    _segment_charts(result, k)
    _beyond_accuracy(long, k, result.settings.get("diversity_basis"))
    _training_curves(result)


def _results_table(result: Evaluation, long: pd.DataFrame) -> None:
    """The protocol, the figures with their intervals, and the CSV of every metric."""
    settings = result.settings
    st.markdown(f"**Protocol:** {md_escape(describe(settings))}")
    for note in settings.get("notes", []) + settings.get("warnings", []):
        st.caption(md_escape(note))
    st.caption(
        f"Confidence intervals: {settings['ci']}. Significance: {settings['significance']}"
        + (
            f"; best baseline: {md_escape(settings['best_baseline'])}"
            if "best_baseline" in settings
            else ""
        )
        + ". Ties are counted as their expected position."
    )
    st.dataframe(with_intervals(result.table(settings["k"])), hide_index=True, key="eval_table")
    st.download_button(
        "Download all metrics (CSV)",
        long.to_csv(index=False).encode(),
        file_name=f"reclens-evaluation-{settings.get('run_id', 'run')}.csv",
        mime="text/csv",
        key="eval_csv",
    )


def _metric_charts(result: Evaluation, long: pd.DataFrame, k: int) -> None:
    """One metric, picked: bars at K (significant ones starred) and the curve over K,
    full ranking and, when run, sampled."""
    label = st.radio("Metric", list(METRICS), horizontal=True, key="eval_metric")
    metric = METRICS[label]
    cols = st.columns(2)
    bars = long[(long["metric"] == metric) & (long["k"] == k) & (long["ranking"] == "full")]
    stars = {
        name: "*" if res.get("significance", {}).get("significant") else ""
        for name, res in result.results.items()
    }
    bars = bars.assign(marker=bars["name"].map(stars))
    cols[0].plotly_chart(charts.metric_bars(bars, f"{label}@{k}"), key="eval_bars")
    curve = long[(long["metric"] == metric) & (long["ranking"] == "full") & long["k"].notna()]
    cols[1].plotly_chart(charts.metric_at_k(curve, label), key="eval_curve")
    if result.settings.get("sampled"):
        sampled = long[(long["metric"] == metric) & (long["ranking"] == "sampled")]
        cols = st.columns(2)
        cols[0].plotly_chart(
            charts.metric_bars(sampled[sampled["k"] == k], f"{label}@{k}", ranking="sampled"),
            key="eval_sampled_bars",
        )
        cols[1].plotly_chart(
            charts.metric_at_k(sampled[sampled["k"].notna()], label, ranking="sampled"),
            key="eval_sampled_curve",
        )
    st.caption("* significantly different from the best baseline (p < 0.05).")


def _segment_charts(result: Evaluation, k: int) -> None:
    st.subheader("By user segment")
    segments = result.segment_frame()
    cols = st.columns(2)
    for col, segment in zip(cols, ("history length", "target popularity"), strict=True):
        part = (
            segments[segments["segment"] == segment].rename(columns={f"ndcg@{k}": "value"})
            if not segments.empty
            else pd.DataFrame(columns=["name", "bucket", "order", "users", "value"])
        )
        col.plotly_chart(
            charts.segment_chart(part, segment, f"NDCG@{k}"), key=f"eval_seg_{segment}"
        )


def _beyond_accuracy(long: pd.DataFrame, k: int, basis: str | None) -> None:
    st.subheader("Beyond accuracy")
    beyond = long[long["metric"].isin(BEYOND_METRICS) & (long["k"] == k)]
    beyond = beyond.assign(metric=beyond["metric"].map(METRIC_LABELS))
    st.plotly_chart(charts.beyond_accuracy(beyond, k), key="eval_beyond")
    st.caption(
        "Coverage: share of items in anyone's list. Gini: inequality of exposure (0 = even). "
        "Novelty: mean self-information of recommended items (bits). Diversity: mean pairwise "
        f"dissimilarity inside a list ({md_escape(basis) if basis else 'not available'}). "
        "Avg. recommended popularity: mean training events of recommended items."
    )


def _training_curves(result: Evaluation) -> None:
    """Loss and validation NDCG@10 by epoch of one evaluated model, picked."""
    models = [n for n, r in result.results.items() if r.get("kind") == "model"]
    if not models:
        return
    st.subheader("Training")
    name = st.selectbox("Model", models, key="eval_curve_model")
    info = get_store().find_model(name)
    history, memory = model_curves(info.path) if info else ([], None)
    st.plotly_chart(
        charts.training_curves(history, f"Training of {name}", memory), key="eval_training"
    )


def report_section(info, chosen: Evaluation | None) -> None:
    """A self-contained HTML report of the dataset, the active model and the evaluation
    shown, built only when asked for (it reads stored results; nothing is retrained)."""
    store = get_store()
    active = st.session_state.get(ACTIVE_MODEL)
    model = active if active and store.find_model(active) is not None else None
    if model is not None and store.get_model(model).dataset != info.name:
        model = None
    run_id = chosen.settings.get("run_id") if chosen is not None else None
    wanted = (info.name, info.fingerprint, model, run_id)
    st.subheader("Share")
    st.caption(
        "One HTML file to send or print, readable offline in any browser: the dataset, "
        + (f"the model card of **{md_escape(model)}**, " if model else "")
        + ("this evaluation, " if run_id else "")
        + "the interests by segment and a few example users, with the same charts as here. "
        "Also `python -m core report --dataset NAME --out report.html`."
    )
    if st.button("Build the report", key="report_build"):
        with st.spinner("Building the report from stored results…"):
            try:
                html = build_report(store, info.name, model, run_id)
            except (ReportError, StoreError, CheckpointError) as exc:
                st.error(md_escape(str(exc)))
                return
        st.session_state[REPORT_KEY] = (wanted, html.encode("utf-8"))
    built = st.session_state.get(REPORT_KEY)
    if built and built[0] == wanted:
        st.download_button(
            f"Download the report (HTML, {len(built[1]) / 1e6:.1f} MB)",
            built[1],
            file_name=f"reclens-report-{info.name}.html",
            mime="text/html",
            key="report_download",
            on_click="ignore",
        )


info = require_dataset()
st.title("Metrics")
st.caption(
    f"How well do models predict each user's next item on **{md_escape(info.name)}** "
    f"({fmt_int(info.n_users)} users, {fmt_int(info.n_items)} items)? Full ranking over "
    "every item by default, against baselines fitted on the same training data."
)
run_section(info)
chosen = pick_run(info)
if chosen is not None:
    results_section(chosen)
report_section(info, chosen)
