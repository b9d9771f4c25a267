"""A progress line while a sweep runs: done / running / failed / ETA.

On a terminal it redraws one line; in a log it prints a line every `every_s`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray import tune

from orchestrator.run.ledger import Ledger
from orchestrator.summary import clock


class ProgressLine(tune.Callback):
    """Counts what the ledger recorded (trials, not Tune's trials: a bundle holds several)."""

    def __init__(
        self,
        sweep: str,
        ledger: Ledger,
        total: int,
        out: TextIO = sys.stderr,
        every_s: float = 10.0,
    ) -> None:
        self.sweep = sweep
        self.ledger = ledger
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.every_s = 0.5 if self.tty else every_s
        self.said = 0  # failed trials named so far
        self.started = time.monotonic()
        self._shown = 0.0

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment's state (for a restore a sweep
        never does): the stream stays behind, since only sys.stderr itself pickles."""
        return {**self.__dict__, "out": None}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._name_failures()
        if time.monotonic() - self._shown >= self.every_s:
            self._show(sum(tune_trial.status == "RUNNING" for tune_trial in trials))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._name_failures()
        self._show(0)
        if self.tty:
            self.out.write("\n")

    def _name_failures(self) -> None:
        """A line for each trial the ledger recorded as failed for good since the last call."""
        for tid in self.ledger.failed[self.said :]:
            self._say(f"trial {tid} failed; its traceback is in the trials table (sweep status)")
        self.said = len(self.ledger.failed)

    def line(self, running: int) -> str:
        finished, failed = self.ledger.ended, len(self.ledger.failed)
        elapsed = time.monotonic() - self.started
        eta = "?"
        if finished:
            eta = clock(elapsed / finished * max(self.total - finished, 0))
        retried = f" | {self.ledger.retried} retried" if self.ledger.retried else ""
        return (
            f"[{self.sweep}] {finished}/{self.total} done | {running} running | "
            f"{failed} failed{retried} | elapsed {clock(elapsed)} | ETA {eta}"
        )

    def _show(self, running: int) -> None:
        self._shown = time.monotonic()
        text = self.line(running)
        self.out.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.out.flush()

    def _say(self, text: str) -> None:
        self.out.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.out.flush()
