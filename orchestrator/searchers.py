"""Ray Tune searchers adapted to raysweep's results, where a metric may be final-only."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class FinalMetricOptuna(OptunaSearch):
    """Optuna that skips step results lacking its metric (e.g. a score computed at the end)."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)
