"""A search sweep's configs so far, for its next run: which configs are finished (every
seed succeeded; the searcher is told their values before it samples), which lack seeds
(the searcher samples them first, and they run just those seeds), and how many configs
are left to sample. `num_samples` counts configs, each run with every seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.tables import SUCCESS
from orchestrator.objective import Objective
from orchestrator.spec import SweepSpec
from orchestrator.trials import TrialIndex


@dataclass(frozen=True)
class Searched:
    """What a run of a search sweep samples, and what its searcher knows beforehand."""

    samples: int = 0  # configs the searcher samples in this run (the unfinished first)
    trials: int = 0  # trials this run runs: the unfinished configs' missing seeds, the rest's all
    # configs whose every seed succeeded, for Optuna: their point and value
    finished: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    unfinished: list[dict[str, Any]] = field(default_factory=list)  # points that lack seeds
    values: dict[str, float] = field(default_factory=dict)  # trial id -> metric, trials done


def searched(
    spec: SweepSpec, previous: pd.DataFrame, index: TrialIndex, objective: Objective | None
) -> Searched:
    """The configs of `previous` (the trials table so far), against the spec's seeds."""
    if spec.search.algorithm == "grid":
        return Searched()
    done = previous[previous["status"].isin(SUCCESS)] if len(previous) else previous
    values: dict[str, float] = {}  # every done trial's metric (NaN without one)
    if objective is not None:
        column = done[objective.metric] if objective.metric in done else [None] * len(done)
        values = {tid: _number(v) for tid, v in zip(done["trial_id"], column, strict=True)}
    complete, finished, unfinished, missing = 0, [], [], []
    for point in _points(spec, previous):
        seeds = list(index.seeds_of({**spec.params, **point}))
        left = [tid for tid in seeds if tid not in index.done]
        if left:
            unfinished.append(point)
            missing.append(len(left))
            continue
        complete += 1
        if objective is None or spec.search.algorithm != "optuna":
            continue  # random search learns nothing from them
        value = objective.of([values.get(tid, math.nan) for tid in seeds])
        if not math.isnan(value):
            finished.append((point, value))
    samples = max((spec.search.num_samples or 0) - complete, 0)
    unfinished = unfinished[:samples]
    trials = sum(missing[:samples]) + (samples - len(unfinished)) * len(spec.seed_list)
    return Searched(samples, trials, finished, unfinished, values)


def _points(spec: SweepSpec, previous: pd.DataFrame) -> list[dict[str, Any]]:
    """The configs sampled before, as points of the search space (the grid's keys), once
    each. Rows without a config (attempts a killed driver left behind) are no config."""
    keys = list(spec.grid)
    if not len(previous) or "config_id" not in previous or not set(keys) <= set(previous):
        return []
    first = previous.dropna(subset=["config_id"]).drop_duplicates("config_id")
    return [{k: _plain(row[k]) for k in keys} for _, row in first.iterrows()]


def _plain(value: Any) -> Any:
    """A Parquet cell as the Python value the searcher sampled."""
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
