"""The Streamlit app's code: ``pages/`` holds one file per page (registered in
``app.py`` with ``st.navigation``); ``common.py`` and ``model_views.py`` what pages
share. Only this package imports Streamlit; it calls ``core`` for all the real work."""
