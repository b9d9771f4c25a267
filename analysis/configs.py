"""Configs over their seeds: what a searcher is told of a config, and the ranking of a
search sweep's configs.

In a search sweep every config the searcher samples runs with every seed of the spec;
the searcher is told one value per config, `over_seeds` of the seeds' values of its
metric. The driver (orchestrator/run/ledger.py), the workers under a scheduler
(orchestrator/worker/bundles.py) and the report all use this one definition.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

HOW = ("mean", "median", "worst")


def over_seeds(values: Sequence[float], how: str = "mean", mode: str | None = None) -> float:
    """The aggregate of a config's seeds' values: their mean, median, or worst (the max for
    mode min, the min for mode max). NaN when any is NaN or there are none: a seed that
    failed or did not report the metric leaves the config without a value."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    if how == "mean":
        return math.fsum(values) / len(values)
    if how == "median":
        return float(statistics.median(values))
    if how == "worst":
        if mode not in ("min", "max"):
            raise ValueError("the worst of a config's seeds needs mode min or max")
        return float(max(values) if mode == "min" else min(values))
    raise ValueError(f"aggregate {how!r}: one of {', '.join(HOW)}")
