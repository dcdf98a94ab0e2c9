"""A report to share: one self-contained HTML page with what RecLens found.

:func:`build_report` writes, for a dataset and optionally a model and a stored
evaluation, one HTML document with five sections: the **dataset** (sources, counts,
time span, density, the cleaning report, events over time, events per user, the
popularity long tail, event types and top categories), the **model card** (settings,
training time, training curves, validation figures with and without the transition
memory), the **evaluation** (protocol, metrics with 95% CIs and significance against
the best baseline, metric@K curves, breakdowns, beyond-accuracy bars), the
**interests** (the map of users by segment, each segment's size, categories and
items) and a few **example users** (history, top-10 with the history items behind
each, side by side with most-popular). Every chart is built by the same function of
:mod:`core.reports.charts` the app uses. :func:`write_report` writes it to a file; the CLI's
``report`` command calls it. The markup helpers live in :mod:`core.reports.markup`, the
evaluation section in :mod:`core.reports.evaluation`, the interests and example users in
:mod:`core.reports.users`.

**Charts: Plotly inlined once.** The page embeds Plotly's own library (4.8 MB, about
4.6 MiB) once, in a ``<script>`` in the head, and each figure as JSON drawn by
``Plotly.newPlot``. The charts stay interactive (hover, zoom, legend toggles) exactly as
in the app, the file opens in any browser without a network, and one library is
shared by every figure, so twenty charts cost little more than one. Static SVG images
would be smaller but need Kaleido and a Chrome build to render, lose the hover
values, and would still have to be regenerated per chart. Figures share one layout
template, written once.

**Fast on any size.** The report reads what is stored: the store's exploration
queries, the model's ``training.json``, a stored evaluation run and the interest
vectors cached in DuckDB (:func:`core.serving.interests.all_interest_vectors` computes and
caches them only when no cache exists yet: a forward pass, never training). It never
trains or evaluates. The long tail keeps at most 2,000 log-spaced ranks and, beyond
5,000 users, the events-per-user histogram is sent as counts per length (the same
bars), so neither grows with the data; the map draws a fixed sample of at most
:data:`core.serving.interests.MAP_POINTS` users (``RECLENS_MAP_POINTS``), and an example
user's timeline their last 500 events.

**Safety.** Every string from data (ids, titles, categories, file names, dataset and
model names, settings) is HTML-escaped (:mod:`core.reports.markup`); text inside figures
is already escaped for Plotly by :mod:`core.reports.charts`, and each figure's JSON has its
``<``, ``>`` and ``&`` escaped, so nothing can close a ``<script>``. The document holds no
absolute path of the machine: source names are the stored file names, a setting that
is a path (a text encoder folder) shows its last part only, and the database's and the
model's folders, should any message carry one, are cut to their last part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.common.columns import MetricKeys
from core.evaluation.runner import model_curves, stored_runs
from core.models.record import TrainingRecord
from core.models.registry import resolve_model
from core.reports import charts
from core.reports import markup as H
from core.reports import users as report_users
from core.reports.evaluation import evaluation_section
from core.reports.markup import ReportError, no_categories
from core.serving.model_data import load_model_data
from core.store import DatasetInfo, Store

LONG_TAIL_POINTS = 2_000  # ranks drawn on the long tail (log-spaced)
SECTIONS = {
    "dataset": "Dataset",
    "model": "Model card",
    "evaluation": "Evaluation",
    "interests": "Interests",
    "users": "Example users",
}


@dataclass
class _Inputs:
    """What a report is about, resolved and checked before any heavy work."""

    info: DatasetInfo
    saved: Any = None  # core.models.checkpoint.SavedModel
    run_id: str | None = None
    users: list[str] | None = None
    warnings: list[str] = field(default_factory=list)


def build_report(
    store: Store,
    dataset: str,
    model: str | None = None,
    evaluation: str | None = None,
    users: list[str] | None = None,
) -> str:
    """The report as one self-contained HTML document.

    Args:
        store: the database.
        dataset: the dataset's name.
        model: a registered model name (or a model directory) of that dataset; without
            one the model card, interests and example users say they need one.
        evaluation: a stored evaluation run id of the dataset; default its latest run.
        users: example user ids; default the first user of each segment (at most 5).

    Raises:
        StoreError: no such dataset or model. CheckpointError: an unloadable model folder.
        ReportError: a model of another dataset, an unknown evaluation run or user, or
            example users without a model.
    """
    return _compose(store, dataset, model, evaluation, users)[0]


def write_report(
    store: Store,
    dataset: str,
    model: str | None = None,
    evaluation: str | None = None,
    users: list[str] | None = None,
    *,
    out: str | Path,
) -> dict[str, Any]:
    """Build the report and write it to ``out`` (atomically: a temporary file, renamed).

    Args: as :func:`build_report`, and ``out`` the HTML file to write (its folder must
    exist: a ReportError otherwise, before any work).

    Returns:
        ``path`` (as given), ``bytes``, ``figures``, ``sections``, ``dataset``, ``model``,
        ``evaluation`` (the run id shown, or None) and ``warnings``.
    """
    target = Path(out)
    if not target.parent.is_dir():
        raise ReportError(f"{target.parent}: no such folder for the report")
    document, meta = _compose(store, dataset, model, evaluation, users)
    data = document.encode("utf-8")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "bytes": len(data), **meta}


def _compose(
    store: Store,
    dataset: str,
    model: str | None,
    evaluation: str | None,
    users: list[str] | None,
) -> tuple[str, dict[str, Any]]:
    """The document and what it holds (for :func:`write_report`'s summary)."""
    inputs = _resolve(store, dataset, model, evaluation, users)
    data = None
    if inputs.saved is not None:
        data = load_model_data(store, inputs.saved)
        report_users.check_users(data, inputs.users)
    info, figs = inputs.info, H.Figures()
    parts = {"dataset": dataset_section(store, info, figs)}
    if inputs.saved is not None:
        parts["model"] = model_section(inputs.saved, figs)
    else:
        parts["model"] = H.absent("No model was given: a model card needs one.")
    parts["evaluation"] = evaluation_section(store, inputs.run_id, info, inputs.saved, figs)
    parts["interests"], parts["users"] = report_users.model_sections(
        store, info, data, inputs.users, figs
    )
    body = _header(inputs) + "".join(
        H.heading(2, SECTIONS[key], key, "first" if n == 0 else None) + html
        for n, (key, html) in enumerate(parts.items())
    )
    name = inputs.saved.name if inputs.saved is not None else None
    document = H.page(f"RecLens report: {info.name}", body, _footer(inputs), figs)
    meta = {
        "dataset": info.name,
        "model": name,
        "evaluation": inputs.run_id,
        "figures": figs.count,
        "sections": list(SECTIONS.values()),
        "warnings": inputs.warnings,
    }
    return _scrub(document, store, inputs), meta


def _resolve(
    store: Store,
    dataset: str,
    model: str | None,
    evaluation: str | None,
    users: list[str] | None,
) -> _Inputs:
    """Check every argument, cheapest first, so a mistake fails before the work starts."""

    info = store.get_dataset(dataset)
    runs = stored_runs(store, info.dataset_id)
    if evaluation is not None and evaluation not in set(runs["run_id"]):
        known = ", ".join(list(runs["run_id"])[:10]) or "none yet"
        raise ReportError(
            f"no stored evaluation {evaluation!r} of dataset {info.name!r}; "
            f"the stored ones (newest first) are: {known}"
        )
    if users is not None and model is None:
        raise ReportError("example users need a model: name one")
    inputs = _Inputs(info, run_id=evaluation or (runs["run_id"].iloc[0] if len(runs) else None))
    inputs.users = None if users is None else [str(u) for u in users]
    if model is not None:
        saved = resolve_model(store, model)
        if saved.dataset != info.name:
            raise ReportError(
                f"model {saved.name!r} was trained on dataset {saved.dataset!r}, not {info.name!r}"
            )
        inputs.saved = saved
        inputs.warnings = list(saved.warnings)
    return inputs


def _header(inputs: _Inputs) -> str:
    """Title, what the report covers, and links to its sections."""
    info, saved = inputs.info, inputs.saved
    about = [f"Dataset {info.name}"]
    about.append(f"model {saved.name}" if saved is not None else "no model")
    about.append(f"evaluation run {inputs.run_id}" if inputs.run_id else "no stored evaluation")
    links = "".join(f'<a href="#{key}">{H.esc(title)}</a>' for key, title in SECTIONS.items())
    warnings = "".join(H.paragraph(f"Warning: {w}.", "note") for w in inputs.warnings)
    return (
        '<header class="top">'
        + H.heading(1, f"RecLens report: {info.name}")
        + H.paragraph(" · ".join(about) + ".", "lead")
        + f'<nav class="toc">{links}</nav>'
        + warnings
        + "</header>"
    )


def _footer(inputs: _Inputs) -> str:
    """Generated by RecLens, when, and from which dataset version and model."""
    info, saved = inputs.info, inputs.saved
    parts = [
        f"Generated by RecLens on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"dataset {info.name} (fingerprint {info.fingerprint or '—'})",
        f"model {saved.name} (saved {saved.training.saved or '—'})"
        if saved is not None
        else "no model",
    ]
    if inputs.run_id:
        parts.append(f"evaluation run {inputs.run_id}")
    return H.esc(" · ".join(parts) + ".")


def _scrub(document: str, store: Store, inputs: _Inputs) -> str:
    """The document without the machine's own folders (the database's, the model's),
    should any message have carried one: each becomes its last part."""
    folders = {str(Path(store.path).resolve().parent), str(Path(store.path).parent)}
    if inputs.saved is not None:
        folders |= {str(inputs.saved.path), str(Path(inputs.saved.path).resolve())}
    for folder in sorted(folders, key=len, reverse=True):
        if len(folder) > 4 and os.path.isabs(folder):
            for form in (folder, H.esc(folder)):
                document = document.replace(form, "…/" + Path(folder).name)
    return document


# --------------------------------------------------------------------------- the dataset


def dataset_section(store: Store, info: DatasetInfo, figs: H.Figures) -> str:
    """Sources, headline figures, the cleaning report and the Data page's charts."""
    stats = store.dataset_stats(info.name)
    did = info.dataset_id
    first, last = stats["first_event"], stats["last_event"]
    span = f"events from {first[:10]} to {last[:10]}" if first else "no timestamps (file order)"
    lengths = stats["events_per_user"]
    out = [
        H.paragraph(
            f"Source: {', '.join(info.sources) or '—'} · {span} · "
            f"loaded {stats['created'].replace('T', ' ')}.",
            "note",
        ),
        H.facts(
            [
                ("Users", H.fmt_int(stats["users"])),
                ("Items", H.fmt_int(stats["items"])),
                ("Events", H.fmt_int(stats["events"])),
                ("Density", f"{stats['density']:.3%}"),
                ("Time span", _time_span(first, last)),
                ("Popularity Gini", f"{stats['popularity_gini']:.2f}"),
                ("Events per user (median)", f"{lengths['median'] or 0:g}"),
                (
                    "Event types",
                    H.fmt_int(stats["event_types"]) if stats["event_types"] else "none",
                ),
            ]
        ),
        H.heading(3, "Cleaning report of the load"),
        _cleaning(info.report, info.n_item_rows),
    ]
    over_time = store.events_over_time(did)
    per_user = _compact_histogram(charts.events_per_user(store.events_per_user(did)))
    first_row = [
        figs.place(charts.events_over_time(over_time))
        if not over_time.empty
        else H.absent("No events over time: this dataset has no timestamps (file order)."),
        per_user,
    ]
    tail = _long_tail_points(store.item_popularity(did))
    types = store.event_type_mix(did)
    second_row = [
        charts.popularity_long_tail(tail, stats["popularity_gini"]),
        figs.place(charts.event_type_mix(types))
        if not (types.empty or list(types["event_type"]) == ["(none)"])
        else H.absent("No event types: no event type column was mapped."),
    ]
    out += [figs.pair(first_row), figs.pair(second_row)]
    top = store.top_categories(did)
    if top.empty:
        out.append(H.absent(no_categories(info, "The top categories chart")))
    else:
        out.append(figs.place(charts.top_categories(top)))
    return "".join(out)


def _time_span(first: str | None, last: str | None) -> str:
    """Days (or years beyond two) between the first and last event; "—" without times."""
    if not first or not last:
        return "—"
    days = (pd.Timestamp(last[:10]) - pd.Timestamp(first[:10])).days
    if days > 730:
        return f"{days / 365.25:.1f} years"
    return "1 day" if days == 1 else f"{days:,} days"


def _cleaning(report: dict[str, Any], item_rows: int) -> str:
    """The stored cleaning report: rows read and kept, drops by reason, examples, notes."""
    if not report:
        return H.absent("This dataset's load left no cleaning report.")
    dropped = report.get("dropped") or {}
    out = [
        H.facts(
            [
                ("Rows read", H.fmt_int(report.get("rows_read"))),
                ("Events kept", H.fmt_int(report.get("events_loaded"))),
                ("Rows dropped", H.fmt_int(sum(v or 0 for v in dropped.values()))),
                ("Item rows", H.fmt_int(item_rows)),
            ]
        ),
        H.table(
            [{"reason": k.replace("_", " "), "rows": int(v or 0)} for k, v in dropped.items()],
            numeric=["rows"],
        ),
    ]
    examples = report.get("examples") or []
    if examples:
        out.append(H.paragraph("Examples of rejected rows (line numbers in the file):", "note"))
        out.append(H.table(examples, ["line", "problem", "text"], numeric=["line"]))
    for note in [report.get("time"), *(report.get("notes") or [])]:
        if note:
            out.append(H.paragraph(str(note), "note"))
    return "".join(out)


def _long_tail_points(frame: pd.DataFrame, limit: int = LONG_TAIL_POINTS) -> pd.DataFrame:
    """At most ``limit`` rows of the popularity-by-rank frame (ranks 1..n in order),
    log-spaced and with the first and last rank, so the log-log line looks the same."""
    if len(frame) <= limit:
        return frame
    ranks = np.unique(np.geomspace(1, len(frame), limit).round().astype(np.int64))
    return frame.iloc[ranks - 1]


def _compact_histogram(fig, limit: int = 5_000):
    """A histogram of one value per user sent as counts per distinct value instead (the
    same bars, summed): its size no longer grows with the number of users."""
    trace = fig.data[0] if fig.data else None
    if trace is None or trace.type != "histogram" or trace.x is None or len(trace.x) <= limit:
        return fig
    values, counts = np.unique(np.asarray(trace.x), return_counts=True)
    trace.update(x=values, y=counts, histfunc="sum")
    return fig


# --------------------------------------------------------------------------- the model


def model_section(saved, figs: H.Figures) -> str:
    """Settings, training time, validation figures with and without the memory, curves."""

    t = saved.training
    out = [
        H.facts(
            [
                ("Trained", str(t.saved or "—").replace("T", " ")[:16]),
                ("Training time", _duration(t.seconds)),
                ("Epochs run", H.fmt_int(t.epochs)),
                ("Best epoch", H.fmt_int(t.best_epoch)),
                ("Items the model knows", H.fmt_int(saved.config.n_items)),
                ("Validation users", H.fmt_int(t.validation_users)),
            ]
        ),
        H.heading(3, "Validation (full ranking, seen items excluded)"),
        H.table(validation_rows(t), numeric=["NDCG@10", "HR@10"]),
        H.paragraph(_memory_sentence(t), "note"),
    ]
    if t.stopped_early or t.interrupted:
        how = "stopped early (no gain in validation NDCG@10)" if t.stopped_early else ""
        how = how or "was interrupted; the best complete epoch was kept"
        out.append(H.paragraph(f"Training {how}.", "note"))
    history, memory = model_curves(str(saved.path))
    title = f"Training of {saved.name}"
    out.append(figs.place(charts.training_curves(history, title, memory)))
    out.append(H.heading(3, "Settings"))
    out.append(H.table(settings_rows(saved), ["setting", "value"]))
    return "".join(out)


def validation_rows(training: TrainingRecord) -> list[dict[str, Any]]:
    """Validation NDCG@10 / HR@10 of the saved model and of the Transformer alone."""
    metrics = training.metrics
    if training.memory_kept:
        return [
            {
                "model": "with the transition memory (as saved)",
                "NDCG@10": H.fmt_num(metrics.get(MetricKeys.NDCG)),
                "HR@10": H.fmt_num(metrics.get(MetricKeys.HR)),
            },
            {
                "model": "the Transformer alone",
                "NDCG@10": H.fmt_num(training.without_memory),
                "HR@10": H.fmt_num(training.best_entry().get(MetricKeys.HR)),
            },
        ]
    return [
        {
            "model": "the Transformer alone (as saved: no transition memory)",
            "NDCG@10": H.fmt_num(metrics.get(MetricKeys.NDCG)),
            "HR@10": H.fmt_num(metrics.get(MetricKeys.HR)),
        }
    ]


def _memory_sentence(training: TrainingRecord) -> str:
    memory = training.transitions
    if training.memory_kept:
        return (
            f"Transition memory kept: {H.fmt_int(memory.get('pairs'))} recorded (item, next item) "
            f"pairs, prior weight alpha {memory.get('alpha'):g}, picked on the validation targets."
        )
    if memory:
        return "Transition memory left out: it did not raise validation NDCG@10."
    return "No transition memory was tried for this model."


def settings_rows(saved) -> list[dict[str, str]]:
    """The training settings, then what training decided (loss, text features, types)."""
    t = saved.training
    config = dict(t.config)
    config.update(
        {
            "loss used": t.loss_mode,
            "text features": t.text_encoder or "none",
            "event types embedded": ", ".join(map(str, t.event_types)) or "none",
            "users": t.users,
            "dataset fingerprint": t.dataset_fingerprint,
        }
    )
    return [{"setting": k, "value": _safe_setting(v)} for k, v in config.items()]


def _safe_setting(value: Any) -> str:
    """A setting as text; a local path shows its last part only (no machine's folders).

    >>> _safe_setting("/home/me/encoders/minilm"), _safe_setting(None), _safe_setting(0.5)
    ('minilm (a local folder)', '—', '0.5')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if isinstance(value, str) and (os.path.isabs(text) or text.startswith(("~", "./", "../"))):
        return f"{Path(text).name} (a local folder)"
    return text


def _duration(seconds: Any) -> str:
    """ "3.4 s", "34 s", "2.5 min", "1.2 h"; "—" when unknown."""
    if not isinstance(seconds, int | float):
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
