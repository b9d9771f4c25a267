"""The Parquet sink: a Tune callback on the driver that turns results into table rows.

It replaces Tune's JSON/CSV/TensorBoard loggers. Rows are buffered and flushed
at most every `flush_s` seconds (and at the end), so many trials reporting at
once cost a few file writes, and a killed driver loses at most that much.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from ray import tune

from analysis.columns import DEVICE_COLUMNS, SUCCESS, Status
from orchestrator import oomkill
from orchestrator.abort import Abort, StartWatch
from orchestrator.bundles import BUNDLE_KEY, ONE_AT_A_TIME, decode, encode
from orchestrator.leftovers import LEFT_BEHIND
from orchestrator.limits import TrialLimits
from orchestrator.messages import Report, from_result
from orchestrator.outcomes import failure_status
from orchestrator.store import StorageFull, SweepStore
from orchestrator.trials import TrialIndex

_TEXT = pa.string()
_TIME = pa.timestamp("us", tz="UTC")
# Types of the columns that may be all null in a file (so Arrow could not infer them).
COLUMN_TYPES = {
    "trials": {
        "error": _TEXT,
        "started_at": _TIME,
        "finished_at": _TIME,
        "duration_s": pa.float64(),
        "node": _TEXT,
        "host": _TEXT,
        "gpu_ids": _TEXT,
        "bundle": _TEXT,
        "device": _TEXT,
        "gpu_name": _TEXT,
        "gpu_memory_total": pa.int64(),
        "gpu_memory_peak": pa.int64(),
        "gpu_memory_reserved": pa.int64(),
        "cuda_version": _TEXT,
        "gpu_driver": _TEXT,
        "git_commit": _TEXT,
        "git_dirty": pa.bool_(),
    },
    "metrics": {"time": _TIME, "step": pa.int64()},
}


CUT_SHORT = "the sweep stopped while this trial ran in its bundle (see the run's reason)"
UNCERTAIN = (
    "the worker of this trial's bundle died while this trial or one after it ran; the bundle "
    "runs again one trial at a time to find which (this attempt is not counted as a retry)"
)


@dataclass
class _Attempt:
    trial_id: str
    attempt: int
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    error: str | None = None


class ParquetSink(tune.Callback):
    """Writes `trials/` (one row per attempt) and `metrics/` (one row per step).

    A bundled Tune trial (orchestrator/bundles.py) holds several attempts, one per member,
    each recorded as it ends. When the bundle fails, it runs again with the members that
    have neither succeeded nor used up their retries; which member a dead worker was
    running is found as `_bundle_failed` says.

    Tune passes its trial to the hooks as `trial` (a keyword); below them it is `tune_trial`,
    and our trials are their ids.
    """

    def __init__(
        self,
        store: SweepStore,
        index: TrialIndex,
        run_info: dict[str, Any],
        next_attempt: dict[str, int],
        flush_s: float = 1.0,
        abort: Abort | None = None,
        limits: TrialLimits | None = None,
        retries: int = 0,
    ) -> None:
        self.store = store
        self.index = index
        self.run_info = run_info  # sweep, run_id, git state: the same on every row
        self.next_attempt = dict(next_attempt)
        self.flush_s = flush_s
        self.abort = abort or Abort()  # stops the sweep when the storage is full
        self.watch = StartWatch(self.abort)  # ... or when its trials cannot start
        self.limits = limits  # says which failed attempts it stopped for a timeout
        self.retries = retries
        self.finished: list[dict[str, Any]] = []  # trial rows this run wrote, for the summary
        self.ended = 0  # trials done for good: complete, or failed after their retries
        self.failed: list[str] = []  # ids of the trials failed for good, in order
        self.retried = 0  # attempts that failed and run again
        self._live: dict[tuple[str, str | None], _Attempt] = {}  # (Tune trial, member)
        self._tries: dict[str, int] = {}  # bundle members: attempts in this run
        self._outcome: dict[str, Status] = {}  # ... and the status of the last one
        self._ended_in_attempt: dict[str, set[str]] = {}  # Tune trial -> members that ended
        self._buffers: dict[str, list[dict[str, Any]]] = {"trials": [], "metrics": []}
        self._last_flush = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if BUNDLE_KEY not in trial.config:  # members begin with their first report
            self._begin(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        for report in from_result(result):
            self._report(trial, report)
        self._maybe_flush()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if BUNDLE_KEY in trial.config:
            for live in self._members_running(trial):  # the sweep stopped while they ran
                self._member_ended(trial, live, Status.FAILED, CUT_SHORT)
            return
        live = self._live.get((trial.trial_id, None)) or self._begin(trial)
        self.ended += 1
        self._end(trial, Status.OK if live.final is not None else Status.STOPPED)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if BUNDLE_KEY in trial.config:
            self._bundle_failed(trial)
            trial.config[BUNDLE_KEY] = again = self._rerun(trial)  # read when Tune restarts it
            self.retried += sum(self._tries.get(m, 0) > 0 for m in decode(again)[1])
            self._ended_in_attempt.pop(trial.trial_id, None)
            return
        self.retried += 1
        self._end(trial, Status.FAILED)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if BUNDLE_KEY in trial.config:
            self._bundle_failed(trial)
            return
        self.ended += 1
        self.failed.append(self.index.lookup(trial.config)[0])
        self._end(trial, Status.FAILED)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._maybe_flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is buffered: metrics first, so a trial row never precedes its steps.
        Once the storage was full, nothing more is written (the sweep is stopping): the
        attempts whose rows are missing run again in the next run."""
        for table in ("metrics", "trials"):
            rows, self._buffers[table] = self._buffers[table], []
            if not isinstance(self.abort.reason, StorageFull):
                with self.abort.on(StorageFull):
                    self.store.append(table, rows, COLUMN_TYPES[table])
                    if table == "trials":
                        self.finished += rows
        self._last_flush = time.monotonic()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def _report(self, tune_trial: Any, report: Report) -> None:
        """One report of an attempt (of a bundle's member, if it names one)."""
        member = report.member
        live = self._live.get((tune_trial.trial_id, member)) or self._begin(tune_trial, member)
        live.meta.update(report.columns)
        if report.kind == "step":
            row = {"trial_id": live.trial_id, "attempt": live.attempt, "time": _utc(report.time)}
            self._buffers["metrics"].append({**row, **report.metrics})
        elif report.kind == "final":
            live.final = report.metrics
        else:
            live.error = report.error
            if report.full:  # an artifact write found the storage full
                self.abort.because(StorageFull(report.full))
        if member is not None and report.ends:
            status = Status.OK if live.final is not None else failure_status(live.error)
            self._member_ended(tune_trial, live, status, live.error)

    def _begin(self, tune_trial: Any, member: str | None = None) -> _Attempt:
        """A new attempt of the trial (or of the bundle's member), tracked until it ends."""
        self._live[(tune_trial.trial_id, member)] = live = self._new_attempt(tune_trial, member)
        return live

    def _new_attempt(self, tune_trial: Any, member: str | None = None) -> _Attempt:
        """The next attempt of the trial (or member), numbered, not tracked."""
        if member is None:
            tid, config = self.index.lookup(tune_trial.config)
        else:
            tid, config = member, dict(self.index.configs[member])
        attempt = self.next_attempt.get(tid, 1)
        self.next_attempt[tid] = attempt + 1
        live = _Attempt(tid, attempt, config)
        if member is not None:
            live.meta["bundle"] = decode(tune_trial.config[BUNDLE_KEY])[0]
        return live

    def _end(self, tune_trial: Any, status: Status) -> None:
        live = self._live.pop((tune_trial.trial_id, None), None)
        if live is None:  # ended before it started, e.g. it could not be scheduled
            live = self._new_attempt(tune_trial)
        error = None
        if status == Status.FAILED:
            error, status = self._why_failed(tune_trial, live.error)
        self._write_row(live, status, error)

    def _why_failed(self, tune_trial: Any, reported: str | None) -> tuple[str, Status]:
        """The error text and status of a failed attempt: stopped for a limit, killed for
        memory, or what it reported (or Ray recorded)."""
        timeout = self.limits.reason(tune_trial) if self.limits else None
        error = timeout or reported or _error_text(tune_trial)
        killed = None if timeout or reported else oomkill.explain(error)
        error = f"{killed}\n{error}" if killed else error
        return error, Status.TIMEOUT if timeout else Status.OOM if killed else failure_status(error)

    def _write_row(self, live: _Attempt, status: Status, error: str | None) -> None:
        self.watch.attempt_ended(status, reported=bool(live.meta), error=error)
        self._buffers["trials"].append(self._row(live, status, error, finished=time.time()))
        self._maybe_flush()

    def _members_running(self, tune_trial: Any) -> list[_Attempt]:
        keys = [key for key in self._live if key[0] == tune_trial.trial_id and key[1] is not None]
        return [self._live.pop(key) for key in keys]

    def _member_ended(
        self, tune_trial: Any, live: _Attempt, status: Status, error: str | None
    ) -> None:
        self._live.pop((tune_trial.trial_id, live.trial_id), None)
        self._tries[live.trial_id] = self._tries.get(live.trial_id, 0) + 1
        self._ended_in_attempt.setdefault(tune_trial.trial_id, set()).add(live.trial_id)
        self._outcome[live.trial_id] = status
        if status in SUCCESS or self._tries[live.trial_id] > self.retries:
            self.ended += 1
            if status not in SUCCESS:
                self.failed.append(live.trial_id)
        self._write_row(live, status, error)

    def _bundle_failed(self, tune_trial: Any) -> None:
        """The bundle's worker failed. When every member of the attempt has an outcome, the
        bundle raised bundles.MembersFailed for those that failed, recorded already.
        Otherwise it died: reports of the last bundles.FLUSH_S seconds died with it, so
        which member was running is not known. Members seen running get a failed row that
        says so, not counted against their retries, and the bundle runs again one member
        at a time (each outcome sent as it ends). Then the member it was running is known,
        the first without an outcome, and it is charged the failure."""
        _, members = decode(tune_trial.config[BUNDLE_KEY])
        ended = self._ended_in_attempt.get(tune_trial.trial_id, set())
        unknown = [m for m in members if m not in ended]
        running = self._members_running(tune_trial)
        if unknown and not tune_trial.config.get(ONE_AT_A_TIME):
            error, _ = self._why_failed(tune_trial, None)
            for live in running:
                self._write_row(live, Status.FAILED, f"{UNCERTAIN}\n{error}")
            tune_trial.config[ONE_AT_A_TIME] = True  # read when Tune restarts it
            return
        if unknown and not running:
            running = [self._new_attempt(tune_trial, unknown[0])]
        for live in running:
            error, status = self._why_failed(tune_trial, live.error)
            self._member_ended(tune_trial, live, status, error)

    def _rerun(self, tune_trial: Any) -> str:
        """The bundle's members that run again: neither succeeded nor out of retries."""
        bundle_id, members = decode(tune_trial.config[BUNDLE_KEY])
        again = [
            m
            for m in members
            if self._outcome.get(m) not in SUCCESS and self._tries.get(m, 0) <= self.retries
        ]
        return encode(again, bundle_id)

    def record_left_behind(self, attempts: Any, configs: dict[str, dict[str, Any]]) -> None:
        """Rows, failed and saying why, for attempts that a killed driver left with steps
        but no row (orchestrator/leftovers.py); written at once, not counted in this run."""
        rows = []
        for a in attempts.itertuples():
            config = configs.get(a.trial_id, {})
            live = _Attempt(a.trial_id, a.attempt, config, {"started_at": a.first})
            rows.append(self._row(live, Status.FAILED, LEFT_BEHIND, finished=a.last))
        self.store.append("trials", rows, COLUMN_TYPES["trials"])

    def _row(
        self, live: _Attempt, status: Status, error: str | None, finished: float
    ) -> dict[str, Any]:
        """The trials-table row of an attempt that ended."""
        started = live.meta.pop("started_at", None)
        return {
            "trial_id": live.trial_id,
            "sweep": self.run_info["sweep"],
            "experiment": self.index.experiment,
            "status": status,
            "attempt": live.attempt,
            "error": error,
            "started_at": _utc(started),
            "finished_at": _utc(finished),
            "duration_s": None if started is None else finished - started,
            "node": live.meta.pop("node", None),
            "host": live.meta.pop("host", None),
            "gpu_ids": live.meta.pop("gpu_ids", None),
            "bundle": live.meta.pop("bundle", None),
            **{name: live.meta.pop(name, None) for name in DEVICE_COLUMNS},
            **{k: _scalar(v) for k, v in live.config.items()},
            **(live.final or {}),
            "run_id": self.run_info["run_id"],
            "git_commit": self.run_info["git_commit"],
            "git_dirty": self.run_info["git_dirty"],
            **live.meta,  # package versions of the worker
        }


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _scalar(value: Any) -> Any:
    """Config values as table cells: lists and dicts become JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _error_text(tune_trial: Any) -> str:
    """The error Ray recorded when a trial died outside the experiment (a lost node, say)."""
    path = getattr(tune_trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()
    return "the trial's worker died without reporting an error (node lost or out of memory?)"
