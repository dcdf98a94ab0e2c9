"""Uncertainty of evaluation figures: bootstrap confidence intervals over users and the
paired significance test of a model against a baseline.

* **Confidence intervals.** 95 % percentile intervals by a Poisson bootstrap over users
  (each user weighted by a Poisson(1) draw per resample, 1,000 resamples by default).
* **Significance.** A paired sign-flip permutation test on per-user values (two-sided,
  2,000 flips by default), with the bootstrap interval of the paired difference.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_POISSON_CDF = torch.tensor(
    [sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) for k in range(16)]
)


def poisson_weights(n_boot: int, n: int, seed: int = 0) -> torch.Tensor:
    """(n_boot, n) float32 Poisson(1) counts, drawn by inverting the CDF of uniforms
    (several times faster than ``torch.poisson``).

    >>> w = poisson_weights(1000, 100)
    >>> tuple(w.shape), round(float(w.mean()), 1)
    ((1000, 100), 1.0)
    """
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty(n_boot, n)
    chunk = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        u = torch.rand(min(chunk, n_boot - start), n, generator=generator)
        out[start : start + chunk] = torch.bucketize(u, _POISSON_CDF, right=True)
    return out


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    weights: torch.Tensor | None = None,
) -> np.ndarray:
    """Percentile confidence intervals of column means by a Poisson bootstrap over users.

    Each resample weights every user by an independent Poisson(1) count (a close,
    vectorisable stand-in for drawing n users with replacement); the resampled mean
    is ``sum(w * x) / sum(w)``.

    Args:
        values: (n_users, n_metrics) per-user values.
        weights: precomputed :func:`poisson_weights` (n_boot, n_users), shared by every
            scorer of a run (then the intervals are paired too); None draws them here.

    Returns:
        (n_metrics, 2) lower and upper bounds.

    >>> lo, hi = bootstrap_ci(np.ones((50, 1)))[0]
    >>> float(lo), float(hi)
    (1.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if len(values) == 0:
        return np.zeros((values.shape[1], 2))
    if weights is None:
        weights = poisson_weights(n_boot, len(values), seed)
    x = torch.as_tensor(values, dtype=torch.float32)
    boot = ((weights @ x) / weights.sum(1, keepdim=True).clamp_min(1)).double().numpy()
    alpha = (1 - level) / 2
    return np.stack(np.quantile(boot, [alpha, 1 - alpha], axis=0), axis=1)


def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, n_perm: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value that per-user values ``a`` and ``b`` have the same mean.

    Sign-flip permutation test on the paired differences ``d = a - b``: under the
    null hypothesis each ``d_i`` is as likely to be ``-d_i``, so
    ``p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_perm)`` over random signs ``s``.

    >>> paired_permutation_test(np.ones(200), np.zeros(200)) < 0.01
    True
    >>> paired_permutation_test(np.ones(5), np.ones(5))
    1.0
    """
    d = torch.as_tensor(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if len(d) == 0:
        return 1.0
    observed = float(d.mean().abs())
    if observed == 0.0:
        return 1.0
    generator = torch.Generator().manual_seed(seed)
    extreme = 0
    chunk = max(1, min(n_perm, 4_000_000 // len(d)))
    for done in range(0, n_perm, chunk):
        m = min(chunk, n_perm - done)
        signs = torch.randint(0, 2, (m, len(d)), generator=generator, dtype=torch.float64) * 2 - 1
        flipped = (signs @ d).abs() / len(d)
        extreme += int((flipped >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + n_perm)


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 1000,
    n_perm: int = 2000,
    seed: int = 0,
    weights: torch.Tensor | None = None,
) -> dict:
    """How per-user values ``a`` differ from ``b`` on the same users: the mean difference,
    its bootstrap interval (:func:`bootstrap_ci`), the permutation test's p-value
    (:func:`paired_permutation_test`) and whether it is significant at 0.05.

    >>> r = paired_comparison(np.ones(200), np.zeros(200))
    >>> r["difference"], r["ci"], r["significant"]
    (1.0, [1.0, 1.0], True)
    """
    diff = a - b
    lo, hi = bootstrap_ci(diff[:, None], n_boot, seed, weights=weights)[0]
    p = paired_permutation_test(a, b, n_perm, seed)
    return {
        "difference": float(diff.mean()),
        "ci": [float(lo), float(hi)],
        "p_value": float(p),
        "significant": bool(p < 0.05),
    }


def significance_label(sig: dict | None) -> str:
    """``+0.0123 vs pop (p=0.002) *``: the difference to the best baseline, its p-value, and
    a star when significant at 0.05; empty for baselines.

    >>> significance_label(
    ...     {"difference": 0.0123, "against": "pop", "p_value": 0.0021, "significant": True}
    ... )
    '+0.0123 vs pop (p=0.0021) *'
    >>> significance_label(None)
    ''
    """
    if not sig:
        return ""
    star = " *" if sig["significant"] else ""
    return f"{sig['difference']:+.4f} vs {sig['against']} (p={sig['p_value']:.3g}){star}"
