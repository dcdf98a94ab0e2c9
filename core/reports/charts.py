"""Plotly figure builders: pure functions from data frames to labelled figures.

Pages only place these figures; tests check them without a browser. Every chart
labels its axes (with units) and says what it counts. Text that came from data (ids,
titles, categories, event types) is escaped for Plotly here (:func:`core.common.escape.plotly`),
so a title holding ``<a href>`` shows as written instead of as a link.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.common.columns import Columns
from core.common.escape import plotly as plotly_text
from core.common.escape import plotly_values

ACCENT = "#4C6EF5"
_LAYOUT = dict(
    margin=dict(l=10, r=10, t=50, b=10),
    height=330,
    template="plotly_white",
    title_font_size=15,
)


def _escaped(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy of ``frame`` whose text ``columns`` (those it has) are escaped for Plotly."""
    return frame.assign(**{c: plotly_values(frame[c]) for c in columns if c in frame})


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def events_over_time(frame: pd.DataFrame) -> go.Figure:
    """Events per period; ``frame`` has columns ``period`` and ``events``."""
    title = "Events over time"
    if frame.empty:
        return _empty(title, "This dataset has no timestamps: events are in file order.")
    step = _period_name(frame["period"])
    fig = px.bar(frame, x="period", y="events", title=f"{title} (per {step})")
    fig.update_traces(marker_color=ACCENT)
    fig.update_layout(xaxis_title="date", yaxis_title=f"events per {step}", bargap=0.05, **_LAYOUT)
    return fig


def _period_name(periods: pd.Series) -> str:
    if len(periods) < 2:
        return "day"
    gap = pd.Series(pd.to_datetime(periods)).diff().median()
    if gap >= pd.Timedelta(days=28):
        return "month"
    return "week" if gap >= pd.Timedelta(days=7) else "day"


def events_per_user(frame: pd.DataFrame) -> go.Figure:
    """Histogram of history lengths; ``frame`` has one row per user, column ``events``."""
    title = "Events per user"
    if frame.empty:
        return _empty(title, "No users yet.")
    median = float(frame["events"].median())
    fig = px.histogram(frame, x="events", nbins=60, title=f"{title} (median {median:g})")
    fig.update_traces(marker_color=ACCENT)
    fig.add_vline(x=median, line_dash="dash", line_color="#E8590C")
    fig.update_layout(xaxis_title="events in the user's history", yaxis_title="users", **_LAYOUT)
    return fig


def popularity_long_tail(frame: pd.DataFrame, gini: float) -> go.Figure:
    """Item popularity by rank on log-log axes; ``frame`` has ``rank`` and ``events``."""
    title = f"Item popularity long tail (Gini {gini:.2f})"
    if frame.empty:
        return _empty(title, "No items yet.")
    fig = px.line(frame, x="rank", y="events", title=title, log_x=True, log_y=True)
    fig.update_traces(line_color=ACCENT)
    # 1-2-5 ticks written in full (Plotly's own log ticks label 200 as a bare "2")
    fig.update_xaxes(**_log_ticks(frame["rank"]))
    fig.update_yaxes(**_log_ticks(frame["events"]))
    fig.update_layout(
        xaxis_title="item popularity rank (log)", yaxis_title="events per item (log)", **_LAYOUT
    )
    return fig


def _log_ticks(values: pd.Series) -> dict:
    """Tick values 1, 2, 5, 10, 20, 50... covering ``values`` (positive), labelled in full
    (powers of ten only over more than four decades).

    >>> _log_ticks(pd.Series([3, 180]))["ticktext"]
    ['2', '5', '10', '20', '50', '100', '200']
    >>> _log_ticks(pd.Series([1, 2_000_000]))["ticktext"][-2:]
    ['100,000', '1,000,000']
    """
    low, high = max(float(values.min()), 1e-9), max(float(values.max()), 1.0)
    steps = (1, 2, 5) if high / low <= 1e4 else (1,)
    ticks = [
        m * 10**e
        for e in range(int(np.floor(np.log10(low))), int(np.log10(high)) + 1)
        for m in steps
    ]
    below = [t for t in ticks if t <= low]
    shown = below[-1:] + [t for t in ticks if low < t <= high]
    above = [t for t in ticks if t > high][:1]
    shown += above
    return {"tickvals": shown, "ticktext": [f"{t:,}" for t in shown]}


def event_type_mix(frame: pd.DataFrame) -> go.Figure:
    """Share of each event type; ``frame`` has ``event_type`` and ``events``."""
    title = "Event types"
    if frame.empty or (len(frame) == 1 and frame["event_type"].iloc[0] == "(none)"):
        return _empty(title, "No event type column was mapped.")
    frame = _escaped(frame, "event_type")
    fig = px.bar(frame, x="events", y="event_type", orientation="h", title=title, text="events")
    fig.update_traces(
        marker_color=ACCENT, texttemplate="%{text:,}", textposition="outside", cliponaxis=False
    )
    fig.update_layout(
        xaxis_title="events",
        yaxis_title="event type",
        yaxis_autorange="reversed",
        xaxis_range=[0, float(frame["events"].max()) * 1.18],
        **_LAYOUT,
    )
    return fig


def top_categories(frame: pd.DataFrame) -> go.Figure:
    """Events per item category; ``frame`` has ``category`` and ``events``."""
    title = "Top categories"
    if frame.empty:
        return _empty(title, "No item categories: upload an item file with categories.")
    frame = _escaped(frame, "category")
    fig = px.bar(frame, x="events", y="category", orientation="h", title=title)
    fig.update_traces(marker_color=ACCENT)
    fig.update_layout(
        xaxis_title="events on items of the category",
        yaxis_title="category",
        yaxis_autorange="reversed",
        **{**_LAYOUT, "height": max(330, 22 * len(frame) + 80)},
    )
    return fig


def training_curves(
    epochs: list[dict], title: str = "Training", with_memory: float | None = None
) -> go.Figure:
    """Loss and validation NDCG@10 per epoch; ``epochs`` are validate-phase progress records.

    ``with_memory``: the saved model's validation NDCG@10 with its transition memory,
    drawn as a dashed level across the epochs (the curve is the Transformer's own).
    """
    title = plotly_text(title)  # it may name a model or an item
    if not epochs:
        return _empty(title, "The first epoch has not finished yet.")
    frame = pd.DataFrame(epochs)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=frame["epoch"],
            y=frame["loss"],
            name="training loss",
            mode="lines+markers",
            line_color="#868E96",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=frame["epoch"],
            y=frame["val_ndcg10"],
            name="validation NDCG@10",
            mode="lines+markers",
            line_color=ACCENT,
            yaxis="y2",
        )
    )
    if with_memory is not None:
        fig.add_trace(
            go.Scatter(
                x=[frame["epoch"].min(), frame["epoch"].max()],
                y=[with_memory, with_memory],
                name="validation NDCG@10 with the transition memory",
                # one epoch: a point (a line from an epoch to itself would not show)
                mode="lines" if frame["epoch"].nunique() > 1 else "markers",
                line=dict(color=ACCENT, dash="dash"),
                marker=dict(symbol="diamond-open", size=10),
                yaxis="y2",
            )
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="epoch", dtick=1 if len(frame) <= 20 else None),
        yaxis=dict(title="loss (cross-entropy)"),
        yaxis2=dict(
            title="NDCG@10 (full ranking)",
            overlaying="y",
            side="right",
            rangemode="tozero",
            # its own round ticks (Streamlit's theme would align them to the loss axis)
            tickmode="auto",
            nticks=6,
            tickformat=".2f",
            showgrid=False,
        ),
        legend=dict(orientation="h", y=-0.25),
        **_LAYOUT,
    )
    return fig


# ------------------------------------------------------------------ evaluation (Metrics page)

_NAME_COLORS = px.colors.qualitative.Safe


def _name_colors(names: list[str]) -> dict[str, str]:
    """One colour per model/baseline name, the same in every chart of a page."""
    return {n: _NAME_COLORS[i % len(_NAME_COLORS)] for i, n in enumerate(sorted(set(names)))}


def metric_bars(frame: pd.DataFrame, metric: str, ranking: str = "full") -> go.Figure:
    """One bar per model/baseline with its 95 % CI as error bars.

    ``frame`` has ``name``, ``value``, ``low``, ``high`` and optionally ``marker`` (text
    shown above a bar, e.g. a significance star); ``ranking`` is ``full`` or ``sampled``.
    """
    title = f"{metric} ({ranking} ranking, 95% CI)"
    if frame.empty:
        return _empty(title, "No results yet: run an evaluation.")
    frame = _escaped(frame, "name")  # model names are slugs; escaped all the same
    frame = frame.sort_values("value", ascending=False)
    colors = _name_colors(list(frame["name"]))
    fig = go.Figure(
        go.Bar(
            x=frame["name"],
            y=frame["value"],
            marker_color=[colors[n] for n in frame["name"]],
            error_y=dict(
                type="data",
                symmetric=False,
                array=(frame["high"] - frame["value"]).clip(lower=0),
                arrayminus=(frame["value"] - frame["low"]).clip(lower=0),
            ),
            text=frame["marker"] if "marker" in frame else None,
            textposition="outside",
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="model / baseline", yaxis_title=metric, **_LAYOUT)
    return fig


def metric_at_k(frame: pd.DataFrame, metric: str, ranking: str = "full") -> go.Figure:
    """``metric``@K for every K, one line per model/baseline; ``frame`` has ``name``, ``k``,
    ``value``."""
    title = f"{metric}@K ({ranking} ranking)"
    if frame.empty:
        return _empty(title, "No results yet: run an evaluation.")
    frame = _escaped(frame, "name")  # model names are slugs; escaped all the same
    colors = _name_colors(list(frame["name"]))
    fig = px.line(
        frame.sort_values("k"),
        x="k",
        y="value",
        color="name",
        markers=True,
        title=title,
        color_discrete_map=colors,
    )
    fig.update_layout(
        xaxis=dict(title="K (list length)", type="log", tickvals=sorted(frame["k"].unique())),
        yaxis_title=f"{metric}@K",
        legend_title_text="",
        **_LAYOUT,
    )
    return fig


def segment_chart(frame: pd.DataFrame, segment: str, metric: str) -> go.Figure:
    """``metric`` per bucket of ``segment`` (history length, target popularity), grouped bars.

    ``frame`` has ``name``, ``bucket``, ``order``, ``users`` and a ``value`` column.
    """
    title = f"{metric} by {segment} (full ranking)"
    if frame.empty:
        return _empty(title, "No results yet: run an evaluation.")
    frame = _escaped(frame, "name")  # model names are slugs; escaped all the same
    frame = frame.sort_values(["order", "name"])
    users = frame.drop_duplicates("bucket").set_index("bucket")["users"]
    labels = {b: f"{b}<br>({int(u):,} users)" for b, u in users.items()}
    frame = frame.assign(label=frame["bucket"].map(labels))
    fig = px.bar(
        frame,
        x="label",
        y="value",
        color="name",
        barmode="group",
        title=title,
        color_discrete_map=_name_colors(list(frame["name"])),
        hover_data={"users": True, "label": False},
    )
    fig.update_layout(
        xaxis_title=f"{segment} bucket (users evaluated)",
        yaxis_title=metric,
        legend_title_text="",
        **_LAYOUT,
    )
    return fig


def beyond_accuracy(frame: pd.DataFrame, k: int) -> go.Figure:
    """One small bar chart per beyond-accuracy metric (each has its own scale).

    ``frame`` has ``name``, ``metric`` (display label) and ``value``.
    """
    from plotly.subplots import make_subplots

    title = f"Beyond accuracy of the top-{k} lists (all users)"
    if frame.empty:
        return _empty(title, "No results yet: run an evaluation.")
    frame = _escaped(frame, "name")  # model names are slugs; escaped all the same
    metrics = list(dict.fromkeys(frame["metric"]))
    colors = _name_colors(list(frame["name"]))
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    for col, metric in enumerate(metrics, start=1):
        part = frame[frame["metric"] == metric]
        fig.add_trace(
            go.Bar(
                x=part["name"],
                y=part["value"],
                marker_color=[colors[n] for n in part["name"]],
                showlegend=False,
                hovertemplate="%{x}: %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_annotations(font_size=12)
    fig.update_layout(title=title, **{**_LAYOUT, "height": 360})
    return fig


# --------------------------------------------------------------------------- interests


def category_affinity(frame: pd.DataFrame, top: int = 12) -> go.Figure:
    """The model's category affinity next to the history's own mix.

    ``frame`` has ``category``, ``affinity`` (next-item probability mass) and
    ``history_share`` (share of the history's events); the ``top`` by affinity are shown.
    """
    title = "Category affinity: model vs history"
    if frame.empty:
        return _empty(title, "The items of this dataset have no categories.")
    shown = _escaped(frame.sort_values("affinity", ascending=False).head(top), "category")
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            y=shown["category"],
            x=shown["affinity"],
            name="model: P(next item in category)",
            orientation="h",
            marker_color=ACCENT,
        )
    )
    fig.add_trace(
        go.Bar(
            y=shown["category"],
            x=shown["history_share"],
            name="history: share of events",
            orientation="h",
            marker_color="#ADB5BD",
        )
    )
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="share (0-1)",
        yaxis_title="category",
        yaxis_autorange="reversed",
        legend=dict(orientation="h", y=-0.2),
        **{**_LAYOUT, "height": max(330, 34 * len(shown) + 120)},
    )
    return fig


def interest_drift(steps: pd.DataFrame, affinity: pd.DataFrame) -> go.Figure:
    """Interest after every history step, with shift markers.

    ``steps`` has ``step``, ``cosine_change``, ``is_shift`` (and ``title``/``item_id``,
    ``dominant``); ``affinity`` is long: ``step``, ``category``, ``affinity`` (may be empty).
    """
    title = "Interest drift over the history"
    if steps.empty:
        return _empty(title, "This user has no history the model knows.")
    from plotly.subplots import make_subplots

    with_cats = not affinity.empty
    fig = make_subplots(
        rows=2 if with_cats else 1,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35] if with_cats else None,
        vertical_spacing=0.08,
    )
    steps = _escaped(steps, "title", Columns.ITEM, "dominant")
    affinity = _escaped(affinity, "category")
    hover = steps["title"].where(steps["title"].astype(bool), steps[Columns.ITEM])
    if with_cats:
        for i, (category, part) in enumerate(affinity.groupby("category", sort=False)):
            fig.add_trace(
                go.Scatter(
                    x=part["step"],
                    y=part["affinity"],
                    mode="lines",
                    name=str(category),
                    line=dict(color=px.colors.qualitative.Set2[i % 8]),
                ),
                row=1,
                col=1,
            )
        fig.update_yaxes(title_text="P(next item in category)", row=1, col=1)
    change_row = 2 if with_cats else 1
    fig.add_trace(
        go.Bar(
            x=steps["step"],
            y=steps["cosine_change"],
            name="step change (1 - cosine)",
            marker_color="#868E96",
            hovertext=hover,
        ),
        row=change_row,
        col=1,
    )
    shifts = steps[steps["is_shift"]]
    for step in shifts["step"]:
        fig.add_vline(x=float(step), line_dash="dash", line_color="#E8590C")
    if not shifts.empty:
        fig.add_trace(
            go.Scatter(
                x=shifts["step"],
                y=shifts["cosine_change"].fillna(0),
                mode="markers",
                name="interest shift",
                marker=dict(symbol="triangle-down", size=12, color="#E8590C"),
                hovertext=shifts.get("dominant"),
            ),
            row=change_row,
            col=1,
        )
    fig.update_yaxes(title_text="1 - cosine", row=change_row, col=1)
    fig.update_xaxes(title_text="history step (event number)", row=change_row, col=1)
    fig.update_layout(
        title=title + (f" ({len(shifts)} shift(s))" if len(shifts) else ""),
        legend=dict(orientation="h", y=-0.25),
        **{**_LAYOUT, "height": 460 if with_cats else 330},
    )
    return fig


def user_map(points: pd.DataFrame, selected: str | None = None, method: str = "pca") -> go.Figure:
    """Every user's interest vector projected to 2D, coloured by segment.

    ``points`` has ``user_id``, ``x``, ``y``, ``segment`` and ``dominant``; ``selected``
    (a user id) is drawn as a large star. Each point carries its user id as customdata.
    """
    title = f"Map of users' interests ({method.upper()}, coloured by segment)"
    if points.empty:
        return _empty(title, "No users yet.")
    scatter = go.Scattergl if len(points) > 5000 else go.Scatter
    points = _escaped(points, Columns.USER, "dominant")  # the page unescapes a clicked id
    fig = go.Figure()
    palette = px.colors.qualitative.Set2 + px.colors.qualitative.Pastel1
    for seg, part in points.groupby("segment", sort=True):
        fig.add_trace(
            scatter(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=f"segment {seg}",
                marker=dict(size=5, color=palette[int(seg) % len(palette)], opacity=0.75),
                customdata=part[[Columns.USER]].to_numpy(),
                hovertext=part[Columns.USER] + " · " + part["dominant"].astype(str),
                hoverinfo="text",
            )
        )
    selected = None if selected is None else plotly_text(selected)
    if selected is not None and (points[Columns.USER] == selected).any():
        me = points[points[Columns.USER] == selected]
        fig.add_trace(
            go.Scatter(
                x=me["x"],
                y=me["y"],
                mode="markers",
                name=f"user {selected}",
                marker=dict(size=18, symbol="star", color="#E8590C", line=dict(width=1)),
                customdata=me[[Columns.USER]].to_numpy(),
                hovertext=me[Columns.USER],
                hoverinfo="text",
            )
        )
    axis = "PC" if method == "pca" else "UMAP "
    fig.update_layout(
        title=title,
        xaxis_title=f"{axis}1 (interest vector projection)",
        yaxis_title=f"{axis}2",
        legend=dict(orientation="h", y=-0.2),
        **{**_LAYOUT, "height": 480},
    )
    return fig


def explanation_bars(
    frame: pd.DataFrame, title: str = "Why: history items by contribution"
) -> go.Figure:
    """Occlusion contributions; ``frame`` has ``label`` and ``contribution`` (probability)."""
    title = plotly_text(title)  # it may name an item
    if frame.empty:
        return _empty(title, "An empty history: nothing to attribute.")
    colors = ["#2B8A3E" if c >= 0 else "#C92A2A" for c in frame["contribution"]]
    frame = _escaped(frame, "label")
    fig = go.Figure(
        go.Bar(x=frame["contribution"], y=frame["label"], orientation="h", marker_color=colors)
    )
    fig.update_layout(
        title=title,
        xaxis_title="score change when removed (probability points)",
        yaxis_title="history item",
        yaxis_autorange="reversed",
        **{**_LAYOUT, "height": max(220, 26 * len(frame) + 110)},
    )
    return fig


def history_timeline(frame: pd.DataFrame) -> go.Figure:
    """A user's events in order: ``pos``, ``title``/``item_id``, ``category``, ``event_type``
    (``time`` too when every event has one; else the x axis is the event number).

    The y axis is the item's first category (or "no category"); when no event's item has
    a category, the item itself (its title, else its id). Colour is the event type.
    """
    title = "History timeline"
    if frame.empty:
        return _empty(title, "No events for this user.")
    data = _escaped(frame, "category", "event_type", "title", Columns.ITEM)
    category = data["category"] if "category" in data else pd.Series("", index=data.index)
    category = category.fillna("").astype(str)
    data["event_type"] = (
        data["event_type"].fillna("event").astype(str) if "event_type" in data else "event"
    )
    titles = data["title"] if "title" in data else pd.Series(None, index=data.index, dtype=object)
    titles = titles.where(titles.notna() & (titles.astype(str) != ""), None)
    data["label"] = titles.fillna(data[Columns.ITEM]).astype(str)
    by_item = not (category != "").any()
    data["row"] = data["label"] if by_item else category.replace("", "(no category)")
    use_time = "time" in data and data["time"].notna().all()
    fig = px.scatter(
        data,
        x="time" if use_time else "pos",
        y="row",
        color="event_type",
        hover_name="label",
        hover_data={Columns.ITEM: True, "pos": True, "row": False},
        title=title + (" (no categories: one row per item)" if by_item else ""),
    )
    fig.update_traces(marker=dict(size=9, opacity=0.8))
    rows = data["row"].nunique()
    fig.update_layout(
        xaxis_title="time" if use_time else "event number",
        yaxis_title="item" if by_item else "item category",
        legend_title_text="event type",
        showlegend=data["event_type"].nunique() > 1 or "event" not in set(data["event_type"]),
        **{**_LAYOUT, "height": min(900, max(300, 28 * rows + 140))},
    )
    return fig
