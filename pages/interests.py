"""Interests page: a placeholder until its issue lands."""

import streamlit as st

st.title("Interests")
st.info(
    "**Coming next.** Inspecting users' interest vectors needs a trained model; it lands after the Train page.",
    icon=":material/construction:",
)
st.markdown(
    """
What this page will do:
- show what the model believes each user wants next, as category affinities;
- chart how that belief drifts over the user's history and mark the points where interests shifted;
- place the user on a map of all users, with interest segments and nearest neighbours.
"""
)
