"""Everything raysweep sets in Ray Tune: the Tuner of a run and the fixes it needs.

Tune runs one trial per bundle (orchestrator/worker/bundles.py), in Tune's first-in first-out
order found without rescanning ended trials (`FIFO`), or as a searcher picks them, or
stopped early by ASHA. Our callbacks record everything (orchestrator/run/ledger.py): Tune's
own loggers, its state snapshots and its log lines are turned off or down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from ray import tune
from ray.tune.experiment import Trial as TuneTrial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from orchestrator.searched import Searched
from orchestrator.spec import SweepSpec
from orchestrator.trials import search_space
from orchestrator.worker import bundles

# Tune's own JSON/CSV/TensorBoard loggers are replaced by our Parquet tables; they
# cost about a second per trial. Our final/error reports need not carry the metric.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter honours verbose=0
# Tune snapshots every trial's state as JSON (for Tuner.restore) at least every 10 s, a
# cost that grows with the sweep (1.3 s per snapshot at 1,000 trials). A sweep resumes
# from its own tables, never through Tune: one snapshot an hour, and the last, will do.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3600")


def make_tuner(
    spec: SweepSpec,
    trainable: Any,
    *,
    grid: list[list[str]],
    searched: Searched,
    name: str,
    scratch: str,
    callbacks: list[Any],
    stopper: tune.Stopper,
) -> tune.Tuner:
    """The Tuner of one run: `grid`, the bundles of a grid sweep; in a search sweep, the
    searcher samples `searched.samples` configs, those that lack seeds first, and knows
    the finished ones. Tune's own files go to `scratch`."""
    treat_out_of_memory_as_actor_death()
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}),
        param_space=_param_space(spec, grid),
        tune_config=_tune_config(spec, searched),
        run_config=tune.RunConfig(
            name=name,
            storage_path=scratch,
            callbacks=callbacks,
            stop=stopper,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=_max_failures(spec, grid)),
        ),
    )


@contextlib.contextmanager
def fitting() -> Iterator[None]:
    """What `Tuner.fit()` runs under: Tune's log lines off, its registry read once, its
    callbacks counted without importing MLflow and W&B (each below)."""
    with quiet(), registry_in_memory(), callbacks_tagged_lightly():
        yield


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Tune's log lines off: failures are recorded in the table and counted."""
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        tune_logger.setLevel(level)


def _param_space(spec: SweepSpec, grid: list[list[str]]) -> dict[str, Any]:
    if spec.search.algorithm == "grid":
        return bundles.param_space(grid, labelled=spec.bundle is not None)
    return search_space(spec)


def _max_failures(spec: SweepSpec, grid: list[list[str]]) -> int:
    """Tune's retries: per trial as the spec says; for a bundle (a search config's seeds
    too), enough for each member's: each failed attempt of a bundle charges at least one
    member, but for the first death of its worker (orchestrator/run/ledger.py)."""
    if spec.bundle is not None:
        size = max(map(len, grid), default=1)  # the largest of `grid`, the bundles
    elif spec.search.algorithm != "grid":
        size = len(spec.seed_list)  # a config's seeds
    else:
        size = 1
    if size == 1:
        return spec.retries
    return size * (spec.retries + 1) + 1


def _tune_config(spec: SweepSpec, searched: Searched) -> tune.TuneConfig:
    search, scheduler = spec.search, spec.scheduler
    search_alg: Any = None
    if search.algorithm == "optuna":
        search_alg = FinalMetricOptuna(
            metric=search.metric,
            mode=search.mode,
            points_to_evaluate=searched.unfinished or None,
            finished=searched.finished,
        )
    elif search.algorithm == "random":
        search_alg = BasicVariantGenerator(points_to_evaluate=searched.unfinished or None)
    asha = None
    if scheduler is not None:
        asha = tune.schedulers.ASHAScheduler(
            time_attr="step",
            metric=scheduler.metric or search.metric,
            mode=scheduler.mode or search.mode or "min",
            max_t=scheduler.max_t,
            grace_period=scheduler.grace_period,
            reduction_factor=scheduler.reduction_factor,
        )
    return tune.TuneConfig(
        num_samples=1 if search.algorithm == "grid" else searched.samples,
        search_alg=search_alg,
        scheduler=asha or FIFO(),
        max_concurrent_trials=spec.max_concurrent,
        reuse_actors=True,
    )


class FinalMetricOptuna(OptunaSearch):
    """Optuna that skips step results lacking its metric (e.g. a score computed at the end),
    is told a config whose value is NaN (a seed failed) as failed, and knows the `finished`
    configs of earlier runs, with their values, before it samples."""

    def __init__(
        self, *args: Any, finished: Sequence[tuple[dict, float]] = (), **kwargs: Any
    ) -> None:
        self._finished = list(finished)
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for point, value in self._finished:  # the study exists once the space is known
            self.add_evaluated_point(point, value)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        value = (result or {}).get(self.metric)
        if isinstance(value, float) and math.isnan(value):
            result, error = None, True
        super().on_trial_complete(trial_id, result, error)


ENDED = (TuneTrial.TERMINATED, TuneTrial.ERROR)


class FIFO(FIFOScheduler):
    """FIFOScheduler's choice (the first PENDING trial, else the first PAUSED one), without
    its rescan.

    Tune's FIFOScheduler finds the next trial to start by scanning every trial of the run
    from the first, and Tune asks it several times per trial: the cost per trial grows
    with the sweep. Late in a 10,000-trial sweep that scan took 62% of the driver's time
    (py-spy on the driver; benchmarks/bundles.py --parts scale), plain Tune's as much as
    ours. A trial that ended (TERMINATED or ERROR) never runs again within a run, so the
    scan here starts after the longest run of ended trials at the front: amortised, a few
    trials per call instead of all of them. The order, and so every decision, is Tune's.
    """

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


@contextlib.contextmanager
def registry_in_memory() -> Iterator[None]:
    """Tune's registry of trainables read from Ray's store once per run, not per trial.

    For every trial it starts, Tune 2.60 looks its trainable up in the registry five times,
    each a round trip to Ray's GCS, and unpickles it twice, so its actor-class cache, keyed
    by the class, never hits. That was a fifth of the driver's time in a sweep of 1,000
    trivial trials (cProfile), plain Tune's as much as ours. While this holds, a value read
    is kept in memory until it is registered again or removed in this process, the only one
    that writes this job's registry.
    """
    from ray.tune.registry import _global_registry as registry

    read: dict[tuple[str, str], Any] = {}
    get, contains = registry.get, registry.contains
    register, unregister = registry.register, registry.unregister

    def remembered(category: str, key: str) -> Any:
        if (category, key) not in read:
            read[category, key] = get(category, key)
        return read[category, key]

    def known(category: str, key: str) -> bool:
        return (category, key) in read or contains(category, key)

    def forgetting(write: Any) -> Any:
        def forget_then_write(category: str, key: str, *value: Any) -> None:
            read.pop((category, key), None)
            write(category, key, *value)

        return forget_then_write

    registry.get, registry.contains = remembered, known
    registry.register, registry.unregister = forgetting(register), forgetting(unregister)
    try:
        yield
    finally:
        for name in ("get", "contains", "register", "unregister"):
            delattr(registry, name)  # the class's own methods again


@contextlib.contextmanager
def callbacks_tagged_lightly() -> Iterator[None]:
    """Tune's usage tag of the run's callbacks, counted without importing MLflow and W&B.

    To tell its built-in logger callbacks from a user's, Tune 2.60 imports its MLflow, W&B
    and Comet integrations at every `fit()`, and they import those libraries where they are
    installed: `sweep run` of two trivial trials took 9.3-9.5 s with that, 6.9-7.1 s without
    (three runs each, 2 cores, mlflow and wandb installed, which `log:` uses). Our callbacks
    are none of Tune's built-in ones, so they are counted here as Tune counts any user's.
    """
    from ray.air._internal import usage
    from ray.tune.logger import LoggerCallback

    def tag_callbacks(callbacks: list[Any] | None) -> None:
        counts = Counter(
            "CustomLoggerCallback" if isinstance(callback, LoggerCallback) else "CustomCallback"
            for callback in callbacks or []
        )
        if counts:
            usage.record_extra_usage_tag(usage.TagKey.AIR_CALLBACKS, json.dumps(counts))

    original = usage.tag_callbacks
    usage.tag_callbacks = tag_callbacks
    try:
        yield
    finally:
        usage.tag_callbacks = original


def treat_out_of_memory_as_actor_death() -> None:
    """A workaround for Ray Tune 2.60 ending a whole sweep when one trial runs out of memory.

    When Ray's memory monitor kills a trial's worker, the trial's pending task fails with
    `ray.exceptions.OutOfMemoryError`, which is neither the RayActorError nor the
    RayTaskError that Tune's actor manager expects: it raises "Caught unexpected exception"
    and `Tuner.fit()` ends with no row for any running trial. The worker is dead, so we
    hand Tune the error as what it is, the actor's death, with Ray's message: the trial
    fails, is retried per `retries`, and is recorded as `oom`. Patched once per process.
    """
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    original = RayActorManager._actor_task_failed
    if getattr(original, "raysweep_patched", False):
        return

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        if isinstance(exception, OutOfMemoryError):
            exception = RayActorError(error_msg=f"OutOfMemoryError: {exception}")
        original(self, tracked_actor_task, exception)

    _actor_task_failed.raysweep_patched = True  # type: ignore[attr-defined]
    RayActorManager._actor_task_failed = _actor_task_failed
