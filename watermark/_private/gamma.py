"""Upper tail of Gamma(n, 1) for integer n, in log space (no scipy): exact far below 1e-300."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["log_gamma_sf"]


def log_gamma_sf(x: float, n: int) -> float:
    """``ln P(X >= x)`` for ``X ~ Gamma(n, 1)``, the regularized upper incomplete gamma Q(n, x).

    For integer ``n`` it is the Poisson identity ``Q(n, x) = e^-x * sum_{k<n} x^k / k!``. The
    sum is taken relative to its last term: ``d_k = ln(term_k / term_{n-1})`` obeys
    ``d_{k-1} = d_k + ln(k) - ln(x)``, one vectorized cumulative sum, then a log-sum-exp, so
    nothing overflows or underflows whatever ``x`` and ``n`` are.
    """
    if n <= 0 or x <= 0.0:
        return 0.0
    if not math.isfinite(x):
        return -math.inf
    log_x = math.log(x)
    top = -x + (n - 1) * log_x - math.lgamma(n)  # ln of the k = n-1 term times e^-x
    if n == 1:
        return min(0.0, top)
    # d for k = n-2 down to 0: cumulative sums of ln(k+1) - ln(x), k+1 = n-1 .. 1
    steps = np.log(np.arange(n - 1, 0, -1, dtype=np.float64)) - log_x
    d = np.cumsum(steps)
    peak = max(0.0, float(d.max()))
    total = math.exp(-peak) + float(np.exp(d - peak).sum())
    return min(0.0, top + peak + math.log(total))
