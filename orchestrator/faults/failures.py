"""Why an attempt failed: its status (`failed`, `timeout` or `oom`) and its error text.

Every failed row of the trials table gets its status and error here. An attempt fails
by raising (its traceback, reported by the worker), by being stopped for a limit
(orchestrator/faults/limits.py says why), by its worker dying (Ray's error file: a lost node,
the memory monitor, the kernel's OOM killer, which orchestrator/faults/oomkill.py recognises),
by the sweep stopping while it ran in a bundle, or by the driver dying while it ran
(found by the next run, orchestrator/store/leftovers.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from analysis.tables import Status
from orchestrator.faults import oomkill

# What Ray's memory monitor (ray.exceptions.OutOfMemoryError, worker exit type
# NODE_OUT_OF_MEMORY), Python (MemoryError) and torch (torch.OutOfMemoryError) say.
_OUT_OF_MEMORY = ("MemoryError", "NODE_OUT_OF_MEMORY", "running low on memory")

CUT_SHORT = "the sweep stopped while this trial ran (see the run's reason)"
UNCERTAIN = (
    "the worker of this trial's bundle died while this trial or one after it ran; the bundle "
    "runs again one trial at a time to find which (this attempt is not counted as a retry)"
)
LEFT_BEHIND = (
    "the driver stopped (interrupted, killed, crashed, or its storage was full) while this "
    "attempt ran; its steps up to then are in metrics/, its result was never recorded"
)
NO_ERROR = "the trial's worker died without reporting an error (node lost or out of memory?)"


class Stopper(Protocol):
    def reason(self, tune_trial: Any) -> str | None: ...


def status_of(error: str | None) -> Status:
    """`oom` when the error says memory ran out, else `failed`."""
    out_of_memory = error and any(sign in error for sign in _OUT_OF_MEMORY)
    return Status.OOM if out_of_memory else Status.FAILED


def classify(
    tune_trial: Any, reported: str | None, limits: Stopper | None = None
) -> tuple[str, Status]:
    """The error text and status of an attempt of `tune_trial` that failed: stopped for a
    limit, killed for memory, or what it `reported` (or, when its worker died, Ray recorded)."""
    timeout = limits.reason(tune_trial) if limits else None
    error = timeout or reported or _ray_error(tune_trial)
    killed = None if timeout or reported else oomkill.explain(error)
    error = f"{killed}\n{error}" if killed else error
    return error, Status.TIMEOUT if timeout else Status.OOM if killed else status_of(error)


def _ray_error(tune_trial: Any) -> str:
    """The error Ray recorded when a trial died outside the experiment (a lost node, say)."""
    path = getattr(tune_trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()
    return NO_ERROR
