"""Distributions of a metric per group: a fitted normal and a normality test.

The fit is scipy.stats.norm.fit's maximum likelihood: mu is the mean, sigma the
standard deviation with ddof=0. Shapiro-Wilk needs n >= 3; below that the test
is reported as not done rather than as passed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ALPHA = 0.05


def fit_normal(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mu, sigma) of the maximum-likelihood normal; NaN values are left out. One value
    has no spread to fit: sigma is NaN, not 0."""
    clean = _finite(values)
    mu = float(np.mean(clean)) if len(clean) else np.nan
    return mu, float(np.std(clean)) if len(clean) > 1 else np.nan


def normality(values: Sequence[float] | np.ndarray) -> dict[str, float | str]:
    """Shapiro-Wilk W and p, with a verdict: normal, not normal, or n too small."""
    clean = _finite(values)
    if len(clean) < 3 or np.ptp(clean) == 0:
        why = "n < 3" if len(clean) < 3 else "all values equal"
        return {"shapiro_w": np.nan, "shapiro_p": np.nan, "normality": f"not tested ({why})"}
    # scipy imported here: the figures need fit_normal only, and the processes that draw
    # them (analysis.painters) would pay a second for importing it
    from scipy import stats

    w, p = stats.shapiro(clean)
    verdict = "consistent with normal" if p >= ALPHA else f"not normal (p < {ALPHA})"
    return {"shapiro_w": float(w), "shapiro_p": float(p), "normality": verdict}


def normal_fits(df: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per group: n, mu, sigma and the normality test of `metric`."""
    rows = []
    for key, group in df.groupby(list(by), dropna=False, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        values = group[metric].to_numpy(dtype=float)
        mu, sigma = fit_normal(values)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "metric": metric,
                "n": len(_finite(values)),
                "mu": mu,
                "sigma": sigma,
                **normality(values),
            }
        )
    return pd.DataFrame(rows)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]
