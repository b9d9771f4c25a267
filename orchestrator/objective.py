"""What a searcher or a scheduler is told of a config that runs with several seeds.

In a search sweep each config a searcher samples runs with every seed of the spec, as one
Ray Tune trial (orchestrator/worker/bundles.py). The searcher is told, per config, the
spec's `search.aggregate` over its seeds of `search.metric` (orchestrator/run/ledger.py);
ASHA, per step, the same aggregate of its metric over the seeds still running
(the bundle's step-aligned outbox). The aggregate itself is analysis/configs.over_seeds,
which the report ranks configs by.

`goal`: the metric and mode a command ranks a sweep's configs by when not told
(`sweep confirm`, `sweep status --watch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.configs import over_seeds
from analysis.settings import ReportSettings
from orchestrator.errors import InputError
from orchestrator.spec import SweepSpec

MODES = {"lower": "min", "higher": "max"}


@dataclass(frozen=True)
class Objective:
    """A metric, its direction and how a config's seeds' values make one value."""

    metric: str
    mode: str | None = None
    how: str = "mean"

    def of(self, values: Sequence[float]) -> float:
        """The config's value: NaN when a seed has none (it failed, or lacks the metric)."""
        return over_seeds(values, self.how, self.mode)


def for_searcher(spec: SweepSpec) -> Objective | None:
    """What a search sweep's searcher is told of each config (None: no metric to tell)."""
    search = spec.search
    if search.algorithm == "grid" or search.metric is None:
        return None
    return Objective(search.metric, search.mode, search.aggregate)


def for_scheduler(spec: SweepSpec) -> Objective | None:
    """What ASHA is told of a config at each step (None: no scheduler)."""
    scheduler, search = spec.scheduler, spec.search
    if scheduler is None:
        return None
    metric = scheduler.metric or search.metric
    assert metric is not None  # the spec requires one
    return Objective(metric, scheduler.mode or search.mode or "min", search.aggregate)


def goal(
    spec: dict[str, Any],
    settings: ReportSettings,
    metric: str | None = None,
    mode: str | None = None,
    where: str = "",
) -> tuple[str, str]:
    """The metric and mode to rank configs by: as given, else the spec's search.metric and
    search.mode, else its report settings: the first of report.metrics, or the one metric
    report.directions names, with its direction (lower: min, higher: max)."""
    search = spec.get("search") or {}
    if isinstance(search, str):
        search = {"algorithm": search}
    directions = settings.directions
    if metric is None:
        named = [m for m in (search.get("metric"), *settings.metrics[:1]) if m]
        only = list(directions) if len(directions) == 1 else []
        metric = next(iter([*named, *only]), None)
    if metric is None:
        raise InputError(
            f"{where}: no metric to rank its configs by: its spec has no search.metric, "
            "and its report settings name no metric (report.metrics, or one metric in "
            "report.directions); give --metric METRIC --mode min|max"
        )
    if mode is None:
        mode = search.get("mode") if search.get("metric") == metric else None
    if mode is None and metric in directions:
        mode = MODES[directions[metric]]
    if mode is None:
        raise InputError(
            f"{where}: is {metric} better low or high? Neither search.mode nor "
            f"report.directions of its spec says; give --mode min or --mode max"
        )
    return metric, mode


def family_defaults(meta: dict[str, Any]) -> ReportSettings:
    """The report defaults the experiment of a sweep (its sweep.json, `meta`) declares; none
    when it cannot be imported here."""
    from orchestrator.registry import resolve

    folders = [Path(p) for p in (meta.get("source_dir"), Path.cwd()) if p]
    try:
        return resolve(meta["experiment"], folders).report or ReportSettings()
    except Exception:
        return ReportSettings()
