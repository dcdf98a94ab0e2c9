"""Recommendations page: a user's top-K with explanations, what-if edits, a baseline, export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.common.columns import Columns
from core.common.tables import drop_empty_columns
from core.reports import charts
from core.services import export_home, recommend_with_reasons
from core.serving import interests
from core.serving.exports import ExportJob
from core.serving.model_data import item_index
from core.serving.recommend import SIDE_BASELINES, baseline_list, recommend
from ui.common import fmt_int, get_store, md_escape, require_dataset
from ui.model_views import current_user, item_label, require_model, side_baseline, user_search

WHATIF = "whatif_history"  # the edited history (item ids, oldest first)
WHATIF_OWNER = "whatif_for"  # whose history it started from
WHATIF_POS = "whatif_pos"  # the selected position in the edited history
WHATIF_NEXT_POS = "whatif_pos_next"  # set by an edit, applied before the selector is drawn
EXPORT = "export_file"

info = require_dataset()
st.title("Recommendations")
data, name, created = require_model()
cat = data.catalog
st.caption(
    f"Model **{md_escape(name)}** on **{md_escape(info.name)}**. Score = the model's "
    "probability that the item is the user's next one (softmax over all items)"
    + (
        f", updated by its transition memory: how often each item followed the user's last "
        f"item in training, with the Transformer's prediction weighted like "
        f"{data.saved.config.transition_alpha:g} recorded transition(s)."
        if data.saved.config.transitions
        else "."
    )
)

# --------------------------------------------------------------------------- controls
c = st.columns([2, 1, 1, 2])
with c[0]:
    user_search(data, "rec_search")
user = current_user(data)
k = c[1].number_input("How many", 1, 100, 10, key="rec_k")
exclude_seen = c[2].checkbox(
    "Hide seen items", value=True, key="rec_exclude_seen", help="leave out the user's own items"
)
categories = cat.category_names("all")
category = c[3].selectbox(
    "Only this category",
    [None, *categories],
    key="rec_category",
    format_func=lambda v: "(all categories)" if v is None else v,
    disabled=not categories,
)
history = data.history_ids(user)
st.subheader(f"User {md_escape(user)}")
st.caption(
    f"{fmt_int(len(history))} events; the model reads the last "
    f"{data.saved.config.max_len - 1}. Pick another user above or on the Interests page."
)


def ranked_with_reasons(hist: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    ranked = recommend_with_reasons(
        data.saved, hist, int(k), exclude_seen, catalog=cat, category=category
    )
    top, reasons = ranked.top, ranked.explanations
    index = item_index(data.saved)

    def label(item: str) -> str:
        return item_label(data, index[item])

    top["because of"] = [label(why[0]) if why else "" for why in ranked.because]
    for frame in reasons.values():
        frame["label"] = [label(h) for h in frame["history_item"]]
    return top, reasons


def set_history(items: list[str], select: int | None = None) -> None:
    """Replace the edited history and select a position (default: the last item), then rerun."""
    st.session_state[WHATIF] = items
    st.session_state[WHATIF_NEXT_POS] = max(0, len(items) - 1 if select is None else select)
    st.rerun()


def show_explanation(top: pd.DataFrame, reasons: dict[str, pd.DataFrame], key: str) -> None:
    if top.empty:
        return
    index = item_index(data.saved)
    choice = st.selectbox(
        "Explain",
        list(top[Columns.ITEM]),
        key=f"{key}_explain",
        format_func=lambda i: item_label(data, index[i]),
        help="Occlusion: how much the item's score drops when a history item is removed",
    )
    frame = reasons.get(choice, pd.DataFrame(columns=["label", "contribution"]))
    st.plotly_chart(
        charts.explanation_bars(frame.head(10)[["label", "contribution"]]),
        key=f"{key}_bars",
    )


SHOWN = ["rank", "title", Columns.ITEM, "categories", "score", "popularity_rank", "because of"]


@st.fragment(run_every=1)
def _export_progress(job: ExportJob) -> None:
    """The running export's progress, polled every second; the page redraws when it ends."""
    if job.done:
        st.rerun()
    st.progress(job.fraction, text=f"Exporting in the background: {job.message}…")


def _export_panel(job: ExportJob) -> None:
    """Progress while the export runs, then its download (read from disk when clicked)."""
    if not job.done:
        _export_progress(job)
    elif job.error:
        st.error(md_escape(job.error))
    else:
        done = job.result
        st.download_button(
            f"Download top-{done['k']} for {fmt_int(done['users'])} users "
            f"({done['format']}, {fmt_int(done['rows'])} rows)",
            job.read,
            file_name=job.path.name,
            mime="text/csv" if done["format"] == "csv" else "application/octet-stream",
            key="export_download",
            on_click="ignore",
        )


tab_list, tab_whatif, tab_base, tab_export = st.tabs(
    ["Top-K with explanations", "What-if", "Versus a baseline", "Export"]
)


def nothing_left(hist: list[str]) -> str:
    """Why a list came out empty, in one sentence."""
    if exclude_seen and set(hist) >= {str(i) for i in data.saved.item_ids[1:]}:
        return (
            "This history already holds every item the model knows, so nothing is left to "
            "recommend: untick *Hide seen items* to rank them anyway."
        )
    if category is not None:
        return f"No item of the category {md_escape(category)} is left to recommend."
    return "No item matches these settings."


with tab_list:
    top, reasons = ranked_with_reasons(history)
    if top.empty:
        st.info(nothing_left(history))
    else:
        st.dataframe(
            drop_empty_columns(top[SHOWN]),
            hide_index=True,
            column_config={"score": st.column_config.NumberColumn(format="%.4f")},
        )
        show_explanation(top, reasons, "rec")

# --------------------------------------------------------------------------- what-if
with tab_whatif:
    window = data.saved.config.max_len - 1
    if st.session_state.get(WHATIF_OWNER) != user or WHATIF not in st.session_state:
        st.session_state[WHATIF] = history[-window:]
        st.session_state[WHATIF_OWNER] = user
    edited: list[str] = st.session_state[WHATIF]
    index = item_index(data.saved)
    st.caption(
        "Edit the history (starting from the user's most recent items) and see the "
        "recommendations and the interest vector change at once."
    )
    left, right = st.columns([1, 1])
    with left:
        query = st.text_input(
            "Find an item to add",
            key="whatif_search",
            placeholder="title or id" if cat.has_titles else "item id",
        )
        options = cat.popular_items(query, limit=100)
        add = st.selectbox(
            "Item",
            options,
            key="whatif_pick",
            format_func=lambda i: item_label(data, index[i]),
        )
        b = st.columns(3)
        if b[0].button("Add at the end", key="whatif_add", disabled=add is None):
            set_history([*edited, add])
        if b[1].button("Reset", key="whatif_reset", help="back to the user's own history"):
            set_history(history[-window:])
        if b[2].button("Start empty", key="whatif_empty", help="a brand-new (cold) user"):
            set_history([])
        if WHATIF_NEXT_POS in st.session_state:
            st.session_state[WHATIF_POS] = st.session_state.pop(WHATIF_NEXT_POS)
        if not 0 <= st.session_state.get(WHATIF_POS, -1) < len(edited):
            st.session_state[WHATIF_POS] = len(edited) - 1
        if edited:
            pos = st.selectbox(
                "History item",
                list(range(len(edited))),
                key=WHATIF_POS,
                format_func=lambda p: (
                    f"{p + 1}. {item_label(data, index[edited[p]])}"
                    if edited[p] in index
                    else f"{p + 1}. {edited[p]}"
                ),
            )
            b = st.columns(3)
            if b[0].button("Remove", key="whatif_remove"):
                set_history(edited[:pos] + edited[pos + 1 :], min(pos, len(edited) - 2))
            if b[1].button("Move earlier", key="whatif_up", disabled=pos == 0):
                moved = list(edited)
                moved[pos - 1], moved[pos] = moved[pos], moved[pos - 1]
                set_history(moved, pos - 1)
            if b[2].button("Move later", key="whatif_down", disabled=pos >= len(edited) - 1):
                moved = list(edited)
                moved[pos + 1], moved[pos] = moved[pos], moved[pos + 1]
                set_history(moved, pos + 1)
        st.dataframe(
            pd.DataFrame(
                {
                    "step": np.arange(1, len(edited) + 1),
                    "item": [item_label(data, index[i]) if i in index else i for i in edited],
                }
            ),
            hide_index=True,
            height=min(400, 36 * (len(edited) + 1) + 3),
        )
    with right:
        what, why = ranked_with_reasons(edited)
        before = set(recommend(data.saved, history[-window:], int(k), exclude_seen)[Columns.ITEM])
        what["new"] = ["" if i in before else "new" for i in what[Columns.ITEM]]
        st.markdown("**Recommendations for the edited history**")
        if what.empty:
            st.info(nothing_left(edited))
        else:
            st.dataframe(
                drop_empty_columns(
                    what[["rank", "title", Columns.ITEM, "score", "new", "because of"]]
                ),
                hide_index=True,
                column_config={"score": st.column_config.NumberColumn(format="%.4f")},
            )
        v0 = interests.history_vector(data, history[-window:])
        v1 = interests.history_vector(data, edited)
        cosine = float(v0 @ v1 / (np.linalg.norm(v0) * np.linalg.norm(v1) + 1e-12))
        st.metric(
            "Interest vector vs the user's own",
            f"cosine {cosine:.3f}",
            help="1 = the edit did not move the interest at all",
        )
        if cat.has_categories:
            st.plotly_chart(
                charts.category_affinity(interests.affinity_frame(data, edited, "all")),
                key="whatif_affinity",
            )
        else:
            st.caption("No category affinity to compare: the items have no categories.")

# --------------------------------------------------------------------------- baseline
with tab_base:
    baseline = st.selectbox(
        "Baseline",
        list(SIDE_BASELINES),
        format_func=SIDE_BASELINES.get,
        key="side_baseline",
        help="fitted on the same training events as the model (each user's test "
        "and validation items left out); the Metrics page compares them on every user",
    )
    base = baseline_list(
        data, side_baseline(name, created, baseline), history, int(k), exclude_seen, category
    )
    left, right = st.columns(2)
    for column, heading, frame in (
        (left, f"**{md_escape(name)}** (sequence model)", top),
        (right, f"**{SIDE_BASELINES[baseline]}** (same exclusions)", base),
    ):
        with column:
            st.markdown(heading)
            if frame.empty:
                st.info(nothing_left(history))
            else:
                st.dataframe(
                    drop_empty_columns(frame[["rank", "title", Columns.ITEM, "score"]]),
                    hide_index=True,
                )
    if len(top):
        overlap = len(set(top[Columns.ITEM]) & set(base[Columns.ITEM]))
        st.caption(f"{overlap} of {len(top)} items appear in both lists.")

# --------------------------------------------------------------------------- export
with tab_export:
    st.caption(
        "Top-K for every user of the dataset, with scores: columns user_id, rank, item_id, "
        "score. Seen items follow the *Hide seen items* switch."
    )
    e = st.columns(3)
    fmt = e[0].radio("Format", ["csv", "parquet"], horizontal=True, key="export_format")
    ek = e[1].number_input("K per user", 1, 200, 20, key="export_k")
    wanted = (name, fmt, int(ek), exclude_seen)
    if e[2].button("Prepare the file", key="export_prepare"):
        previous = st.session_state.pop(EXPORT, None)
        if previous is not None:
            previous.discard()
        st.session_state[EXPORT] = ExportJob(
            data,
            export_home(get_store()),
            f"{name}-top{int(ek)}",
            int(ek),
            fmt,
            exclude_seen,
            key=wanted,
        )
    job = st.session_state.get(EXPORT)
    if job is not None and job.key == wanted:
        _export_panel(job)
    st.caption(
        "For large datasets the command line is faster to script: "
        "`python -m core export --model NAME --out top.parquet --k 20`."
    )
