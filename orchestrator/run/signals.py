"""SIGINT and SIGTERM while a sweep runs: Ctrl-C, or the signal that `ray job stop`,
Kubernetes (a RayJob's pod deleted) and batch schedulers send, ends the run.

Ray gives every driver a SIGTERM handler that exits on the spot, and Tune's own Ctrl-C
handling asks each running trial to stop and waits up to 15 s for one busy in its
experiment: longer than `ray job stop` waits before its SIGKILL (3 s,
RAY_JOB_STOP_WAIT_TIME_S). So while a sweep runs, either signal only marks it as asked to
stop. At the end of Tune's next step, after the other callbacks (nothing is being
written), `Interrupt` raises KeyboardInterrupt: the runner records what finished and the run's
end ("interrupted"), and kills the running trials' actors. Their attempts are the next
run's to record as left behind, as after a SIGKILL, which loses no recorded trial either.
A second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import ray
from ray.tune import Callback

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_TUNE_SWITCH = "TUNE_DISABLE_SIGINT_HANDLER"  # else Tune's handler replaces ours in fit()


class Interrupt(Callback):
    """The Tune callback that ends a run asked to stop (put it last)."""

    def __init__(self) -> None:
        self.asked = False
        self._tune_trials: list[Any] = []

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._tune_trials = trials
        if self.asked:
            raise KeyboardInterrupt

    def kill_running(self) -> None:
        """Kill the actors of the trials still running (Tune would wait for them)."""
        for tune_trial in self._tune_trials:
            if (actor := tune_trial.temporary_state.ray_actor) is not None:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(actor)


@contextlib.contextmanager
def on_signals(interrupt: Interrupt) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM ask `interrupt` to end the run (a second one
    interrupts at once); the handlers before it come back after. Main thread only, where
    Python lets a program handle signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, frame: object) -> None:
        if interrupt.asked:
            raise KeyboardInterrupt
        interrupt.asked = True

    before = {s: signal.signal(s, ask) for s in _SIGNALS}
    switch = os.environ.get(_TUNE_SWITCH)
    os.environ[_TUNE_SWITCH] = "1"
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if switch is None:
            os.environ.pop(_TUNE_SWITCH)
        else:
            os.environ[_TUNE_SWITCH] = switch
