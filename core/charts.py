"""Plotly figure builders: pure functions from data frames to labelled figures.

Pages only place these figures; tests check them without a browser. Every chart
labels its axes (with units) and says what it counts.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

ACCENT = "#4C6EF5"
_LAYOUT = dict(
    margin=dict(l=10, r=10, t=50, b=10),
    height=330,
    template="plotly_white",
    title_font_size=15,
)


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
    fig.update_layout(
        xaxis_title="item popularity rank (log)", yaxis_title="events per item (log)", **_LAYOUT
    )
    return fig


def event_type_mix(frame: pd.DataFrame) -> go.Figure:
    """Share of each event type; ``frame`` has ``event_type`` and ``events``."""
    title = "Event types"
    if frame.empty or (len(frame) == 1 and frame["event_type"].iloc[0] == "(none)"):
        return _empty(title, "No event type column was mapped.")
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
    fig = px.bar(frame, x="events", y="category", orientation="h", title=title)
    fig.update_traces(marker_color=ACCENT)
    fig.update_layout(
        xaxis_title="events on items of the category",
        yaxis_title="category",
        yaxis_autorange="reversed",
        **{**_LAYOUT, "height": max(330, 22 * len(frame) + 80)},
    )
    return fig


def training_curves(epochs: list[dict], title: str = "Training") -> go.Figure:
    """Loss and validation NDCG@10 per epoch; ``epochs`` are validate-phase progress records."""
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
    fig.update_layout(
        title=title,
        xaxis=dict(title="epoch", dtick=1 if len(frame) <= 20 else None),
        yaxis=dict(title="loss (cross-entropy)"),
        yaxis2=dict(
            title="NDCG@10 (full ranking)", overlaying="y", side="right", rangemode="tozero"
        ),
        legend=dict(orientation="h", y=-0.25),
        **_LAYOUT,
    )
    return fig
