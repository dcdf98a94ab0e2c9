"""The app's pages (registered in ``app.py`` with ``st.navigation``).

Opened at a page's URL before ``app.py`` has ever run in this server process (a
browser tab restored after a restart), Streamlit still uses its old multipage mode,
because this folder is called ``pages/``: it runs the page file alone, without the
app's navigation, sidebar and store, and lists every file here as a page. Every
page imports this package first, so this is the place to switch that mode off and
rerun, which runs ``app.py`` and then the page the URL asked for.
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    st.rerun()
