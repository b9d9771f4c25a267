"""Per-attempt limits: a wall time (`trial_time`) and a longest silence (`report_gap`).

Ray Tune has no hard per-trial timeout: its stoppers run only when a trial reports, so a
trial that hangs never meets them (ray-project/ray#47475). This callback looks at every
running attempt on each step of Tune's loop (about ten times a second) and kills the
worker of one past its limit, which frees its CPUs and GPU whatever the experiment is
doing. Tune then sees the attempt fail and retries it per `retries`; the ledger records it
as `timeout` with the reason given here.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray import tune

from orchestrator.spec import Limits
from orchestrator.worker.messages import ends_a_trial


class TrialLimits(tune.Callback):
    """Kills attempts past the spec's `limits`; `reason(tune_trial)` says why it killed one."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._running: dict[str, Any] = {}  # Tune trial id -> Tune trial, while it runs
        self._started: dict[str, float] = {}  # Tune trial id -> when this attempt started
        self._heard: dict[str, float] = {}  # ... and when it last reported
        self._reasons: dict[str, str] = {}

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if trial.trial_id in self._running:
            self._heard[trial.trial_id] = now = time.monotonic()
            if ends_a_trial(result):  # a bundle's next trial starts: the limit is per trial
                self._started[trial.trial_id] = now

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.limits.trial_time is not None or self.limits.report_gap is not None:
            self._running[trial.trial_id] = trial
            self._started[trial.trial_id] = self._heard[trial.trial_id] = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Looks at the attempts this callback saw start, not at every trial of the sweep:
        Tune calls this thousands of times in a sweep of thousands of trials."""
        now = time.monotonic()
        for key, tune_trial in list(self._running.items()):
            if tune_trial.status != "RUNNING":
                self._forget(key)  # ended; a retry starts again through on_trial_start
                continue
            reason = self._over(now - self._started[key], now - self._heard[key])
            if reason and tune_trial.temporary_state.ray_actor is not None:
                self._forget(key)
                self._reasons[key] = reason
                ray.kill(tune_trial.temporary_state.ray_actor, no_restart=True)

    def _forget(self, key: str) -> None:
        for table in (self._running, self._started, self._heard):
            table.pop(key, None)

    def reason(self, tune_trial: Any) -> str | None:
        """Why this callback stopped the Tune trial's attempt that just ended, if it did."""
        return self._reasons.pop(tune_trial.trial_id, None)

    def _over(self, ran: float, silent: float) -> str | None:
        wall, gap = self.limits.trial_time, self.limits.report_gap
        if wall is not None and ran > wall:
            return f"timeout: the attempt ran {ran:.0f} s, past limits.trial_time ({wall:g} s)"
        if gap is not None and silent > gap:
            return (
                f"timeout: the attempt reported nothing for {silent:.0f} s, past "
                f"limits.report_gap ({gap:g} s)"
            )
        return None
