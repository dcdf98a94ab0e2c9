"""Interests page: what the model believes each user wants, how it moved, where they sit."""

from __future__ import annotations

import html

import streamlit as st

from core.common.columns import Columns
from core.common.tables import drop_empty_columns, with_main_category
from core.reports import charts
from core.serving import interests
from ui.common import fmt_int, get_store, md_escape, require_dataset
from ui.model_views import (
    SELECTED_USER,
    current_user,
    interest_vectors,
    planted,
    require_model,
    user_map,
    user_search,
)

MAP_KEY = "interests_map"

info = require_dataset()
st.title("Interests")
data, name, created = require_model()
st.caption(
    f"Model **{md_escape(name)}** on **{md_escape(info.name)}**. A user's interest vector is "
    "the model's state at a mask placed after their history: the representation that "
    "predicts their next item."
    + (
        " This model also has a transition memory (what followed each item in training), "
        "which its recommendations add; the vectors and affinities here are the "
        "Transformer's own."
        if data.saved.config.transitions
        else ""
    )
)

cols = st.columns([1, 1, 1])
level = cols[0].radio(
    "Categories",
    ["all", "main"],
    horizontal=True,
    key="interests_level",
    format_func=lambda v: "every category" if v == "all" else "first (main) only",
    help="'first only' counts each item for its first listed category",
    disabled=not data.catalog.has_categories,
)
k = cols[1].slider("Segments (k-means)", 2, 16, 8, key="interests_k")
methods = ["pca", "umap"] if interests.umap_available() else ["pca"]
method = cols[2].selectbox("Projection", methods, key="interests_method", format_func=str.upper)

vectors = interest_vectors(name, created)
umap_ = user_map(name, created, k, method, level)
points = umap_.points

# --------------------------------------------------------------------------- choose a user
st.subheader("Choose a user")


def _select_from_map() -> None:
    """A click on the map picks the user of the clicked point."""
    event = st.session_state.get(MAP_KEY)
    points_ = (event or {}).get("selection", {}).get("points", [])
    if not points_:
        return
    custom = points_[0].get("customdata")
    user = custom[0] if isinstance(custom, list | tuple) and custom else custom
    if user is None:
        return
    user = html.unescape(str(user))  # the chart carries ids escaped for Plotly
    if data.user_number(user) is not None:
        st.session_state[SELECTED_USER] = user


def _select_from_segment() -> None:
    choice = st.session_state.get("interests_segment_user")
    if choice:
        st.session_state[SELECTED_USER] = choice


left, right = st.columns([1, 2])
with left:
    user_search(data, "interests_search")
    segment = st.selectbox(
        "…or pick from a segment",
        list(umap_.segments["segment"]),
        key="interests_segment",
        format_func=lambda s: f"segment {s} ({fmt_int(umap_.segments.at[s, 'users'])} users)",
    )
    members = points.loc[points["segment"] == segment, Columns.USER].head(500).tolist()
    st.selectbox(
        "User of the segment",
        members,
        index=None,
        key="interests_segment_user",
        on_change=_select_from_segment,
        placeholder="choose a user",
    )
    st.caption("…or click a point on the map.")
user = current_user(data)
with right:
    shown = interests.map_sample(points, interests.map_points_limit(), keep=user)
    st.plotly_chart(
        charts.user_map(shown, selected=user, method=method),
        key=MAP_KEY,
        on_select=_select_from_map,
        selection_mode="points",
    )
    if len(shown) < len(points):
        st.caption(
            f"Showing {fmt_int(len(shown))} of {fmt_int(len(points))} users: a fixed random "
            "sample (with the chosen user), so the browser stays fast; segments count everyone."
        )

history = data.history_ids(user)
row = points[points[Columns.USER] == user]
seg = int(row["segment"].iloc[0]) if len(row) else None
has_categories = data.catalog.has_categories
st.subheader(f"User {md_escape(user)}")
m = st.columns(4 if has_categories else 3)
m[0].metric("Events", fmt_int(len(history)))
m[1].metric("Distinct items", fmt_int(len(set(history))))
m[2].metric("Segment", "—" if seg is None else str(seg))
if has_categories:
    m[3].metric(
        "Dominant category",
        md_escape(row["dominant"].iloc[0]) if len(row) and row["dominant"].iloc[0] else "—",
    )

# --------------------------------------------------------------------------- planted (demo)
truth = planted(name, created)
if not truth.empty:
    mine = truth[truth[Columns.USER] == user]
    rate = float(truth["match"].mean())
    with st.container(border=True):
        st.markdown(
            f"**Planted vs recovered** (generated data): for **{rate:.0%}** of users the "
            "dominant recovered category equals the planted final interest."
        )
        if len(mine):
            r = mine.iloc[0]
            c = st.columns(3)
            # a list of several categories: as text, which wraps (a metric would cut it)
            c[0].markdown(f"Planted interests  \n**{md_escape(str(r['planted']))}**")
            c[1].metric("Planted final interest", md_escape(r["planted_final"]))
            c[2].metric(
                "Recovered (end of history)",
                md_escape(r["recovered"]),
                delta="match" if r["match"] else "differs",
                delta_color="normal" if r["match"] else "inverse",
            )

# --------------------------------------------------------------------------- the user
events = with_main_category(get_store().user_events(data.dataset_id, user, limit=500))
if events.empty:
    st.info("This user has no events in the dataset any more (it changed since training).")
else:
    st.plotly_chart(charts.history_timeline(events), key="interests_timeline")
    with st.expander("The events"):
        st.dataframe(drop_empty_columns(events.drop(columns=["category"])), hide_index=True)

if has_categories:
    a, b = st.columns(2)
    with a:
        aff = interests.affinity_frame(data, history, level)
        st.plotly_chart(charts.category_affinity(aff), key="interests_affinity")
else:
    st.info(
        "No category affinity: the items of this dataset have no categories "
        "(upload an item file with a categories column to see it)."
    )
    b = st.container()  # the drift takes the whole width
with b:
    if len(history) < 2:
        st.info(
            "No interest drift to show: the model knows "
            + ("only one event" if history else "no event")
            + " of this user."
        )
    else:
        drift = interests.drift(data, history, level)
        st.plotly_chart(charts.interest_drift(drift.steps, drift.affinity), key="interests_drift")
        shifts = drift.steps[drift.steps["is_shift"]]
        if len(shifts) and has_categories:
            st.caption(
                "Shifts: "
                + "; ".join(
                    f"step {int(s.step)} → {md_escape(s.dominant)}" for s in shifts.itertuples()
                )
                + f". A shift is where the dominant category changes and then holds for "
                f"{interests.SHIFT_PERSIST}+ steps."
            )
        elif len(shifts):
            st.caption(
                "Shifts at steps "
                + ", ".join(str(int(s)) for s in shifts["step"])
                + ": without categories, a shift is a step that changed the interest vector "
                "far more than this user's other steps did."
            )
        elif has_categories:
            st.caption(
                "No shift: the dominant category never changed for "
                f"{interests.SHIFT_PERSIST}+ steps in a row."
            )
        else:
            st.caption(
                "No shift: no step changed the interest vector far more than this user's "
                "other steps did (without categories, that is what a shift is)."
            )

n1, n2 = st.columns(2)
vector = vectors.matrix[data.user_number(user)]
with n1:
    st.markdown("**Most similar users** (cosine of interest vectors)")
    st.dataframe(interests.similar_users(vectors, vector, 10, exclude=user), hide_index=True)
with n2:
    st.markdown("**Most aligned items** (cosine with the item's embedding)")
    st.dataframe(drop_empty_columns(interests.aligned_items(data, vector, 10)), hide_index=True)

# --------------------------------------------------------------------------- segments
st.subheader("Segments")
st.caption(
    f"{fmt_int(len(points))} users in {len(umap_.segments)} k-means segments of their "
    "(normalised) interest vectors; "
    + ("top categories by mean affinity, " if has_categories else "")
    + "top items by the segment's mean vector."
)
st.dataframe(
    drop_empty_columns(
        umap_.segments.assign(share=lambda f: (f["share"] * 100).round(1)).rename(
            columns={"share": "share (%)"}
        )
    ),
    hide_index=True,
)
