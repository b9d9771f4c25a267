"""Is a difference between groups real? Pairwise and one-way tests of a metric.

Pairwise: Welch's t-test (no equal-variance assumption) with the 95% interval
of the difference of means, Mann-Whitney U (no normality assumption), Hedges' g
(Cohen's d with the small-sample correction), and Holm-corrected p-values over
all pairs of a metric. One-way across the levels of one factor: ANOVA's F and
Kruskal-Wallis' H. A group with n < 2 is not tested; n < 5 is flagged as small.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
SMALL_N = 5


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised difference of means (a - b) over the pooled sd, bias-corrected."""
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return np.nan
    pooled = np.sqrt(
        ((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2)
    )
    if pooled == 0:
        return np.nan
    correction = 1 - 3 / (4 * (n_a + n_b) - 9)
    return float(correction * (np.mean(a) - np.mean(b)) / pooled)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def compare_two(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Welch's t, its p and interval of mean(a) - mean(b); Mann-Whitney U and p; Hedges' g."""
    out = {
        "diff": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "t": np.nan,
        "df": np.nan,
        "p_welch": np.nan,
        "u": np.nan,
        "p_mwu": np.nan,
        "hedges_g": np.nan,
    }
    if len(a) < 1 or len(b) < 1:
        return out
    out["diff"] = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return out
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    out.update(u=float(u.statistic), p_mwu=float(u.pvalue), hedges_g=hedges_g(a, b))
    if np.var(a) == 0 and np.var(b) == 0:
        return out  # no spread at all: t is undefined
    with warnings.catch_warnings():  # near-equal values: scipy warns, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = stats.ttest_ind(a, b, equal_var=False)
    interval = welch.confidence_interval(confidence)
    out.update(
        t=float(welch.statistic),
        df=float(welch.df),
        p_welch=float(welch.pvalue),
        ci_low=float(interval.low),
        ci_high=float(interval.high),
    )
    return out


def paired(diff: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean of paired differences, its t-interval and the paired t-test's p (NaN with
    fewer than two differences or none that differ)."""
    out = {"n": len(diff), "diff": float(np.mean(diff)) if len(diff) else np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}  # fmt: skip
    if len(diff) > 1 and np.ptp(diff) > 0:
        test = stats.ttest_1samp(diff, 0.0)
        interval = test.confidence_interval(confidence)
        out.update(ci_low=float(interval.low), ci_high=float(interval.high), p=float(test.pvalue))
    return out


def pairwise(df: pd.DataFrame, by: str, metric: str, against: str | None = None) -> pd.DataFrame:
    """Every pair of groups (values of column `by`) compared on `metric`, Holm-corrected;
    with `against`, only the pairs that include that group (for many groups)."""
    groups = {
        str(key): _finite(group[metric])
        for key, group in df.groupby(by, sort=True, dropna=False, observed=True)
    }
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(groups.items(), 2):
        if against is not None and against not in (name_a, name_b):
            continue
        rows.append(
            {
                "metric": metric,
                "group_a": name_a,
                "group_b": name_b,
                "n_a": len(a),
                "n_b": len(b),
                "mean_a": float(np.mean(a)) if len(a) else np.nan,
                "mean_b": float(np.mean(b)) if len(b) else np.nan,
                **compare_two(a, b),
                "note": _note(len(a), len(b), rank_test=True),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_welch_holm"] = holm(table["p_welch"])
    table["p_mwu_holm"] = holm(table["p_mwu"])
    return table


def one_way(df: pd.DataFrame, factor: str, metric: str) -> dict[str, float | int | str]:
    """ANOVA and Kruskal-Wallis across the levels of `factor` (other factors pooled)."""
    samples = [
        _finite(g[metric]) for _, g in df.groupby(factor, sort=True, dropna=False, observed=True)
    ]
    tested = [s for s in samples if len(s) >= 2]
    sizes = [len(s) for s in samples]
    result = {
        "factor": factor,
        "metric": metric,
        "levels": len(samples),
        "n_min": min(sizes, default=0),
        "n_max": max(sizes, default=0),
        "f": np.nan,
        "p_anova": np.nan,
        "h": np.nan,
        "p_kruskal": np.nan,
    }
    if len(tested) < 2 or len(tested) < len(samples):
        result["note"] = "not tested: a level has n < 2" if len(samples) > 1 else "one level"
        return result
    pooled = np.concatenate(tested)
    if np.ptp(pooled) == 0:
        result["note"] = "not tested: all values equal"
        return result
    anova, kruskal = stats.f_oneway(*tested), stats.kruskal(*tested)
    result.update(
        f=float(anova.statistic),
        p_anova=float(anova.pvalue),
        h=float(kruskal.statistic),
        p_kruskal=float(kruskal.pvalue),
        note=_note(result["n_min"], result["n_min"]),
    )
    return result


def _note(n_a: int, n_b: int, rank_test: bool = False) -> str:
    smallest = min(n_a, n_b)
    if smallest < 2:
        return "not tested: n < 2"
    if smallest >= SMALL_N:
        return ""
    note = f"small n ({smallest}): low power"
    if rank_test:  # an exact two-sided Mann-Whitney test cannot go below 2 / C(n_a + n_b, n_a)
        note += f"; Mann-Whitney p >= {min(1.0, 2 / math.comb(n_a + n_b, n_a)):.2g}"
    return note


def _finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype=float)
    return array[np.isfinite(array)]
