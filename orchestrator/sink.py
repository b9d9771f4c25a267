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

from analysis.columns import DEVICE_COLUMNS
from orchestrator import oomkill
from orchestrator.abort import Abort, StartWatch
from orchestrator.leftovers import LEFT_BEHIND
from orchestrator.limits import TrialLimits
from orchestrator.outcomes import failure_status
from orchestrator.store import StorageFull, SweepStore
from orchestrator.trainable import META_KEY
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


@dataclass
class _Attempt:
    trial_id: str
    attempt: int
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    error: str | None = None


class ParquetSink(tune.Callback):
    """Writes `trials/` (one row per attempt) and `metrics/` (one row per step)."""

    def __init__(
        self,
        store: SweepStore,
        index: TrialIndex,
        run_info: dict[str, Any],
        next_attempt: dict[str, int],
        flush_s: float = 1.0,
        abort: Abort | None = None,
        limits: TrialLimits | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.run_info = run_info  # sweep, run_id, git state: the same on every row
        self.next_attempt = dict(next_attempt)
        self.flush_s = flush_s
        self.abort = abort or Abort()  # stops the sweep when the storage is full
        self.watch = StartWatch(self.abort)  # ... or when its trials cannot start
        self.limits = limits  # says which failed attempts it stopped for a timeout
        self.finished: list[dict[str, Any]] = []  # trial rows this run wrote, for the summary
        self.ended = 0  # trials done for good: complete, or failed after their retries
        self._live: dict[str, _Attempt] = {}
        self._buffers: dict[str, list[dict[str, Any]]] = {"trials": [], "metrics": []}
        self._last_flush = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._begin(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        live = self._live.get(trial.trial_id) or self._begin(trial)
        meta = result.get(META_KEY, {})
        values = {name: result[name] for name in meta.get("names", ())}
        live.meta.update(
            {k: v for k, v in meta.items() if k not in ("kind", "names", "error", "full", "time")}
        )
        if meta.get("kind") == "step":
            stamp = _utc(meta["time"])
            self._buffers["metrics"].append(
                {"trial_id": live.trial_id, "attempt": live.attempt, "time": stamp, **values}
            )
        elif meta.get("kind") == "final":
            live.final = values
        elif meta.get("kind") == "error":
            live.error = meta["error"]
            if meta.get("full"):  # an artifact write found the storage full
                self.abort.stop(StorageFull(meta["full"]))
        self._maybe_flush()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        live = self._live.get(trial.trial_id) or self._begin(trial)
        self.ended += 1
        self._end(trial, "ok" if live.final is not None else "stopped")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "failed")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended += 1
        self._end(trial, "failed")

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

    def _begin(self, trial: Any) -> _Attempt:
        tid, config = self.index.lookup(trial.config)
        attempt = self.next_attempt.get(tid, 1)
        self.next_attempt[tid] = attempt + 1
        self._live[trial.trial_id] = live = _Attempt(tid, attempt, config)
        return live

    def _end(self, trial: Any, status: str) -> None:
        live = self._live.pop(trial.trial_id, None)
        if live is None:  # ended before it started, e.g. it could not be scheduled
            self._begin(trial)
            live = self._live.pop(trial.trial_id)
        error = None
        if status == "failed":
            timeout = self.limits.reason(trial) if self.limits else None
            error = timeout or live.error or _error_text(trial)
            killed = None if timeout or live.error else oomkill.explain(error)
            error = f"{killed}\n{error}" if killed else error
            status = "timeout" if timeout else "oom" if killed else failure_status(error)
        self.watch.attempt_ended(status, reported=bool(live.meta), error=error)
        row = self._row(live, status, error, finished=time.time())
        self._buffers["trials"].append(row)
        self._maybe_flush()

    def record_left_behind(self, attempts: Any, configs: dict[str, dict[str, Any]]) -> None:
        """Rows, failed and saying why, for attempts that a killed driver left with steps
        but no row (orchestrator/leftovers.py); written at once, not counted in this run."""
        rows = []
        for a in attempts.itertuples():
            config = configs.get(a.trial_id, {})
            live = _Attempt(a.trial_id, a.attempt, config, {"started_at": a.first})
            rows.append(self._row(live, "failed", LEFT_BEHIND, finished=a.last))
        self.store.append("trials", rows, COLUMN_TYPES["trials"])

    def _row(
        self, live: _Attempt, status: str, error: str | None, finished: float
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


def _error_text(trial: Any) -> str:
    """The error Ray recorded when a trial died outside the experiment (a lost node, say)."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()
    return "the trial's worker died without reporting an error (node lost or out of memory?)"
