"""What the Interests and Recommendations pages share: the active model's data, cached.

UI code only: everything computed here comes from ``core.serving`` (``model_data``,
``recommend``, ``interests``). Loaded models are cached per (model name, registration time),
so a retrained model of the same name is loaded afresh and nothing reloads on a click.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.models.checkpoint import CheckpointError
from core.models.registry import resolve_model
from core.serving import interests
from core.serving.model_data import ModelData, load_model_data
from core.serving.recommend import fit_side_baseline
from core.store import StoreError
from ui.common import ACTIVE_MODEL, active_dataset, get_store, md_escape

# The user both pages look at (a plain key: it survives page switches).
SELECTED_USER = "selected_user"


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def model_data(name: str, created: str) -> ModelData:
    """The model, its dataset's histories and its catalogue.

    ``created`` (registration time and dataset fingerprint) only keys the cache.
    """
    store = get_store()
    return load_model_data(store, resolve_model(store, name))


@st.cache_resource(show_spinner="Computing every user's interest vector…", max_entries=4)
def interest_vectors(name: str, created: str) -> interests.InterestVectors:
    """All users' interest vectors (cached in the database too, so a restart is quick)."""
    return interests.all_interest_vectors(get_store(), model_data(name, created))


@st.cache_resource(show_spinner="Fitting the baseline…", max_entries=6)
def side_baseline(name: str, created: str, baseline: str):
    """A baseline fitted on the model's training histories
    (core.serving.recommend.fit_side_baseline)."""
    return fit_side_baseline(model_data(name, created), baseline)


@st.cache_data(show_spinner="Drawing the map of users…", max_entries=16)
def user_map(name: str, created: str, k: int, method: str, level: str) -> interests.UserMap:
    data = model_data(name, created)
    return interests.user_map(
        data, interest_vectors(name, created), k=k, method=method, level=level
    )


@st.cache_data(show_spinner=False, max_entries=4)
def planted(name: str, created: str) -> pd.DataFrame:
    """Planted vs recovered interests (demo data only; empty otherwise)."""
    data = model_data(name, created)
    return interests.planted_comparison(get_store(), data, interest_vectors(name, created))


def require_model() -> tuple[ModelData, str, str]:
    """The active model's data and its cache key, or stop the page with a pointer to Train."""
    name = st.session_state.get(ACTIVE_MODEL)
    info = get_store().find_model(name) if name else None
    if info is None:
        st.info(
            "There is no trained model for this dataset yet. Train one on the **Train** page "
            "(the *fast* preset takes about a minute on the demo data), then pick it in the "
            "sidebar."
        )
        st.page_link(
            "ui/pages/train.py", label="Go to the Train page", icon=":material/model_training:"
        )
        st.stop()
    dataset = active_dataset()
    # the cache key: a retrained model (new registration) or re-loaded data loads afresh
    created = f"{info.created}|{dataset.fingerprint if dataset else ''}"
    try:
        data = model_data(info.name, created)
    except (CheckpointError, StoreError, OSError) as exc:
        st.error(f"The model {md_escape(info.name)} cannot be used: {md_escape(str(exc))}")
        st.stop()
    for warning in data.saved.warnings:
        st.warning(md_escape(warning))
    return data, info.name, created


def current_user(data: ModelData) -> str:
    """The selected user when the model knows them, else the first user (and remember it)."""
    user = st.session_state.get(SELECTED_USER)
    if user is None or data.user_number(user) is None:
        user = str(data.histories.user_ids[0])
        st.session_state[SELECTED_USER] = user
    return user


def user_search(data: ModelData, key: str) -> None:
    """A search box: an exact id, or the first id that contains the text, becomes the user."""

    def apply() -> None:
        text = st.session_state[key].strip()
        if not text:
            return
        if data.user_number(text) is not None:
            st.session_state[SELECTED_USER] = text
            return
        ids = data.histories.user_ids
        hits = [u for u in ids[: min(len(ids), 200_000)] if text.lower() in str(u).lower()]
        if hits:
            st.session_state[SELECTED_USER] = str(hits[0])
        else:
            st.session_state[f"{key}_miss"] = text

    st.text_input(
        "Search a user by id",
        key=key,
        on_change=apply,
        placeholder="e.g. u00042",
        help="An exact id, or part of one (the first match is taken)",
    )
    missed = st.session_state.pop(f"{key}_miss", None)
    if missed:
        st.warning(f"No user id contains “{md_escape(missed)}”.")


def item_label(data: ModelData, index: int) -> str:
    title = data.catalog.titles[index]
    item = data.catalog.item_ids[index]
    return f"{title} ({item})" if title else str(item)
