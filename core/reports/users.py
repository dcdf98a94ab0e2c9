"""The report's model-dependent sections: the interests map and a few example users.

Part of :mod:`core.reports.page` (see its docstring). Reads the interest vectors cached in
the database and ranks a handful of histories; never trains or evaluates.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.common.columns import Columns
from core.common.tables import join_categories, text_or_empty, with_main_category
from core.reports import charts
from core.reports import markup as H
from core.reports.markup import ReportError, no_categories
from core.serving import interests
from core.serving.model_data import ModelData, item_index
from core.serving.recommend import because_of, explain, most_popular, recommend
from core.store import DatasetInfo, Store

EXAMPLE_USERS = 5  # example users by default: the first of each segment, at most this many
SEGMENTS = 8  # k-means segments, as the Interests page's default
TOP_K = 10
HISTORY_SHOWN = 10  # the most recent events listed under each example user's timeline
TIMELINE_EVENTS = 500  # the most recent events drawn on a timeline (as the Interests page)
EVENTS_READ = 100_000  # at most this many of one user's events are read


def check_users(data: ModelData, users: list[str] | None) -> None:
    """Raise a ReportError naming the first of ``users`` the model knows no history of."""

    for user in users or []:
        if data.user_number(user) is None:
            raise ReportError(
                f"user {user!r} has no events the model knows in dataset {data.saved.dataset!r}"
            )


def model_sections(
    store: Store,
    info: DatasetInfo,
    data: ModelData | None,
    users: list[str] | None,
    figs: H.Figures,
) -> tuple[str, str]:
    """The Interests and Example users sections (each a sentence when there is no model)."""
    if data is None:
        return (
            H.absent("No model was given: the map of users' interests needs one."),
            H.absent("No model was given: recommendations for example users need one."),
        )
    vectors = interests.all_interest_vectors(store, data)  # cached in the database
    if not vectors.matrix.flags.writeable:  # read from the cache: torch wants its own copy
        vectors = interests.InterestVectors(vectors.user_ids, vectors.matrix.copy(), True)
    umap_ = interests.user_map(data, vectors, k=SEGMENTS)
    chosen = users if users is not None else default_users(umap_.points)
    return interests_section(store, info, data, vectors, umap_, figs), users_section(
        store, info, data, umap_, chosen, figs
    )


def default_users(points: pd.DataFrame, limit: int = EXAMPLE_USERS) -> list[str]:
    """The first user (in id order) of each segment, largest segments first, at most ``limit``."""
    firsts = points.sort_values(["segment", Columns.USER]).drop_duplicates("segment")
    return [str(u) for u in firsts[Columns.USER].head(limit)]


# --------------------------------------------------------------------------- interests


def interests_section(
    store: Store,
    info: DatasetInfo,
    data: ModelData,
    vectors: interests.InterestVectors,
    umap_: interests.UserMap,
    figs: H.Figures,
) -> str:
    """The map of users coloured by segment (a stated sample), then each segment."""
    points = umap_.points
    shown = interests.map_sample(points, interests.map_points_limit())
    sampled = len(shown) < len(points)
    out = [
        H.paragraph(
            "Each user's interest vector (the model's state at a mask placed after their "
            "history: what predicts their next item), projected by "
            f"{umap_.method.upper()} and grouped by k-means into {len(umap_.segments)} segments."
            + (
                " The vectors are the Transformer's own (the transition memory adds to "
                "recommendations only)."
                if data.saved.config.transitions
                else ""
            ),
            "note",
        ),
        figs.place(charts.user_map(shown, method=umap_.method)),
        H.paragraph(
            f"Showing {H.fmt_int(len(shown))} of {H.fmt_int(len(points))} users"
            + (
                ": a fixed random sample, so the page stays fast; segments count everyone."
                if sampled
                else "."
            ),
            "note",
        ),
        H.heading(3, "Segments"),
    ]
    has_categories = data.catalog.has_categories
    out.append(H.table(segment_rows(umap_.segments, has_categories), numeric=["users", "share"]))
    if not has_categories:
        out.append(H.absent(no_categories(info, "Each segment's top categories")))
    rate = _planted_rate(store, data, vectors)
    if rate is not None:
        out.append(
            H.paragraph(
                f"Planted vs recovered (generated data): for {rate:.0%} of users the dominant "
                "recovered category equals the planted final interest.",
                "note",
            )
        )
    return "".join(out)


def segment_rows(segments: pd.DataFrame, has_categories: bool) -> list[dict[str, Any]]:
    """One row per segment: users, share, top categories (when any), top items."""
    rows = []
    for seg in segments.itertuples(index=False):
        row: dict[str, Any] = {
            "segment": int(seg.segment),
            "users": H.fmt_int(seg.users),
            "share": f"{seg.share:.1%}",
        }
        if has_categories:
            row["top categories (mean affinity)"] = seg.top_categories
        row["top items (by the segment's mean vector)"] = seg.top_items
        rows.append(row)
    return rows


def _planted_rate(
    store: Store, data: ModelData, vectors: interests.InterestVectors
) -> float | None:
    """Share of users whose recovered final interest is the planted one (demo data only)."""
    if store.planted_frame(data.dataset_id).empty:
        return None
    truth = interests.planted_comparison(store, data, vectors)
    return float(truth["match"].mean()) if len(truth) else None


# --------------------------------------------------------------------------- example users


def users_section(
    store: Store,
    info: DatasetInfo,
    data: ModelData,
    umap_: interests.UserMap,
    users: list[str],
    figs: H.Figures,
) -> str:
    """For each example user: the history, the top-10 with the history items behind each
    item, side by side with most-popular, and the top item's explanation."""
    if not users:
        return H.absent("No example users were asked for.")
    segment_of = dict(zip(umap_.points[Columns.USER], umap_.points["segment"], strict=True))
    out = [
        H.paragraph(
            f"Top-{TOP_K} of the model (seen items hidden; score = probability of being the "
            "next item) next to the most popular items with the same exclusions. "
            "'Because of' lists the history items whose removal lowers the item's score "
            "most (occlusion).",
            "note",
        )
    ]
    if not data.catalog.has_categories:
        out.append(H.absent(no_categories(info, "Showing the categories of a user's history")))
    for user in users:
        segment = segment_of.get(user)
        out.append(user_block(store, data, user, segment, figs))
    return "".join(out)


def user_block(
    store: Store, data: ModelData, user: str, segment: int | None, figs: H.Figures
) -> str:
    """One example user: heading, history timeline and recent events, the two lists."""
    history = data.history_ids(user)
    where = f" · segment {segment}" if segment is not None else ""
    out = [
        '<section class="user">',
        H.heading(3, f"User {user}"),
        H.paragraph(
            f"{H.fmt_int(len(history))} events, {H.fmt_int(len(set(history)))} distinct items"
            f"{where}; the model reads the last {data.saved.config.max_len - 1}.",
            "note",
        ),
    ]
    events = with_main_category(store.user_events(data.dataset_id, user, limit=EVENTS_READ))
    if not events.empty:
        shown = events.tail(TIMELINE_EVENTS)
        if len(shown) < len(events):
            out.append(
                H.paragraph(
                    f"The timeline shows the last {H.fmt_int(len(shown))} of "
                    f"{H.fmt_int(len(events))} events.",
                    "note",
                )
            )
        out.append(figs.place(charts.history_timeline(shown)))
        out.append(H.paragraph(f"The {HISTORY_SHOWN} most recent events:", "note"))
        out.append(H.table(_recent_events(events), numeric=["event number"]))
    top, reasons = ranked_with_reasons(data, history)
    if top.empty:
        out.append(H.absent(_nothing_left(data, history)))
        out.append("</section>")
        return "".join(out)
    index = item_index(data.saved)
    pop = most_popular(data.catalog, history, TOP_K)
    overlap = len(set(top[Columns.ITEM]) & set(pop[Columns.ITEM]))
    out.append(
        '<div class="side"><div>'
        + H.heading(4, f"{data.saved.name} (sequence model)")
        + H.table(_list_rows(data, index, top, reasons), numeric=["rank", "score"])
        + "</div><div>"
        + H.heading(4, "Most popular (same exclusions)")
        + H.table(_list_rows(data, index, pop, None), numeric=["rank", "training events"])
        + "</div></div>"
    )
    out.append(H.paragraph(f"{overlap} of {len(top)} items appear in both lists.", "note"))
    if reasons.get(top[Columns.ITEM].iloc[0]) is not None:
        first = top[Columns.ITEM].iloc[0]
        frame = reasons[first].head(10)
        frame = frame.assign(label=[_label(data, index, h) for h in frame["history_item"]])
        title = f"Why {_label(data, index, first)}: history items by contribution"
        out.append(figs.place(charts.explanation_bars(frame[["label", "contribution"]], title)))
    out.append("</section>")
    return "".join(out)


def _nothing_left(data: ModelData, history: list[str]) -> str:
    """Why a user's list is empty, in one sentence."""
    if set(history) >= {str(i) for i in data.saved.item_ids[1:]}:
        return (
            "Nothing left to recommend: this history already holds every item the model "
            "knows (seen items are hidden)."
        )
    return "Nothing left to recommend for this history."


def ranked_with_reasons(
    data: ModelData, history: list[str]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The model's top-10 for a history (seen items hidden) and each item's occlusion
    explanation (:func:`core.serving.recommend.explain`), as the Recommendations page ranks them."""
    top = recommend(data.saved, history, TOP_K, True, catalog=data.catalog)
    reasons = explain(data.saved, history, list(top[Columns.ITEM])) if len(top) else {}
    return top, reasons


def _label(data: ModelData, index: dict[str, int], item: str) -> str:
    """The item as "Title (id)", or its id alone when it has no title; ``index`` is
    :func:`core.serving.model_data.item_index` of the model."""
    number = index.get(item)
    title = data.catalog.titles[number] if number is not None else ""
    return f"{title} ({item})" if title else str(item)


def _list_rows(
    data: ModelData,
    index: dict[str, int],
    frame: pd.DataFrame,
    reasons: dict[str, pd.DataFrame] | None,
) -> list[dict[str, Any]]:
    """Rows of a top-K list: rank, item, categories, score (or training events), reasons."""
    because = because_of(reasons, list(frame[Columns.ITEM]), n=3) if reasons is not None else None
    rows = []
    for n, r in enumerate(frame.to_dict("records")):
        row: dict[str, Any] = {"rank": int(r["rank"]), "item": _label(data, index, r[Columns.ITEM])}
        if data.catalog.has_categories:
            row["categories"] = r.get("categories", "")
        if because is not None:
            row["score"] = f"{r['score']:.4f}"
            row["because of"] = "; ".join(_label(data, index, h) for h in because[n])
        else:
            row["training events"] = H.fmt_int(r.get("events"))
        rows.append(row)
    return rows


def _recent_events(events: pd.DataFrame) -> list[dict[str, Any]]:
    """The last events of a user's history, newest first."""
    recent = events.tail(HISTORY_SHOWN).iloc[::-1]
    rows = []
    for r in recent.to_dict("records"):
        row: dict[str, Any] = {"event number": int(r["pos"]), "item": r[Columns.ITEM]}
        if text_or_empty(r.get("title")):
            row["title"] = r["title"]
        row["categories"] = join_categories(r.get("categories"))
        row["event type"] = text_or_empty(r.get("event_type"))
        if not pd.isna(r.get("time")):
            row["time"] = str(r["time"])[:19]
        rows.append(row)
    columns = [  # the columns some event fills (no empty "event type" without types)
        c
        for c in dict.fromkeys(k for row in rows for k in row)
        if any(row.get(c) not in ("", None) for row in rows)
    ]
    return [{c: row.get(c, "") for c in columns} for row in rows]
