"""A progress line while a sweep runs: done / running / failed / ETA.

On a terminal it redraws one line; in a log it prints a line every `every_s`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray import tune

from orchestrator.trials import TrialIndex


class ProgressLine(tune.Callback):
    def __init__(
        self,
        sweep: str,
        index: TrialIndex,
        total: int,
        out: TextIO = sys.stderr,
        every_s: float = 10.0,
    ) -> None:
        self.sweep = sweep
        self.index = index
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.every_s = 0.5 if self.tty else every_s
        self.done = self.failed = self.retried = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += 1
        tid, _ = self.index.lookup(trial.config)
        self._say(f"trial {tid} failed; its traceback is in the trials table (sweep status)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.retried += 1

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._shown >= self.every_s:
            self._show(sum(t.status == "RUNNING" for t in trials))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._show(0)
        if self.tty:
            self.out.write("\n")

    def line(self, running: int) -> str:
        finished = self.done + self.failed
        elapsed = time.monotonic() - self.started
        eta = "?"
        if finished:
            eta = _clock(elapsed / finished * max(self.total - finished, 0))
        retried = f" | {self.retried} retried" if self.retried else ""
        return (
            f"[{self.sweep}] {finished}/{self.total} done | {running} running | "
            f"{self.failed} failed{retried} | elapsed {_clock(elapsed)} | ETA {eta}"
        )

    def _show(self, running: int) -> None:
        self._shown = time.monotonic()
        text = self.line(running)
        self.out.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.out.flush()

    def _say(self, text: str) -> None:
        self.out.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.out.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
