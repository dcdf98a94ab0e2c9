"""Evaluation: full-ranking metrics with confidence intervals, significance, and the
baselines our model is measured against."""
