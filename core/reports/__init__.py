"""Reports: Plotly figures (shared with the app) and the self-contained HTML report."""
