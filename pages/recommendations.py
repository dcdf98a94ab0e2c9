"""Recommendations page: a placeholder until its issue lands."""

import streamlit as st

st.title("Recommendations")
st.info(
    "**Coming next.** Per-user recommendations need a trained model; they land after the Train page.",
    icon=":material/construction:",
)
st.markdown(
    """
What this page will do:
- list the top-K items for a user with preference scores, titles and categories;
- explain each recommendation by the past items that drove it;
- let you edit a history (add, remove, reorder items) and watch the list change;
- export top-K lists for every user as CSV or Parquet.
"""
)
