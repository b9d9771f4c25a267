"""Ray Tune's first-in first-out trial order, without rescanning the trials that ended.

Tune's FIFOScheduler finds the next trial to start by scanning every trial of the run
from the first, and Tune asks it several times per trial: the cost per trial grows with
the sweep. Late in a 10,000-trial sweep that scan took 62% of the driver's time (py-spy
on the driver; benchmarks/bundles.py --parts scale), plain Tune's as much as ours. A
trial that ended (TERMINATED or ERROR) never runs again within a run, so the scan here
starts after the longest run of ended trials at the front: amortised, a few trials per
call instead of all of them. The order, and so every decision, is Tune's own.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial as TuneTrial
from ray.tune.schedulers import FIFOScheduler

ENDED = (TuneTrial.TERMINATED, TuneTrial.ERROR)


class FIFO(FIFOScheduler):
    """FIFOScheduler's choice (the first PENDING trial, else the first PAUSED one)."""

    def __init__(self) -> None:
        super().__init__()
        self._ended = 0  # the trials before this index have all ended

    def choose_trial_to_run(self, tune_controller: Any) -> TuneTrial | None:
        trials = tune_controller.get_trials()
        while self._ended < len(trials) and trials[self._ended].status in ENDED:
            self._ended += 1
        for status in (TuneTrial.PENDING, TuneTrial.PAUSED):
            for i in range(self._ended, len(trials)):
                if trials[i].status == status:
                    return trials[i]
        return None
