"""Agreement with people, with 95% bootstrap intervals. scipy computes everything; this module only
says which statistic on which data.

Correlations are on raw predictions, no logistic fit (as LOVE reports them, DESIGN.md 2.1).
Intervals: scipy.stats.bootstrap, paired resampling of (prediction, label) pairs, BCa (percentile
when BCa cannot be computed, e.g. a statistic that is constant under the jackknife).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

METRICS = ("srcc", "plcc", "krcc")


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        if math.isnan(self.value):
            return "-"
        if math.isnan(self.low):
            return f"{self.value:.4f}"
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


def _stat(name: str):
    from scipy import stats

    fn = {"srcc": stats.spearmanr, "plcc": stats.pearsonr, "krcc": stats.kendalltau}[name]

    def statistic(x, y):
        return fn(x, y).statistic

    return statistic


def _accuracy(correct):
    return np.mean(correct)


def _interval(statistic, data: tuple[np.ndarray, ...], n_resamples: int, seed: int) -> tuple[float, float]:
    from scipy import stats

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples (constant inputs) warn; the NaN says it
            try:
                ci = stats.bootstrap(data, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                                     confidence_level=0.95, method=method, rng=np.random.default_rng(seed))
            except (ValueError, FloatingPointError):
                continue
        lo, hi = float(ci.confidence_interval.low), float(ci.confidence_interval.high)
        if not (math.isnan(lo) or math.isnan(hi)):
            return lo, hi
    return math.nan, math.nan


def correlation(name: str, pred, truth, n_resamples: int = 1000, seed: int = 0) -> Estimate:
    """SRCC, PLCC or KRCC of predictions against labels, with its 95% interval (NaN below 3 pairs)."""
    x, y = np.asarray(pred, float), np.asarray(truth, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    statistic = _stat(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(statistic(x, y))
    lo, hi = _interval(statistic, (x, y), n_resamples, seed)
    return Estimate(value, lo, hi, n)


def accuracy(correct, n_resamples: int = 1000, seed: int = 0) -> Estimate:
    c = np.asarray(correct, float)
    if len(c) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    value = float(c.mean())
    lo, hi = _interval(_accuracy, (c,), n_resamples, seed) if 0 < value < 1 else (value, value)
    return Estimate(value, lo, hi, len(c))


def mean(values, n_resamples: int = 1000, seed: int = 0) -> Estimate:
    """A mean and its 95% bootstrap interval (the leaderboard's per-generator score)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if len(v) < 2 or np.ptp(v) == 0:
        return Estimate(float(v.mean()), math.nan if len(v) < 2 else float(v[0]),
                        math.nan if len(v) < 2 else float(v[0]), len(v))
    lo, hi = _interval(np.mean, (v,), n_resamples, seed)
    return Estimate(float(v.mean()), lo, hi, len(v))
