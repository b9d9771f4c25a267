"""Columns of a sweep's tables that are not results, and the statuses of an attempt
(docs/results.md). Nothing heavy imported, so the spec validation can keep config keys
off them without loading pandas, and the orchestrator and the analysis share them."""

from enum import Enum


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

# Where a trial ran (orchestrator/devices.py): the device, and on a GPU its name, memory,
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
