"""Home page: what RecLens is, and where the active dataset stands."""

import streamlit as st

from ui.common import active_dataset, cached_stats, fmt_int

st.title("RecLens")
st.markdown(
    "Understand and predict what your users will do next. Upload a behaviour log, "
    "train a BERT sequence model on it in minutes, then inspect each user's interests, "
    "their recommendations and how well the model really does."
)

info = active_dataset()
if info is None:
    st.info("No dataset yet: upload a behaviour log on the **Data** page.")
else:
    stats = cached_stats(info.name, info.fingerprint)
    st.subheader(f"Active dataset: {info.name}")
    cols = st.columns(4)
    cols[0].metric("Users", fmt_int(stats["users"]))
    cols[1].metric("Items", fmt_int(stats["items"]))
    cols[2].metric("Events", fmt_int(stats["events"]))
    cols[3].metric("Median history", fmt_int(stats["events_per_user"]["median"]))

st.subheader("Where to go")
left, right = st.columns(2)
with left:
    st.page_link(
        "ui/pages/data.py",
        label="**Data**: upload, map columns, explore",
        icon=":material/database:",
    )
    st.page_link(
        "ui/pages/train.py",
        label="**Train**: fit the BERT preference model",
        icon=":material/model_training:",
    )
    st.page_link(
        "ui/pages/metrics.py",
        label="**Metrics**: honest full-ranking evaluation",
        icon=":material/monitoring:",
    )
with right:
    st.page_link(
        "ui/pages/interests.py",
        label="**Interests**: what each user wants",
        icon=":material/person_search:",
    )
    st.page_link(
        "ui/pages/recommendations.py",
        label="**Recommendations**: top-K and why",
        icon=":material/recommend:",
    )
st.caption(
    "The demo dataset is a generated shop log with planted, drifting user interests, "
    "so every page has a ground truth to show. Your own data stays on this machine."
)
