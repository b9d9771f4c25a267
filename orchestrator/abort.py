"""Stopping a whole sweep from the driver, with one message saying why.

A sweep whose trials cannot start at all (nodes that cannot import the experiment or its
packages, a cluster and a driver that disagree on token authentication) would otherwise
spend every retry of every trial, each failing in seconds, and end with a table of
failures and no explanation. `StartWatch` sees the first attempts of a run die before
the experiment reported anything and stops the sweep through `Abort`, a Tune stopper.
"""

from __future__ import annotations

from typing import Any

from ray import tune

CHECKS = (
    "Check that every node can import the experiment and its packages, that this machine "
    "and the cluster agree on token authentication (RAY_AUTH_MODE, ~/.ray/auth_token), "
    "and the Ray logs on the nodes (/tmp/ray/session_latest/logs)."
)


class Abort(tune.Stopper):
    """A Tune stopper that ends the whole sweep once `trigger` gave it a reason."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def trigger(self, reason: str) -> None:
        self.reason = self.reason or reason

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.reason is not None


class StartWatch:
    """Aborts the sweep when the first `limit` attempts to end in a run all failed before
    the experiment reported anything; one attempt that reported ends the watch."""

    def __init__(self, abort: Abort, limit: int = 3) -> None:
        self.abort = abort
        self.limit = limit
        self.deaths = 0
        self.watching = True

    def attempt_ended(self, status: str, reported: bool, error: str | None) -> None:
        if not self.watching:
            return
        if reported or status in ("ok", "stopped", "timeout", "oom"):
            self.watching = False
            return
        self.deaths += 1
        if self.deaths >= self.limit:
            self.watching = False
            self.abort.trigger(
                f"the first {self.deaths} attempts of this run all died before the experiment "
                f"ran (none reported anything), so the sweep stopped instead of retrying "
                f"every trial. The last error:\n{_last_lines(error)}\n{CHECKS}"
            )


def _last_lines(error: str | None, count: int = 6) -> str:
    lines = [line for line in (error or "no error was recorded").splitlines() if line.strip()]
    return "\n".join(f"  {line}" for line in lines[-count:])
