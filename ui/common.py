"""What every page shares: the store, the active dataset, cached queries.

UI code only: the figures and queries themselves live in ``core``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.common import escape
from core.models.registry import lost_model_message
from core.services import open_app_store
from core.store import DatasetInfo, Store

ACTIVE_DATASET = "active_dataset"
# A page that creates a dataset sets this; the picker switches to it on the next run
# (a widget's own key cannot be changed once the widget has been drawn).
PENDING_DATASET = "pending_dataset"

# Text from data in Markdown (messages, captions, metrics, labels): one helper, in core.
md_escape = escape.markdown


@st.cache_resource(show_spinner="Opening the database…")
def get_store() -> Store:
    """The process-wide store, opened once (a new database gets the demo dataset on first
    start: :func:`core.services.open_app_store`)."""
    return open_app_store()


def datasets() -> list[DatasetInfo]:
    """The catalogue (cheap: one small query)."""
    return get_store().list_datasets()


def active_dataset() -> DatasetInfo | None:
    """The dataset picked in the sidebar, or None when the store is empty."""
    name = st.session_state.get(ACTIVE_DATASET)
    return get_store().find_dataset(name) if name else None


def _sidebar_picker(label: str, names: list[str], active: str, pending: str, help: str) -> None:
    """A sidebar selectbox whose choice lives in the plain session key ``active``.

    A plain key (not the widget's own) survives page switches, and a page can ask
    for a new choice by setting ``pending`` (a drawn widget's key cannot be changed).
    """
    wanted = st.session_state.pop(pending, None)
    if wanted in names:
        st.session_state[active] = wanted
        st.session_state.pop(LOST_MODEL, None)  # a new choice (a trained or loaded model)
    if st.session_state.get(active) not in names:
        st.session_state[active] = names[0]
    widget = f"{active}_picker"

    def remember() -> None:
        st.session_state[active] = st.session_state[widget]
        st.session_state.pop(LOST_MODEL, None)  # a choice of the user's: the notice is read

    st.session_state[widget] = st.session_state[active]
    st.sidebar.selectbox(label, names, key=widget, on_change=remember, help=help)


def dataset_picker() -> None:
    """Sidebar selector of the active dataset, shared by every page."""
    names = [d.name for d in datasets()]
    if not names:
        st.sidebar.info("No datasets yet: upload one on the Data page.")
        st.session_state.pop(ACTIVE_DATASET, None)
        return
    _sidebar_picker(
        "Dataset",
        names,
        ACTIVE_DATASET,
        PENDING_DATASET,
        "The dataset every page works on. Upload more on the Data page.",
    )


ACTIVE_MODEL = "active_model"
PENDING_MODEL = "pending_model"
# Why the model this session was using disappeared (its dataset was deleted), shown in
# the sidebar until the user picks a dataset or model.
LOST_MODEL = "lost_model_notice"


def model_picker() -> None:
    """Sidebar selector of the active model among those trained on the active dataset."""
    info = active_dataset()
    store = get_store()
    names = [m.name for m in store.list_models(info.name)] if info else []
    previous = st.session_state.get(ACTIVE_MODEL)
    if previous and previous not in names and store.orphaned_model_path(previous):
        st.session_state[LOST_MODEL] = lost_model_message(store, previous)
    notice = st.session_state.get(LOST_MODEL)
    if notice:
        st.sidebar.warning(md_escape(notice[:1].upper() + notice[1:]) + ".")
    if not names:
        st.sidebar.selectbox(
            "Model", ["no models yet"], disabled=True, help="Train one on the Train page."
        )
        st.session_state.pop(ACTIVE_MODEL, None)
        return
    _sidebar_picker(
        "Model",
        names,
        ACTIVE_MODEL,
        PENDING_MODEL,
        "The model the Interests, Recommendations and Metrics pages use.",
    )


def require_dataset() -> DatasetInfo:
    """The active dataset, or stop the page with a pointer to the Data page."""
    info = active_dataset()
    if info is None:
        st.info("There is no dataset yet. Upload a behaviour log on the **Data** page.")
        st.stop()
    return info


# Query results are cached per dataset version (its fingerprint), never globally.


@st.cache_data(show_spinner=False, max_entries=32)
def cached_stats(name: str, fingerprint: str) -> dict:
    return get_store().dataset_stats(name)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_frame(query: str, dataset_id: int, fingerprint: str) -> pd.DataFrame:
    """One of the store's per-dataset exploration queries, by method name."""
    allowed = {
        "events_over_time",
        "events_per_user",
        "item_popularity",
        "event_type_mix",
        "top_categories",
    }
    if query not in allowed:
        raise ValueError(f"unknown query {query}")
    return getattr(get_store(), query)(dataset_id)


def fmt_int(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"
