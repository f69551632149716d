"""Upper tail of Gamma(n, 1) for integer n, in log space (no scipy): exact far below 1e-300."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["log_gamma_sf"]

# Terms below e^-80 of the largest are dropped: with the geometric decay beyond them (see
# _windowed) their sum stays under 1e-30 of the total, far below a double's precision.
_CUT = 80.0
# Half-width of the window around the largest term, in standard deviations of Poisson(x);
# the edge check below proves it wide enough (or the full sum is taken).
_WIDTH_SIGMAS = 14.0


def log_gamma_sf(x: float, n: int) -> float:
    """``ln P(X >= x)`` for ``X ~ Gamma(n, 1)``, the regularized upper incomplete gamma Q(n, x).

    For integer ``n`` it is the Poisson identity ``Q(n, x) = e^-x * sum_{k<n} x^k / k!``,
    taken in log space relative to its largest term so nothing overflows or underflows
    whatever ``x`` and ``n`` are. Only the terms within ~14 standard deviations of the largest
    are summed (O(sqrt(x)) work instead of O(n): the detector calls this once per text).
    """
    if n <= 0 or x <= 0.0:
        return 0.0
    if not math.isfinite(x):
        return -math.inf
    log_x = math.log(x)
    if n == 1:
        return min(0.0, -x)
    width = int(_WIDTH_SIGMAS * math.sqrt(x)) + 64
    windowed = _windowed(x, n, log_x, width) if 4 * width < n else None
    if windowed is not None:
        return windowed
    return _from_table(x, n, log_x) if n <= _TABLE_SIZE else _full(x, n, log_x)


_TABLE_SIZE = 4096
_table: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None


def _tables() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``k`` and ``ln k!`` for ``k < _TABLE_SIZE``, built once (lgamma: exact to an ulp)."""
    global _table
    if _table is None:
        ks = np.arange(_TABLE_SIZE, dtype=np.float64)
        _table = ks, np.array([math.lgamma(k + 1.0) for k in range(_TABLE_SIZE)])
    return _table


def _from_table(x: float, n: int, log_x: float) -> float:
    """Every term as ``k ln x - ln k!`` from the tables: six NumPy calls and no logarithm
    over ``n`` (on a few hundred tokens the calls, not the terms, are the cost)."""
    ks, log_factorials = _tables()
    terms = ks[:n] * log_x
    terms -= log_factorials[:n]
    peak = float(terms.max())
    terms -= peak
    np.exp(terms, out=terms)
    return min(0.0, -x + peak + math.log(float(terms.sum())))


def _windowed(x: float, n: int, log_x: float, width: int) -> float | None:
    """The sum over a window around the largest term ``T_m`` (``T_k = x^k / k!``), or None
    when the window's edges are not yet below ``e^-_CUT * T_m``.

    ``d_k = ln(T_k / T_m)`` is concave in ``k`` (its steps ``ln x - ln k`` fall as ``k``
    grows), so past an edge below ``-_CUT`` every term is smaller still and shrinks at least
    geometrically: what the window leaves out is negligible.
    """
    m = min(n - 1, int(x))  # T_k grows while k < x
    lo, hi = max(0, m - width), min(n - 1, m + width)
    # k = m+1 .. hi: d_k = sum_{j=m+1..k} (ln x - ln j); k = m-1 .. lo: sum_{j=k+1..m} (ln j - ln x)
    up = np.cumsum(log_x - np.log(np.arange(m + 1, hi + 1, dtype=np.float64)))
    down = np.cumsum(np.log(np.arange(m, lo, -1, dtype=np.float64)) - log_x)
    if (hi < n - 1 and up[-1] > -_CUT) or (lo > 0 and down[-1] > -_CUT):
        return None
    total = 1.0 + float(np.exp(up).sum()) + float(np.exp(down).sum())
    log_top = m * log_x - math.lgamma(m + 1)
    return min(0.0, -x + log_top + math.log(total))


def _full(x: float, n: int, log_x: float) -> float:
    """Every term, relative to the last: ``d_{k-1} = d_k + ln(k) - ln(x)``."""
    top = -x + (n - 1) * log_x - math.lgamma(n)  # ln of the k = n-1 term times e^-x
    steps = np.log(np.arange(n - 1, 0, -1, dtype=np.float64)) - log_x
    d = np.cumsum(steps)
    peak = max(0.0, float(d.max()))
    total = math.exp(-peak) + float(np.exp(d - peak).sum())
    return min(0.0, top + peak + math.log(total))
