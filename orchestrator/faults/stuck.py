"""Workers that never come up: Ray granted a trial its resources, and nothing runs in them.

When a node's Python cannot start a worker (a sitecustomize that exits, a broken
environment, a runtime_env that cannot be built), Ray neither fails the actor nor gives
up: it keeps the trial's placement group reserved and tries again, forever, so the sweep
shows "0 running" for as long as anyone waits. An attempt that dies is `StartWatch`'s
job (abort.py); this one sees attempts that never begin. Every few seconds it counts this
run's placement groups that Ray created against the trials running in them. A surplus that
lasts `limits.start_time` while trials wait and none starts stops the sweep. On a busy
shared cluster the waiting trials have no placement group yet, so waiting there for
resources is never mistaken for this.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray import tune
from ray.util import placement_group_table

from orchestrator.errors import TrialsCannotStart
from orchestrator.faults.abort import Abort

POLL_S = 2.0  # the placement group table is asked at most this often, and only after
# this long without a trial starting (it lists every group, removed ones too)

ADVICE = (
    "Ray reserved their resources and keeps trying to start a worker process there: check "
    "that the nodes' Python starts (a sitecustomize, a broken environment, a runtime_env that "
    "cannot be built) and the Ray logs on the nodes (/tmp/ray/session_latest/logs: raylet.out, "
    "python-core-worker-*.log, runtime_env_setup-*.log). Raise limits.start_time if workers "
    "there start slowly."
)


class StuckWorkers(tune.Callback):
    """Stops the sweep once trials have had their resources for `limit` seconds with no
    worker to run them and no trial started meanwhile."""

    def __init__(self, abort: Abort, limit: float | None) -> None:
        self.abort = abort
        self.limit = limit
        self._job = ray.get_runtime_context().get_job_id()
        self._asked = 0.0
        self._since: float | None = None  # since when a surplus has lasted

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._since = None
        self._asked = time.monotonic()  # trials start: nothing to ask for a while

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self.limit is None or now - self._asked < POLL_S:
            return
        self._asked = now
        running = sum(tune_trial.status == "RUNNING" for tune_trial in trials)
        waiting = any(tune_trial.status == "PENDING" for tune_trial in trials)
        surplus = self._ready() - running
        if surplus <= 0 or not waiting:
            self._since = None
        elif self._since is None:
            self._since = now
        elif now - self._since >= self.limit:
            self.abort.because(
                TrialsCannotStart(
                    f"{surplus} trial(s) have had their resources for {now - self._since:.0f} s "
                    f"(limits.start_time: {self.limit:g} s) and no worker came up to run them, "
                    f"so the sweep stopped. {ADVICE}"
                )
            )

    def _ready(self) -> int:
        """This run's placement groups that Ray has created (their ids end with the job's)."""
        return sum(
            group["state"] == "CREATED" and pg_id.endswith(self._job)
            for pg_id, group in placement_group_table().items()
        )
