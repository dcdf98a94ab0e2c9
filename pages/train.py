"""Train page: a placeholder until its issue lands."""

import streamlit as st

st.title("Train")
st.info(
    "**Coming next.** Training the BERT preference model in the browser is the next piece of RecLens to land.",
    icon=":material/construction:",
)
st.markdown(
    """
What this page will do:
- train a bidirectional Transformer (BERT4Rec-style, built on Hugging Face `BertModel`) on the active dataset, with fast / balanced / quality presets, live loss and validation curves, and a stop button;
- optionally enrich items with their titles and descriptions through a pretrained text encoder;
- save models to the registry so every page can pick them in the sidebar.

Meanwhile, explore your data on the **Data** page.
"""
)
