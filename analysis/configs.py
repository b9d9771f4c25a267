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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.tables import SUCCESS

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


# What rank_configs returns besides the config's keys.
RANKED = ("config_id", "value", "n", "mean", "low", "high", "rank")


def rank_configs(
    trials: pd.DataFrame,
    metric: str,
    mode: str,
    how: str = "mean",
    config_columns: list[str] | None = None,
    seeds: int | None = None,
) -> pd.DataFrame:
    """A search sweep's configs ranked by what the searcher was told of each, best first.

    One row per config_id, from each trial's latest attempt: the config's keys
    (`config_columns` without the seed; None shows none), `value` (`over_seeds` of the
    seeds' values of `metric`: NaN when a seed's latest attempt did not succeed or lacks
    the metric, or, with `seeds` given, when the config has fewer seeds than that, as the
    searcher hears of a config only once all its seeds ended), `n` (seeds with a value),
    their `mean`, `low`/`high` (its 95% t-interval; NaN when n < 2) and `rank` (1 = best
    by value in `mode`; none for a config without a value, which comes last).
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode {mode!r}: min or max")
    keys = [c for c in config_columns or [] if c not in ("seed", "config_id") and c in trials]
    latest = latest_attempts(trials)
    per_seed = _seed_values(latest, metric)
    rows = [
        {
            "config_id": config_id,
            **{k: group[k].iloc[0] for k in keys},
            **_over_seeds_row(group["_value"].tolist(), how, mode, seeds),
        }
        for config_id, group in per_seed.groupby("config_id", sort=True)
    ]
    table = pd.DataFrame(rows, columns=["config_id", *keys, *RANKED[1:-1]])
    return _ranked(table, mode)


def latest_attempts(trials: pd.DataFrame) -> pd.DataFrame:
    """Each trial's row with the highest attempt number: the attempt that decided it."""
    return trials.sort_values("attempt", kind="stable").groupby("trial_id").tail(1)


def _seed_values(latest: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`latest` with `_value`: the metric where the attempt succeeded, else NaN."""
    succeeded = latest["status"].isin([str(s) for s in SUCCESS])
    if metric not in latest:
        return latest.assign(_value=math.nan)
    reported = pd.to_numeric(latest[metric], errors="coerce").astype(float)
    return latest.assign(_value=reported.where(succeeded))


def _over_seeds_row(
    values: list[float], how: str, mode: str, seeds: int | None
) -> dict[str, float | int]:
    """value, n, mean, low, high of one config's seeds' values (NaN for a seed without one)."""
    have = [v for v in values if not math.isnan(v)]
    complete = seeds is None or len(values) >= seeds
    mean = math.fsum(have) / len(have) if have else math.nan
    half = t_half_width(have)
    return {
        "value": over_seeds(values, how, mode) if complete else math.nan,
        "n": len(have),
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
    }


def t_half_width(values: Sequence[float], confidence: float = 0.95) -> float:
    """Half the width of the Student-t interval of the mean of `values`; NaN for fewer
    than two."""
    if len(values) < 2:
        return math.nan
    from scipy import stats  # here: the workers import this module for over_seeds alone

    with np.errstate(invalid="ignore"):  # an infinite value: no interval, not an error
        sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * sem


def _ranked(table: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Best first (ties by config_id), configs without a value last and unranked."""
    ordered = table.sort_values(
        ["value", "config_id"], ascending=[mode == "min", True], na_position="last"
    ).reset_index(drop=True)
    rank = ordered["value"].rank(method="min", ascending=mode == "min")
    return ordered.assign(rank=rank.astype("Int64"))


def ranked_lines(ranked: pd.DataFrame, keys: list[str], top: int) -> pd.DataFrame:
    """The first `top` rows of `rank_configs` as text for a reader: rank, the keys, value,
    n and the interval ("-" where there is none)."""
    shown = ranked.head(top)
    return pd.DataFrame(
        {
            "rank": [_text(r) for r in shown["rank"]],
            **{k: [_text(v) for v in shown[k]] for k in keys if k in shown},
            "value": [_text(v) for v in shown["value"]],
            "n": shown["n"].astype(int).tolist(),
            "95% interval": [
                "-" if math.isnan(lo) else f"[{_text(lo)}, {_text(hi)}]"
                for lo, hi in zip(shown["low"], shown["high"], strict=True)
            ],
        }
    )


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class SearchGoal:
    """What a search sweep's searcher was told of each config: `how` over seeds of `metric`,
    better in `mode`, once all `seeds` of the config ended."""

    metric: str
    mode: str
    how: str
    seeds: int | None

    @property
    def title(self) -> str:
        return f"configs ranked by {self.how} {self.metric} over seeds"


def search_goal(spec: dict[str, Any]) -> SearchGoal | None:
    """The searcher's goal from sweep.json's spec; None for a grid, or a search without a
    metric and a mode (a random search that optimises nothing)."""
    search = spec.get("search") or {}
    if isinstance(search, str):  # `search: random`, as a spec may shorten it
        search = {"algorithm": search}
    if search.get("algorithm", "grid") == "grid" or not search.get("metric"):
        return None
    if search.get("mode") not in ("min", "max"):
        return None
    seeds = spec.get("seeds")
    count = seeds if isinstance(seeds, int) else (len(seeds) if seeds else None)
    return SearchGoal(search["metric"], search["mode"], search.get("aggregate", "mean"), count)


def rank_search(
    trials: pd.DataFrame, meta: dict[str, Any], goal: SearchGoal | None = None
) -> tuple[SearchGoal, pd.DataFrame, list[str]] | None:
    """A search sweep's configs ranked as its searcher saw them, from its trials and
    sweep.json: (goal, `rank_configs`' table, the config keys that tell configs apart).
    None for a grid sweep, a search without a goal, or trials without a config_id. With
    `goal`, any sweep's configs ranked by that goal instead."""
    goal = goal or search_goal(meta.get("spec") or {})
    if goal is None or "config_id" not in trials or trials["config_id"].isna().all():
        return None
    columns = meta.get("config_columns") or []
    ranked = rank_configs(trials, goal.metric, goal.mode, goal.how, columns, goal.seeds)
    keys = [c for c in ranked.columns if c not in RANKED]
    varying = [k for k in keys if ranked[k].nunique(dropna=False) > 1]
    return goal, ranked, varying or keys
