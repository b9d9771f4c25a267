"""Aborting a whole sweep from the driver, and saying why afterwards.

An exception raised in a Tune callback reaches `Tuner.fit()` as a TuneError wrapping a
traceback, and cuts short the bookkeeping after it. A callback (or anything the runner
wraps) calls `abort.because(reason)` instead: Tune asks this stopper after every event,
stops every trial, and returns; the runner records the run, then `raise_reason()`.

Two reasons stop a sweep: the storage is full (store.StorageFull), or its trials cannot
start at all (nodes that cannot import the experiment or its packages, a cluster and a
driver that disagree on token authentication), which would otherwise spend every retry
of every trial, each failing in seconds, and end with a table of failures and no
explanation: `StartWatch` sees the first attempts of a run die before the experiment
reported anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ray import tune

from analysis.tables import Status
from orchestrator.errors import TrialsCannotStart

CHECKS = (
    "Check that every node can import the experiment and its packages, that this machine "
    "and the cluster agree on token authentication (RAY_AUTH_MODE, ~/.ray/auth_token), "
    "and the Ray logs on the nodes (/tmp/ray/session_latest/logs)."
)


class Abort(tune.Stopper):
    """A Tune stopper that ends the sweep once `because` was called; the first reason wins."""

    def __init__(self) -> None:
        self.reason: Exception | None = None

    def because(self, reason: Exception) -> None:
        if self.reason is None:
            self.reason = reason

    @contextlib.contextmanager
    def on(self, *errors: type[Exception]) -> Iterator[None]:
        """Stop the sweep, with it as the reason, when the block raises one of `errors`."""
        try:
            yield
        except errors as exc:
            self.because(exc)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # single trials are not stopped here

    def stop_all(self) -> bool:
        return self.reason is not None

    def raise_reason(self) -> None:
        if self.reason is not None:
            raise self.reason


class StartWatch:
    """Aborts the sweep when the first `limit` attempts to end in a run all failed before
    the experiment reported anything; one attempt that reported ends the watch."""

    def __init__(self, abort: Abort, limit: int = 3) -> None:
        self.abort = abort
        self.limit = limit
        self.deaths = 0
        self.watching = True

    def attempt_ended(self, status: Status, reported: bool, error: str | None) -> None:
        if not self.watching:
            return
        if reported or status != Status.FAILED:  # it ran: succeeded, timed out, ran out of memory
            self.watching = False
            return
        self.deaths += 1
        if self.deaths >= self.limit:
            self.watching = False
            self.abort.because(
                TrialsCannotStart(
                    f"the first {self.deaths} attempts of this run all died before the experiment "
                    f"ran (none reported anything), so the sweep stopped instead of retrying "
                    f"every trial. The last error:\n{_last_lines(error)}\n{CHECKS}"
                )
            )


def _last_lines(error: str | None, count: int = 6) -> str:
    lines = [line for line in (error or "no error was recorded").splitlines() if line.strip()]
    return "\n".join(f"  {line}" for line in lines[-count:])
