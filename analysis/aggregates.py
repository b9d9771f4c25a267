"""Aggregates over seeds: a group is a config minus its seed.

Every aggregate carries n, mean, std, sem and a t-interval, so a mean is never
shown without how much it could move. Computed with one groupby per metric, so
a per-step table of a million rows aggregates in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.sweep import label_rows

COLUMNS = ("n", "mean", "std", "sem", "ci_low", "ci_high", "min", "max")


def aggregate(
    df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (group, metric): n, mean, std, sem, ci_low, ci_high, min, max.

    NaN values are left out of n. With n < 2 there is no spread: std, sem and the
    interval are NaN rather than zero.
    """
    by = list(by)
    grouped = df.groupby(by, dropna=False, sort=True, observed=True)
    frames = []
    for metric in metrics:
        table = grouped[metric].agg(["count", "mean", "std", "min", "max"])
        n = table["count"].to_numpy()
        sem = table["std"].to_numpy() / np.sqrt(n)
        with np.errstate(invalid="ignore"):
            half = stats.t.ppf((1 + confidence) / 2, np.where(n > 1, n - 1, np.nan)) * sem
        mean = table["mean"].to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "metric": metric,
                    "n": n,
                    "mean": mean,
                    "std": table["std"].to_numpy(),
                    "sem": sem,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "min": table["min"].to_numpy(),
                    "max": table["max"].to_numpy(),
                },
                index=table.index,
            ).reset_index()
        )
    if not frames:
        return pd.DataFrame(columns=[*by, "metric", *COLUMNS])
    return pd.concat(frames, ignore_index=True)


def curve(frame: pd.DataFrame, x: str, by: Sequence[str], metric: str) -> pd.DataFrame:
    """`metric` aggregated per value of `x` and per combination of `by`, labelled in a
    `group` column; groups come in the order of their values (32 before 128)."""
    table = aggregate(frame, [*by, x], [metric]).dropna(subset=["mean"])
    return table.assign(group=label_rows(table, list(by)))
