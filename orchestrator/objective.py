"""What a searcher or a scheduler is told of a config that runs with several seeds.

In a search sweep each config a searcher samples runs with every seed of the spec, as one
Ray Tune trial (orchestrator/worker/bundles.py). The searcher is told, per config, the
spec's `search.aggregate` over its seeds of `search.metric` (orchestrator/run/ledger.py);
ASHA, per step, the same aggregate of its metric over the seeds still running
(the bundle's step-aligned outbox). The aggregate itself is analysis/configs.over_seeds,
which the report ranks configs by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.configs import over_seeds
from orchestrator.spec import SweepSpec


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
