"""Stopping a whole sweep from inside a Tune callback, and saying why afterwards.

An exception raised in a Tune callback reaches `Tuner.fit()` as a TuneError wrapping a
traceback, and cuts short the bookkeeping after it. A callback (or anything the runner
wraps) calls `abort.stop(reason)` instead: Tune asks this stopper after every event,
stops every trial, and returns; the runner records the run, then `raise_reason()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ray import tune


class Abort(tune.Stopper):
    """A Tune stopper that ends the sweep once `stop` was called; the first reason wins."""

    def __init__(self) -> None:
        self.reason: Exception | None = None

    def stop(self, reason: Exception) -> None:
        if self.reason is None:
            self.reason = reason

    @contextlib.contextmanager
    def on(self, *errors: type[Exception]) -> Iterator[None]:
        """Stop the sweep, with it as the reason, when the block raises one of `errors`."""
        try:
            yield
        except errors as exc:
            self.stop(exc)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # single trials are not stopped here

    def stop_all(self) -> bool:
        return self.reason is not None

    def raise_reason(self) -> None:
        if self.reason is not None:
            raise self.reason
