"""The ledger: Ray Tune's events and the workers' reports, turned into attempts and rows.

Every Tune trial runs a bundle of our trials (orchestrator/worker/bundles.py; a solo trial is a
bundle of one). A member's attempt begins with its first report, ends with its last
(final metrics or error) and becomes one row of the trials table; its steps become rows
of the metrics table. The ledger numbers attempts, counts retries per trial, gives each
failed attempt its status and error (orchestrator/faults/failures.py), and says what a Tune
trial runs when Tune restarts it. The writer (orchestrator/store/writer.py) stores the rows.

In a search sweep a Tune trial is a config a searcher sampled, run with every seed. Once each
of its seeds has a value (its metric, or NaN once it failed for good), the ledger puts the
config's aggregate where the searcher reads it (orchestrator/objective.py): in the Tune
result that carried the last seed's end, which becomes the trial's last result, the one Tune
gives its searcher when the trial completes (Tune lets callbacks change a result so). What
the searcher was told is kept, per config, in `told`.

Tune passes its trial to the hooks as `trial` (a keyword); below them it is `tune_trial`,
and our trials are their ids.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd
from ray import tune

from analysis.tables import DEVICE_COLUMNS, SUCCESS, Status
from orchestrator import trackers
from orchestrator.faults.abort import StartWatch
from orchestrator.faults.failures import (
    CUT_SHORT,
    LEFT_BEHIND,
    UNCERTAIN,
    Stopper,
    classify,
    status_of,
)
from orchestrator.objective import Objective
from orchestrator.store.folder import StorageFull
from orchestrator.store.writer import TableWriter
from orchestrator.trials import TrialIndex, config_id
from orchestrator.worker import bundles
from orchestrator.worker.messages import KEY, Report, ends_a_trial, from_result


@dataclass
class Attempt:
    """One attempt of a trial, from its first report to its row."""

    trial_id: str
    attempt: int
    config: dict[str, Any]
    bundle: str | None = None  # the bundle's id, in a bundled sweep
    columns: dict[str, Any] = field(default_factory=dict)  # where it ran, what it used
    final: dict[str, Any] | None = None
    error: str | None = None
    latest: dict[str, Any] | None = None  # a sampled config's: each metric's last value


class Ledger(tune.Callback):
    """Records every attempt of the run's trials as rows, through `writer`.

    `next_attempt`: each trial's next attempt number (past those in the tables); `limits`
    says which attempts it stopped; `retries`: the spec's, per trial. In a search sweep,
    `objective` is what the searcher is told of a config, and `values` the seeds' values
    of its metric from earlier runs."""

    def __init__(
        self,
        index: TrialIndex,
        writer: TableWriter,
        run_info: dict[str, Any],
        next_attempt: dict[str, int],
        retries: int = 0,
        limits: Stopper | None = None,
        objective: Objective | None = None,
        values: dict[str, float] | None = None,
    ) -> None:
        self.index = index
        self.writer = writer
        self.run_info = run_info  # sweep, run_id, git state: the same on every row
        self.next_attempt = dict(next_attempt)
        self.retries = retries
        self.limits = limits
        self.watch = StartWatch(writer.abort)  # stops a sweep whose trials cannot start
        self.ended = 0  # trials done for good: complete, or failed after their retries
        self.failed: list[str] = []  # ids of the trials failed for good, in order
        self.retried = 0  # attempts that failed and run again
        self._live: dict[tuple[str, str], Attempt] = {}  # (Tune trial id, trial id)
        self._tries: dict[str, int] = {}  # trial id -> attempts in this run
        self._outcome: dict[str, Status] = {}  # ... and the status of the last one
        self._ended_in_attempt: dict[str, set[str]] = {}  # Tune trial id -> trials that ended
        self.objective = objective
        self.values = dict(values or {})  # trial id -> its metric; NaN once failed for good
        self.told: dict[str, float] = {}  # config_id -> what the searcher was told
        self.configs_ended = 0  # Tune trials of sampled configs that ended
        self._bundles: dict[str, tuple[tuple[str, bool], bundles.Bundle]] = {}  # live ones
        self.trackers_failed: set[str] = set()  # said once each (orchestrator/trackers.py)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        reports = from_result(result)
        for report in reports:
            self._report(trial, report)
        if self.objective is not None and (ends_a_trial(result) or not reports):
            self._aggregate(trial, result, self.objective)
        self.writer.maybe_flush()

    def _aggregate(self, tune_trial: Any, result: dict, objective: Objective) -> None:
        """Once each seed of a sampled config has a value: the config's, in `result`."""
        bundle = self._bundle(tune_trial)
        if bundle.sampled and all(tid in self.values for tid in bundle.seeds):
            result[objective.metric] = objective.of([self.values[tid] for tid in bundle.seeds])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A Tune trial that ended with trials still running was stopped: a trial of its
        own by Tune's scheduler (early stopping: done), else with the whole sweep (to run
        again)."""
        bundle = self._bundle(trial)
        by_scheduler = (bundle.alone or bundle.sampled) and self.writer.abort.reason is None
        if bundle.sampled:
            told = (trial.last_result or {}).get(self.objective.metric) if self.objective else None
            self._config_ended(bundle, math.nan if told is None else float(told))
        for live in self._running(trial):
            if by_scheduler:
                self._ended(trial, live, Status.STOPPED, None)
            else:
                self._ended(trial, live, Status.FAILED, CUT_SHORT)
        self._bundles.pop(trial.trial_id, None)
        _drop_reports(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The Tune trial failed and Tune runs it again: with the trials that have neither
        succeeded nor used up their retries."""
        self._failed(trial)
        again = [
            tid
            for tid in self._bundle(trial).members
            if self._outcome.get(tid) not in SUCCESS and self._tries.get(tid, 0) <= self.retries
        ]
        bundles.run_again(trial.config, again)
        self.retried += sum(self._tries.get(tid, 0) > 0 for tid in again)
        self._ended_in_attempt.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The Tune trial failed for good (its searcher is told it failed)."""
        self._failed(trial)
        bundle = self._bundle(trial)
        if bundle.sampled:
            self._config_ended(bundle, math.nan)
        self._bundles.pop(trial.trial_id, None)
        _drop_reports(trial)

    def _config_ended(self, bundle: bundles.Bundle, told: float) -> None:
        """A sampled config's Tune trial ended, and its searcher was told `told`."""
        self.configs_ended += 1
        if self.objective is not None:
            self.told[str(bundle.config_id)] = told

    def _failed(self, tune_trial: Any) -> None:
        """The Tune trial failed. When every trial of its attempt has an outcome, it raised
        for those that failed, recorded already. Otherwise its worker died. When it sent
        each report at once, the first trial without an outcome was running, and it is
        charged the failure. Else the reports of its last bundles.FLUSH_S seconds died with
        it, and which trial ran is not known: those seen running get a failed row that says
        so, not counted against their retries, and the bundle runs again sending each
        report at once, so that the next death names its trial."""
        bundle = self._bundle(tune_trial)
        ended = self._ended_in_attempt.get(tune_trial.trial_id, set())
        unknown = [tid for tid in bundle.members if tid not in ended]
        running = self._running(tune_trial)
        if not unknown and self.limits:
            self.limits.reason(tune_trial)  # a limit reached as it raised: not for later
        if unknown and not bundle.sends_at_once:
            error, _ = classify(tune_trial, None, self.limits)
            for live in running:
                self._write(live, Status.FAILED, f"{UNCERTAIN}\n{error}")
            bundles.send_at_once(tune_trial.config)
            return
        if unknown and not running:
            running = [self._new_attempt(tune_trial, unknown[0])]
        for live in running:
            error, status = classify(tune_trial, live.error, self.limits)
            self._ended(tune_trial, live, status, error)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.writer.maybe_flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.writer.flush()

    def record_left_behind(self, attempts: pd.DataFrame, configs: dict[str, dict]) -> None:
        """Rows, failed and saying why, for attempts that a killed driver left with steps
        but no row (orchestrator/store/leftovers.py); written at once, not counted in this run."""
        rows = [
            self._row(
                Attempt(
                    a.trial_id,
                    a.attempt,
                    configs.get(a.trial_id, {}),
                    None,
                    {"started_at": a.first},
                ),
                Status.FAILED,
                LEFT_BEHIND,
                finished=a.last,
            )
            for a in attempts.itertuples()
        ]
        self.writer.write_now("trials", rows)

    def _bundle(self, tune_trial: Any) -> bundles.Bundle:
        """The bundle of a live Tune trial, decoded once per config Tune runs it with (a
        sampled config's seeds' ids are hashes of their configs)."""
        config = tune_trial.config
        key = (config.get(bundles.BUNDLE_KEY, ""), bool(config.get(bundles.ONE_AT_A_TIME)))
        known = self._bundles.get(tune_trial.trial_id)
        if known is None or known[0] != key:
            known = (key, bundles.bundle_of(config, self.index))
            self._bundles[tune_trial.trial_id] = known
        return known[1]

    def _report(self, tune_trial: Any, report: Report) -> None:
        """One report of an attempt: a step, or its end."""
        key = (tune_trial.trial_id, report.trial_id)
        live = self._live.get(key) or self._begin(tune_trial, report.trial_id)
        live.columns.update(report.columns)
        for tracker, failure in report.notices.items():
            if tracker not in self.trackers_failed:
                self.trackers_failed.add(tracker)
                trackers.say(tracker, failure)
        if report.kind == "step":
            row = {"trial_id": live.trial_id, "attempt": live.attempt, "time": _utc(report.time)}
            self.writer.add("metrics", {**row, **report.metrics})
            if live.latest is not None:
                live.latest.update(report.metrics)
        elif report.kind == "final":
            live.final = report.metrics
        else:
            live.error = report.error
            if report.full:  # an artifact write found the storage full
                self.writer.abort.because(StorageFull(report.full))
        if report.ends:
            status = Status.OK if live.final is not None else status_of(live.error)
            self._ended(tune_trial, live, status, live.error)

    def _begin(self, tune_trial: Any, tid: str) -> Attempt:
        """A new attempt of the trial, tracked until it ends."""
        self._live[(tune_trial.trial_id, tid)] = live = self._new_attempt(tune_trial, tid)
        return live

    def _new_attempt(self, tune_trial: Any, tid: str) -> Attempt:
        """The next attempt of the trial, numbered, not tracked."""
        bundle = self._bundle(tune_trial)
        attempt = self.next_attempt.get(tid, 1)
        self.next_attempt[tid] = attempt + 1
        latest = {} if bundle.sampled else None
        return Attempt(tid, attempt, bundle.members[tid], bundle.id, latest=latest)

    def _running(self, tune_trial: Any) -> list[Attempt]:
        """The attempts of the Tune trial still running, no longer tracked."""
        keys = [key for key in self._live if key[0] == tune_trial.trial_id]
        return [self._live.pop(key) for key in keys]

    def _ended(self, tune_trial: Any, live: Attempt, status: Status, error: str | None) -> None:
        """The attempt ended: counted against its trial's retries, and written."""
        tid = live.trial_id
        self._live.pop((tune_trial.trial_id, tid), None)
        self._tries[tid] = self._tries.get(tid, 0) + 1
        self._ended_in_attempt.setdefault(tune_trial.trial_id, set()).add(tid)
        self._outcome[tid] = status
        if status in SUCCESS or self._tries[tid] > self.retries:
            self.ended += 1
            if status not in SUCCESS:
                self.failed.append(tid)
            if self.objective is not None:
                value = _results(live, status).get(self.objective.metric, math.nan)
                ok = status in SUCCESS and isinstance(value, float)
                self.values[tid] = value if ok else math.nan
        self._write(live, status, error)

    def _write(self, live: Attempt, status: Status, error: str | None) -> None:
        self.watch.attempt_ended(status, reported=bool(live.columns), error=error)
        self.writer.add("trials", self._row(live, status, error, finished=time.time()))
        self.writer.maybe_flush()

    def _row(
        self, live: Attempt, status: Status, error: str | None, finished: float
    ) -> dict[str, Any]:
        """The trials-table row of an attempt that ended."""
        columns = dict(live.columns)
        started = columns.pop("started_at", None)
        return {
            "trial_id": live.trial_id,
            "config_id": config_id(self.index.experiment, live.config) if live.config else None,
            "sweep": self.run_info["sweep"],
            "experiment": self.index.experiment,
            "status": status,
            "attempt": live.attempt,
            "error": error,
            "started_at": _utc(started),
            "finished_at": _utc(finished),
            "duration_s": None if started is None else finished - started,
            "node": columns.pop("node", None),
            "host": columns.pop("host", None),
            "gpu_ids": columns.pop("gpu_ids", None),
            "bundle": live.bundle,
            **{name: columns.pop(name, None) for name in DEVICE_COLUMNS},
            **{k: _scalar(v) for k, v in live.config.items()},
            **_results(live, status),
            "run_id": self.run_info["run_id"],
            "git_commit": self.run_info["git_commit"],
            "git_dirty": self.run_info["git_dirty"],
            **columns,  # package versions of the worker
        }


def _results(live: Attempt, status: Status) -> dict[str, Any]:
    """An attempt's final metrics; for a sampled config's seed stopped early, the last value
    of each it reported (what its searcher and scheduler saw)."""
    if live.final is None and status == Status.STOPPED and live.latest is not None:
        return {k: v for k, v in live.latest.items() if k != "step"}
    return live.final or {}


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _scalar(value: Any) -> Any:
    """Config values as table cells: lists and dicts become JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _drop_reports(tune_trial: Any) -> None:
    """The ended Tune trial's last result without the reports inside, recorded already:
    Tune keeps it and writes it into its snapshot at the end of the run, pickling each
    report into JSON (a bundle of 100 members' last 0.5 s: half the driver's time in a
    sweep of bundles). Its metrics stay, for whoever reads them."""
    metadata = getattr(tune_trial, "run_metadata", None)  # None: a stand-in (tests, benchmarks)
    if metadata is not None and KEY in metadata.last_result:
        metadata.last_result = {k: v for k, v in metadata.last_result.items() if k != KEY}
