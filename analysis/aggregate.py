"""Aggregates over seeds: a group is a config minus its seed.

Every aggregate carries n, mean, std, sem and a t-interval, so a mean is never
shown without how much it could move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def aggregate(
    df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (group, metric): n, mean, std, sem, ci_low, ci_high, min, max.

    NaN values are left out of n. With n < 2 there is no spread: std, sem and the
    interval are NaN rather than zero.
    """
    rows = []
    for key, group in df.groupby(list(by), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            values = group[metric].dropna().to_numpy(dtype=float)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": metric,
                    **describe(values, confidence),
                }
            )
    return pd.DataFrame(rows)


def describe(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    n = len(values)
    mean = float(np.mean(values)) if n else np.nan
    std = float(np.std(values, ddof=1)) if n > 1 else np.nan
    sem = std / np.sqrt(n) if n > 1 else np.nan
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * sem) if n > 1 else np.nan
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "sem": sem,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "min": float(np.min(values)) if n else np.nan,
        "max": float(np.max(values)) if n else np.nan,
    }
