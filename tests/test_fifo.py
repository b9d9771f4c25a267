"""orchestrator.run.tuner.FIFO picks the trial Tune's own FIFOScheduler picks, through random
runs of status changes: trials start, end, fail and are retried (PENDING again, moved to
the end of the list as Tune's _requeue_trial does), pause, and new trials arrive. Every
sweep test runs through it too, on a real Ray."""

from __future__ import annotations

import random
from types import SimpleNamespace

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from orchestrator.run.tuner import FIFO


def test_the_same_choice_as_tunes_fifo_scheduler_at_every_step():
    rng = random.Random(0)
    trials: list = []
    controller = SimpleNamespace(get_trials=lambda: trials)
    ours, tunes = FIFO(), FIFOScheduler()
    chosen = set()
    for _ in range(5000):
        if rng.random() < 0.1:  # the searcher adds trials
            trials += [SimpleNamespace(status=Trial.PENDING) for _ in range(rng.randint(1, 5))]
        pick = tunes.choose_trial_to_run(controller)
        assert ours.choose_trial_to_run(controller) is pick
        if pick is not None:
            chosen.add(id(pick))
            pick.status = Trial.RUNNING
        live = [t for t in trials if t.status in (Trial.RUNNING, Trial.PAUSED)]
        if live:
            trial = rng.choice(live)  # ends, fails for good, is retried or pauses
            trial.status = rng.choice([Trial.TERMINATED, Trial.ERROR, Trial.PENDING, Trial.PAUSED])
            if trial.status == Trial.PENDING:  # Tune requeues a retried trial at the end
                trials.remove(trial)
                trials.append(trial)
    ended = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
    assert ended > 100 and len(chosen) > 100  # the run went far past the first trials
    assert ours._ended > 0  # ... and the scan skipped those that had ended
