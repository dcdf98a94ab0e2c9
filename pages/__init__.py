"""Streamlit pages of RecLens (listed in app.py; `common` holds what they share)."""
