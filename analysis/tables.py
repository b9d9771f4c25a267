"""A sweep's Parquet tables, as the orchestrator writes them and the analysis reads them.

The contract both sides import (docs/results.md): the statuses of an attempt, the
columns that are not results, the types of the columns that may be all null, and the
reader.

Reading: a file cut short (a copy interrupted, a disk error) must not stop `sweep status`,
`sweep report`, `analysis.load` or a resumed run: every reader goes through
`read_parquet`, which reads the files in one call and, only when that fails, file by
file, leaving out each file it cannot read with an `UnreadableFileWarning` naming it.

The columns come from the newest readable file: the store writes each file with the
union of the columns of all files before it (orchestrator/store/folder.py), so that file's
schema is the union of every readable file's, promoted as the store promotes them
(int to float, clashing types to text), even when the newest file is the bad one.
"""

from __future__ import annotations

import warnings
from enum import Enum

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class Status(str, Enum):
    """How an attempt ended: the trials table's `status`, written as the strings below.

    `ok`: the experiment returned; `stopped`: early stopping (ASHA) ended it, which counts
    as done. `failed`, `timeout` (past the spec's `limits`) and `oom` (memory ran out) are
    attempts that did not succeed: the trial runs again per `retries`, and on the next run.
    """

    OK = "ok"
    STOPPED = "stopped"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"

    def __str__(self) -> str:  # "ok", as in the table, in f-strings too
        return self.value


# The statuses of an attempt that succeeded, the best first: a trial with one is done.
SUCCESS = (Status.OK, Status.STOPPED)
# ... and of one that did not.
FAILURE = (Status.FAILED, Status.TIMEOUT, Status.OOM)

# Where a trial ran (orchestrator/worker/devices.py): the device, and on a GPU its name, memory,
# CUDA and driver versions, and the trial's peak memory in bytes.
DEVICE_COLUMNS = (
    "device",
    "gpu_name",
    "gpu_memory_total",
    "gpu_memory_peak",
    "gpu_memory_reserved",
    "cuda_version",
    "gpu_driver",
)
# The trials table's bookkeeping: neither config nor results.
BOOKKEEPING = frozenset(DEVICE_COLUMNS) | frozenset(
    {
        "trial_id",
        "config_id",
        "sweep",
        "experiment",
        "status",
        "attempt",
        "error",
        "started_at",
        "finished_at",
        "node",
        "host",
        "gpu_ids",
        "bundle",
        "run_id",
        "git_commit",
        "git_dirty",
    }
)
# The metrics table's keys, and the pairs table's (pairs of seeds of one config).
STEP_COLUMNS = frozenset({"sweep", "trial_id", "attempt", "time", "step"})
PAIR_COLUMNS = frozenset({"sweep", "seed_a", "seed_b", "trial_a", "trial_b", "n_positions"})

_TEXT = pa.string()
_TIME = pa.timestamp("us", tz="UTC")
# Types of the columns that may be all null in a file (so Arrow could not infer them).
COLUMN_TYPES = {
    "trials": {
        "config_id": _TEXT,
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

# What a file that is not (or no longer) Parquet raises: ArrowInvalid, or OSError for a
# footer that cannot be decoded.
UNREADABLE = (pa.ArrowException, OSError)


class UnreadableFileWarning(UserWarning):
    """A table's file could not be read and is left out of what was read."""


def read_parquet(
    fs: pafs.FileSystem, files: list[str], columns: list[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """The files (newest first) as one table, and the files left out as unreadable.

    With no readable file, an empty table of the `columns` asked (typed null)."""
    if not files:
        return _empty(columns), []
    try:
        return pq.read_table(files, filesystem=fs, columns=columns), []
    except UNREADABLE:
        return _read_each(fs, files, columns)


def warn_unreadable(path: str, error: BaseException) -> None:
    warnings.warn(
        f"{path} cannot be read ({error}); it is left out, with its rows. An interrupted "
        "copy or a disk error may have cut it short: put a good copy in its place if you "
        "have one. Trials whose only successful row it held count as not run: the next "
        "`sweep run` of this sweep runs them again and moves the file to its corrupt/ folder.",
        UnreadableFileWarning,
        stacklevel=2,
    )


def _read_each(
    fs: pafs.FileSystem, files: list[str], columns: list[str] | None
) -> tuple[pa.Table, list[str]]:
    """Read file by file with the newest readable file's schema, skipping bad files."""
    schema: pa.Schema | None = None
    tables, bad = [], []
    for path in files:
        try:
            schema = schema or pq.read_schema(path, filesystem=fs)
            tables.append(pq.read_table(path, filesystem=fs, schema=schema, columns=columns))
        except UNREADABLE as exc:
            warn_unreadable(path, exc)
            bad.append(path)
    return (pa.concat_tables(tables) if tables else _empty(columns)), bad


def _empty(columns: list[str] | None) -> pa.Table:
    return pa.table({c: pa.array([], pa.null()) for c in columns or []})
