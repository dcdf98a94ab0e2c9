"""RecLens: understand and predict what your users will do next.

Entry point of the Streamlit app: the page registry and the sidebar shared by
every page. Run it with ``make run`` (or ``streamlit run app.py``).
"""

import streamlit as st

from pages.common import app_icon, dataset_picker, get_store

# A local image: a Material icon here would make the browser fetch it from the internet.
st.set_page_config(page_title="RecLens", page_icon=app_icon(), layout="wide")

get_store()  # opens the database (and seeds the demo dataset on first start)

PAGES = {
    "": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/database:"),
    ],
    "Model": [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    ],
    "Insights": [
        st.Page("pages/interests.py", title="Interests", icon=":material/person_search:"),
        st.Page("pages/recommendations.py", title="Recommendations", icon=":material/recommend:"),
        st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    ],
}

navigation = st.navigation(PAGES)
st.sidebar.title("RecLens")
dataset_picker()
st.sidebar.selectbox(
    "Model",
    ["no models yet"],
    disabled=True,
    help="Models appear here once training lands (see the Train page).",
)
navigation.run()
