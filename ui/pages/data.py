"""Data page: upload a behaviour log, map its columns, ingest it, explore the dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core.common.tables import drop_empty_columns, with_main_category
from core.data.ingest import ingest, preview_mapping, suggest, suggest_item_mapping
from core.data.inspection import Inspection, inspect
from core.data.mapping import Cleaning, EventMapping, IngestError, ItemMapping
from core.data.sources import ReadOptions
from core.data.suggest import EVENT_ROLES, ITEM_ROLES, LOG_ITEM_ROLES, Guess
from core.data.uploads import Spool
from core.reports import charts
from core.services import upload_home
from core.store import StoreError, slugify
from ui.common import (
    PENDING_DATASET,
    active_dataset,
    cached_frame,
    cached_stats,
    datasets,
    fmt_int,
    get_store,
    md_escape,
)

log = logging.getLogger("reclens.data")

UPLOAD_TYPES = ["csv", "tsv", "txt", "dat", "gz", "parquet"]
NONE = "(none)"
DELIMITERS = {
    "auto": None,
    "comma ,": ",",
    "semicolon ;": ";",
    "tab": "\t",
    "pipe |": "|",
    "space": " ",
}
ROLE_LABELS = {
    "user": "User id *",
    "item": "Item id *",
    "time": "Time",
    "type": "Event type",
    "value": "Value (rating, weight)",
}
SPOOL = "upload_spool"
# Upload ids already loaded: the page says so instead of offering to load them again.
LOADED = "loaded_uploads"
ITEM_ROLE_LABELS = {
    "item": "Item id *",
    "title": "Title",
    "categories": "Categories",
    "text": "Text / description",
}


# --------------------------------------------------------------------------- helpers


def _spool() -> Spool:
    """This session's uploads on disk (deleted when loaded, replaced or the session ends)."""
    spool = st.session_state.get(SPOOL)
    if spool is None:
        spool = st.session_state[SPOOL] = Spool(upload_home(get_store()))
    return spool


def _spooled(slot: str, uploaded) -> Path | None:
    """The private copy of the file in uploader ``slot`` (never trusting its name), or
    None when the uploader is empty (a previous file's copy is then deleted)."""
    if uploaded is None:
        _spool().discard(slot)
        return None
    return _spool().path(slot, uploaded.file_id, uploaded)


@st.cache_data(show_spinner="Reading the file…", max_entries=16)
def _inspect(path: str, options: ReadOptions, display: str) -> Inspection:
    return inspect(get_store(), path, options, display_name=display)


def _read_options(prefix: str) -> ReadOptions:
    with st.expander("Reading options (detected automatically)"):
        cols = st.columns(3)
        delimiter = cols[0].selectbox("Delimiter", list(DELIMITERS), key=f"{prefix}_delim")
        header = cols[1].selectbox("Header line", ["auto", "yes", "no"], key=f"{prefix}_header")
        encoding = cols[2].selectbox(
            "Encoding", ["auto", "utf-8", "latin-1"], key=f"{prefix}_encoding"
        )
    return ReadOptions(
        delimiter=DELIMITERS[delimiter],
        header={"auto": None, "yes": True, "no": False}[header],
        encoding=encoding,
    )


def _describe(inspection: Inspection) -> str:
    source = inspection.source
    if source.kind == "parquet":
        return f"Parquet file, {len(inspection.columns)} columns."
    delim = {"\t": "tab", " ": "space"}.get(inspection.delimiter or "", inspection.delimiter)
    return (
        f"CSV, delimiter `{delim}`, {'with' if inspection.has_header else 'without'} a header, "
        f"{source.encoding}{', gzip' if source.compression == 'gzip' else ''}, "
        f"{len(inspection.columns)} columns."
    )


def _role_picker(
    label: str, columns: list[str], suggested: str | None, key: str, guess: Guess | None = None
) -> str | None:
    """A column picker preset to the suggestion; with a ``guess``, its reason below it."""
    options = [NONE, *columns]
    index = options.index(suggested) if suggested in options else 0
    choice = st.selectbox(label, options, index=index, key=key)
    chosen = None if choice == NONE else choice
    if guess is not None:
        st.caption(_reason(guess, chosen))
    return chosen


def _reason(guess: Guess, chosen: str | None) -> str:
    """Why a picker shows what it shows: a name match, a guess from the content, your pick."""
    if chosen != guess.column:
        return "Your choice."
    if guess.column is None:
        return md_escape(guess.reason[:1].upper() + guess.reason[1:] + ".") if guess.reason else ""
    if guess.confident:
        return ":material/check: " + md_escape(guess.reason[:1].upper() + guess.reason[1:]) + "."
    how = guess.reason.removeprefix("guessed from content: ")
    return "**Guess** from the content: " + md_escape(how) + ". Check it."


def _show_report(summary: dict) -> None:
    report = summary["report"]
    st.success(
        f"Loaded **{summary['dataset']}**: {fmt_int(summary['events'])} events, "
        f"{fmt_int(summary['users'])} users, {fmt_int(summary['items'])} items."
    )
    st.markdown("**Cleaning report**")
    cols = st.columns(4)
    cols[0].metric("Rows read", fmt_int(report["rows_read"]))
    cols[1].metric("Events kept", fmt_int(report["events_loaded"]))
    cols[2].metric("Rows dropped", fmt_int(sum(report["dropped"].values())))
    cols[3].metric("Item rows", fmt_int(summary.get("item_rows", 0)))
    dropped = [{"reason": k.replace("_", " "), "rows": v} for k, v in report["dropped"].items()]
    st.dataframe(dropped, hide_index=True, width="content")
    if report["examples"]:
        st.markdown("Examples of rejected rows (line numbers in the file):")
        st.dataframe(report["examples"], hide_index=True)
    for note in [report["time"], *report.get("notes", [])]:
        st.caption(md_escape(note))


# --------------------------------------------------------------------------- upload


@dataclass
class _Upload:
    """The files of one upload, how to read them, and what reading them found."""

    events_file: UploadedFile | None
    events_opts: ReadOptions
    items_file: UploadedFile | None
    items_opts: ReadOptions
    events: Inspection | None = None
    items: Inspection | None = None


def upload_section() -> None:
    """Upload a log (and an item file), then preview, map, check and load it: a step each."""
    st.markdown(
        "Upload a behaviour log: one row per event with a **user** and an **item** column, "
        "optionally a time, an event type and a value. CSV/TSV with any delimiter (header or "
        "not, UTF-8 or Latin-1, gzip or not) or Parquet. An item file with titles, categories "
        "and descriptions is optional."
    )
    upload = _choose_files()
    if upload is None or not _read_files(upload):
        return
    _preview_step(upload.events)
    mapping, item_mapping = _mapping_step(upload.events, upload.items)
    if not _check_step(upload.events, mapping):
        return
    choice = _load_step(upload.events_file.name)
    if choice is not None:
        _ingest(upload, mapping, item_mapping, *choice)


def _choose_files() -> _Upload | None:
    """The two file uploaders with their reading options; None until a new behaviour log
    is chosen (one already loaded says so, and offers to load it again)."""
    left, right = st.columns(2)
    with left:
        events_file = st.file_uploader("Behaviour log", type=UPLOAD_TYPES, key="events_upload")
        events_opts = _read_options("events")
    with right:
        items_file = st.file_uploader("Item file (optional)", type=UPLOAD_TYPES, key="items_upload")
        items_opts = _read_options("items")
    loaded = st.session_state.setdefault(LOADED, {})
    if events_file is not None and events_file.file_id in loaded:
        _spool().discard("events")
        _spool().discard("items")
        st.info(
            f"**{md_escape(events_file.name)}** is loaded as dataset "
            f"**{md_escape(loaded[events_file.file_id])}**. Choose another file to load more.",
            icon=":material/check:",
        )
        if st.button("Load this file again with other settings", key="reload_upload"):
            loaded.pop(events_file.file_id)
            st.rerun()
        return None
    return _Upload(events_file, events_opts, items_file, items_opts)


def _read_files(upload: _Upload) -> bool:
    """Copy the uploads aside and inspect them; False (with why) when there is nothing to
    read or it cannot be read."""
    events_path = _spooled("events", upload.events_file)
    items_path = _spooled("items", upload.items_file)
    if events_path is None:
        st.info("Choose a file to start. Nothing is loaded until you press **Ingest**.")
        return False
    try:
        upload.events = _inspect(str(events_path), upload.events_opts, upload.events_file.name)
        if items_path:
            upload.items = _inspect(str(items_path), upload.items_opts, upload.items_file.name)
    except IngestError as exc:
        st.error(md_escape(str(exc)), icon=":material/error:")
        return False
    return True


def _preview_step(events: Inspection) -> None:
    st.subheader("1. Preview", divider="gray")
    st.caption(_describe(events) + " First rows as read:")
    st.dataframe(events.preview.head(10), hide_index=True)
    for note in events.notes:
        st.warning(md_escape(note))


def _mapping_step(
    events: Inspection, items: Inspection | None
) -> tuple[EventMapping, ItemMapping | None]:
    """Pickers for the log's columns, then for the item details (item file or log)."""
    st.subheader("2. Map columns", divider="gray")
    found = suggest(events)
    cols = st.columns(len(EVENT_ROLES))
    chosen = {}
    for col, role in zip(cols, EVENT_ROLES, strict=True):
        with col:
            guess = found.events[role]
            chosen[role] = _role_picker(
                ROLE_LABELS[role], events.columns, guess.column, f"map_{role}", guess
            )
    for note in found.notes:
        st.caption(":material/info: " + md_escape(note) + ".")
    min_value = None
    if chosen["value"]:
        filt = st.columns([1, 1, 2])
        if filt[0].checkbox(
            "Keep only positive events",
            key="use_min_value",
            help="For example ratings of 4 or more",
        ):
            min_value = filt[1].number_input("Minimum value", value=4.0, step=0.5, key="min_value")
    mapping = EventMapping(**chosen, min_value=min_value)
    if items is None:
        return mapping, _log_items_section(events.columns, chosen, found.items)
    return mapping, _item_file_section(items, found.items)


def _item_file_section(items: Inspection, in_log: dict[str, Guess]) -> ItemMapping:
    """Pickers for the item file's columns (the log's own item details set aside)."""
    st.caption("Item file: " + _describe(items))
    st.dataframe(items.preview.head(5), hide_index=True)
    isugg = suggest_item_mapping(items)
    icols = st.columns(len(ITEM_ROLES) + 1)
    ichosen = {}
    for col, role in zip(icols, ITEM_ROLES, strict=False):
        with col:
            ichosen[role] = _role_picker(
                ITEM_ROLE_LABELS[role], items.columns, getattr(isugg, role), f"imap_{role}"
            )
    sep = icols[-1].text_input("Category separator", value="|", max_chars=3, key="cat_sep")
    if in_log:
        st.caption(
            "The log also holds item details ("
            + ", ".join(md_escape(g.column) for g in in_log.values())
            + "); the item file is used instead."
        )
    return ItemMapping(**ichosen, category_sep=sep or "|")


def _check_step(events: Inspection, mapping: EventMapping) -> bool:
    """The first rows as they would load; False (with why) when the mapping cannot load."""
    st.subheader("3. Check the mapped rows", divider="gray")
    try:
        st.dataframe(preview_mapping(get_store(), events, mapping), hide_index=True)
    except IngestError as exc:
        st.error(md_escape(str(exc)), icon=":material/error:")
        return False
    return True


def _load_step(file_name: str) -> tuple[Cleaning, str, bool] | None:
    """Cleaning, the dataset's name and the Ingest button; (cleaning, name, replace) once
    pressed, else None (a taken name must be ticked to be replaced first)."""
    st.subheader("4. Clean and load", divider="gray")
    ccols = st.columns(4)
    min_user = ccols[0].number_input(
        "Min events per user",
        1,
        1000,
        1,
        key="min_user",
        help="k-core: users with fewer events are dropped",
    )
    min_item = ccols[1].number_input(
        "Min events per item",
        1,
        1000,
        1,
        key="min_item",
        help="k-core: items with fewer events are dropped",
    )
    collapse = ccols[2].checkbox(
        "Collapse consecutive repeats",
        key="collapse",
        help="Drop an event that repeats the user's previous item",
    )
    name = ccols[3].text_input(
        "Dataset name",
        value=slugify(file_name),
        key="ds_name",
        help="lower-case letters, digits, - and _",
    )
    exists = get_store().find_dataset(name) is not None if name else False
    replace = False
    if exists:
        replace = st.checkbox(
            f"A dataset called '{name}' already exists: replace it", key="confirm_replace"
        )
    if not st.button(
        "Ingest", type="primary", key="ingest_button", disabled=exists and not replace
    ):
        if exists and not replace:
            st.caption("Tick the box above to replace it, or choose another name.")
        return None
    return Cleaning(int(min_user), int(min_item), bool(collapse)), name, replace


def _ingest(
    upload: _Upload,
    mapping: EventMapping,
    item_mapping: ItemMapping | None,
    cleaning: Cleaning,
    name: str,
    replace: bool,
) -> None:
    """Load the upload with a progress bar; on success switch to the new dataset."""
    events, items, items_file = upload.events, upload.items, upload.items_file
    bar = st.progress(0.0, text="Starting…")
    try:
        result = ingest(
            get_store(),
            name,
            events.source.path,
            mapping,
            read=upload.events_opts,
            items_path=items.source.path if items else None,
            item_mapping=item_mapping,
            items_read=upload.items_opts,
            cleaning=cleaning,
            replace_existing=replace,
            source_names=[upload.events_file.name] + ([items_file.name] if items_file else []),
            progress=lambda f, msg: bar.progress(min(1.0, f), text=msg),
        )
    except IngestError as exc:
        bar.empty()
        st.error(md_escape(str(exc)), icon=":material/error:")
        return
    except Exception:  # an unexpected failure: log it, never show a traceback
        bar.empty()
        log.exception("ingest failed")
        st.error("Loading failed unexpectedly; nothing was changed. The server log has details.")
        return
    st.session_state[LOADED][upload.events_file.file_id] = result.dataset.name
    _spool().discard("events")
    _spool().discard("items")
    st.session_state["last_ingest"] = result.summary()
    st.session_state[PENDING_DATASET] = result.dataset.name
    st.cache_data.clear()
    st.rerun()


def _log_items_section(
    columns: list[str], chosen: dict[str, str | None], found: dict[str, Guess]
) -> ItemMapping | None:
    """Item details carried by the log itself (a title on every row), as the item catalogue."""
    spare = [c for c in columns if c not in chosen.values()]
    if not spare or not chosen["item"]:
        return None
    st.markdown("**Item details in the log**")
    use = st.checkbox(
        "Take item details from the log as the item catalogue",
        value=bool(found),
        key="use_log_items",
        help="For logs that repeat the title, category or description on every event. "
        "Each item gets the most frequent value of each column; the cleaning report says "
        "how many items had differing values.",
    )
    if not found:
        st.caption("No column of the log has one value per item; pick some yourself if you like.")
    if not use:
        return None
    cols = st.columns(len(LOG_ITEM_ROLES) + 1)
    picked = {}
    for col, role in zip(cols, LOG_ITEM_ROLES, strict=False):
        with col:
            guess = found.get(role, Guess(None))
            picked[role] = _role_picker(
                ITEM_ROLE_LABELS[role], spare, guess.column, f"lmap_{role}", guess
            )
    sep = cols[-1].text_input("Category separator", value="|", max_chars=3, key="log_cat_sep")
    if not any(picked.values()):
        st.caption("Choose at least one column, or untick the box.")
        return None
    return ItemMapping(**picked, category_sep=sep or "|")


# --------------------------------------------------------------------------- overview


def overview_section() -> None:
    info = active_dataset()
    if info is None:
        st.info("No dataset yet: upload one in the **Upload** tab.")
        return
    stats = cached_stats(info.name, info.fingerprint)
    span = (
        f"events from {stats['first_event'][:10]} to {stats['last_event'][:10]}"
        if stats["first_event"]
        else "no timestamps (file order)"
    )
    st.caption(
        f"Source: {md_escape(', '.join(info.sources))} · {span} · "
        f"loaded {stats['created'].replace('T', ' ')}"
    )
    cols = st.columns(6)
    cols[0].metric("Users", fmt_int(stats["users"]))
    cols[1].metric("Items", fmt_int(stats["items"]))
    cols[2].metric("Events", fmt_int(stats["events"]))
    cols[3].metric("Density", f"{stats['density']:.3%}")
    if stats["first_event"]:
        first, last = stats["first_event"][:10], stats["last_event"][:10]
        days = (pd.Timestamp(last) - pd.Timestamp(first)).days
        span_text = f"{days:,} days" if days <= 730 else f"{days / 365.25:.1f} years"
        cols[4].metric("Time span", span_text, help=f"{first} to {last}")
    else:
        cols[4].metric("Time span", "—", help="No timestamps: events are in file order")
    cols[5].metric("Popularity Gini", f"{stats['popularity_gini']:.2f}")

    did, fp = info.dataset_id, info.fingerprint
    left, right = st.columns(2)
    over_time = cached_frame("events_over_time", did, fp)
    if over_time.empty:
        left.info("No events over time: this dataset has no timestamps (events are in file order).")
    else:
        left.plotly_chart(charts.events_over_time(over_time))
    right.plotly_chart(charts.events_per_user(cached_frame("events_per_user", did, fp)))
    left, right = st.columns(2)
    left.plotly_chart(
        charts.popularity_long_tail(
            cached_frame("item_popularity", did, fp), stats["popularity_gini"]
        )
    )
    types = cached_frame("event_type_mix", did, fp)
    if types.empty or list(types["event_type"]) == ["(none)"]:
        right.info("No event types: no event type column was mapped.")
    else:
        right.plotly_chart(charts.event_type_mix(types))
    top_categories = cached_frame("top_categories", did, fp)
    if top_categories.empty:
        st.info("No categories: upload an item file with a categories column to see the top ones.")
    else:
        st.plotly_chart(charts.top_categories(top_categories))

    st.subheader("One user's events")
    pick, typed = st.columns(2)
    sample = pick.selectbox(
        "Sample user (most active first)", stats["sample_users"], key="sample_user"
    )
    typed_id = typed.text_input("…or type a user id", key="typed_user").strip()
    user = typed_id or sample
    frame = get_store().user_events(did, user)
    if frame.empty:
        st.warning(f"No events for user {md_escape(user)!s} in {info.name}.")
    else:
        events = with_main_category(frame).drop(columns=["category"])
        st.dataframe(drop_empty_columns(events), hide_index=True)


# --------------------------------------------------------------------------- manage


def manage_section() -> None:
    rows = [d.summary() for d in datasets()]
    if not rows:
        st.info("No datasets yet.")
        return
    st.dataframe(
        [
            {
                k: r[k]
                for k in ("name", "events", "users", "items", "item_rows", "created", "sources")
            }
            for r in rows
        ],
        hide_index=True,
    )
    st.markdown("**Delete a dataset**")
    cols = st.columns([2, 2, 1])
    target = cols[0].selectbox("Dataset to delete", [r["name"] for r in rows], key="drop_name")
    sure = cols[1].checkbox(f"Yes, delete '{target}' and its events", key="drop_confirm")
    if cols[2].button("Delete", disabled=not sure, key="drop_button"):
        models = [m.name for m in get_store().list_models(target)]
        try:
            get_store().drop_dataset(target)
        except StoreError as exc:
            st.error(md_escape(str(exc)))
            return
        st.session_state["last_drop"] = target + (
            f"; its model{'s' if len(models) > 1 else ''} {', '.join(models)} can no longer be used"
            if models
            else ""
        )
        st.cache_data.clear()
        st.rerun()


# --------------------------------------------------------------------------- page

st.title("Data")
if "last_ingest" in st.session_state:
    _show_report(st.session_state.pop("last_ingest"))
if "last_drop" in st.session_state:
    st.success(md_escape(f"Deleted {st.session_state.pop('last_drop')}."))
overview, upload, manage = st.tabs(["Overview", "Upload", "Datasets"])
with overview:
    overview_section()
with upload:
    upload_section()
with manage:
    manage_section()
