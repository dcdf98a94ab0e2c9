"""RecLens: understand and predict what your users will do next.

Entry point of the Streamlit app: the page registry and the sidebar shared by
every page. Run it with ``make run`` (or ``streamlit run app.py``).
"""

import streamlit as st
from PIL import Image, ImageDraw


@st.cache_resource
def app_icon() -> Image.Image:
    """The favicon, drawn locally (a Material icon would be fetched from the internet)."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((0, 0, 63, 63), radius=14, fill=(76, 110, 245, 255))
    for i, height in enumerate((18, 30, 42)):
        x = 12 + i * 14
        draw.rectangle((x, 52 - height, x + 9, 52), fill=(255, 255, 255, 255))
    return icon


st.set_page_config(page_title="RecLens", page_icon=app_icon(), layout="wide")

PAGES = {
    "": [
        st.Page("ui/pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("ui/pages/data.py", title="Data", icon=":material/database:"),
    ],
    "Model": [
        st.Page("ui/pages/train.py", title="Train", icon=":material/model_training:"),
    ],
    "Insights": [
        st.Page("ui/pages/interests.py", title="Interests", icon=":material/person_search:"),
        st.Page(
            "ui/pages/recommendations.py", title="Recommendations", icon=":material/recommend:"
        ),
        st.Page("ui/pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    ],
}

navigation = st.navigation(PAGES)

from ui.common import dataset_picker, get_store, model_picker  # noqa: E402 (imports torch)

get_store()  # opens the database (and seeds the demo dataset on first start)
st.sidebar.title("RecLens")
dataset_picker()
model_picker()
navigation.run()
