"""Metrics page: a placeholder until its issue lands."""

import streamlit as st

st.title("Metrics")
st.info(
    "**Coming next.** Honest full-ranking evaluation needs a trained model; it lands after the Train page.",
    icon=":material/construction:",
)
st.markdown(
    """
What this page will do:
- evaluate models with full-ranking leave-one-out (HR, NDCG, MRR, Recall, coverage, novelty, diversity) and bootstrap confidence intervals;
- compare them with strong baselines (most popular, ItemKNN, Markov, EASE, SASRec-style Transformer);
- break results down by history length and item popularity, as Plotly charts.
"""
)
