"""Rank groups by a weighted composite of metrics, each in its declared direction.

Each metric's group means are rescaled to [0, 1], 1 for the best group and 0 for
the worst (min-max in the declared direction); a criterion is the mean of its
metrics' scores; the composite is the weighted mean of criteria (or metrics)
under a profile. Ranks order means only: whether two groups really differ is
the significance table's question.
"""

from __future__ import annotations

import pandas as pd

from analysis.errors import AnalysisError
from analysis.settings import ReportSettings


def normalised(means: pd.DataFrame, directions: dict[str, str]) -> pd.DataFrame:
    """Per metric column, 1 = best group, 0 = worst; a metric equal in every group scores 1."""
    scores = {}
    for metric in means.columns:
        values = means[metric].astype(float)
        low, high = values.min(), values.max()
        if high == low:
            scores[metric] = pd.Series(1.0, index=means.index).where(values.notna())
            continue
        up = (values - low) / (high - low)
        scores[metric] = up if directions[metric] == "higher" else 1 - up
    return pd.DataFrame(scores, index=means.index)


def composite(
    means: pd.DataFrame, settings: ReportSettings, weights: dict[str, float]
) -> pd.DataFrame:
    """Score per group (rows of `means`) under `weights` over criteria or metrics, ranked.

    Columns: one per weighed criterion or metric (its score in [0, 1]), `score`
    (the weighted mean) and `rank` (1 = best).
    """
    parts = {}
    for name in weights:
        members = settings.criteria.get(name, [name])
        missing = [m for m in members if m not in means.columns]
        undirected = [m for m in members if m not in settings.directions]
        if missing or undirected:
            problem = (
                f"no values for {missing}"
                if missing
                else (f"no direction declared for {undirected} (report.directions)")
            )
            raise AnalysisError(f"cannot rank by {name!r}: {problem}")
        parts[name] = normalised(means[members], settings.directions).mean(axis=1, skipna=False)
    table = pd.DataFrame(parts, index=means.index)
    total = sum(weights.values())
    table["score"] = sum(table[name] * (w / total) for name, w in weights.items())
    table["rank"] = table["score"].rank(ascending=False, method="min")
    return table.sort_values(["rank"], na_position="last")


def parse_weights(text: str) -> dict[str, float]:
    """`"val_loss=0.5,pd=0.5"` -> {"val_loss": 0.5, "pd": 0.5}; AnalysisError if malformed."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not name.strip() or not weight >= 0:  # NaN fails this too
            raise AnalysisError(
                f"--weights {text!r}: {item!r} is not NAME=WEIGHT with a weight >= 0, "
                "e.g. --weights val_loss=0.7,tokens_per_s=0.3"
            )
        weights[name.strip()] = weight
    if not any(weights.values()):
        raise AnalysisError(f"--weights {text!r}: give at least one weight above zero")
    return weights
