"""Evaluation: full-ranking metrics with confidence intervals and significance, ranking our
models against the baselines (:mod:`core.models.baselines`, :mod:`core.training.baselines`)."""
