"""How an attempt ended: the statuses of the trials table.

`ok`: the experiment returned; `stopped`: early stopping (ASHA) ended it, which counts as
done. `failed`, `timeout` (past the spec's `limits`) and `oom` (memory ran out) are
attempts that did not succeed: the trial runs again per `retries`, and on the next run.
"""

from __future__ import annotations

SUCCEEDED = ("ok", "stopped")
FAILED = ("failed", "timeout", "oom")

# What Ray's memory monitor (ray.exceptions.OutOfMemoryError, worker exit type
# NODE_OUT_OF_MEMORY), Python (MemoryError) and torch (torch.OutOfMemoryError) say.
_OUT_OF_MEMORY = ("MemoryError", "NODE_OUT_OF_MEMORY", "running low on memory")


def failure_status(error: str | None) -> str:
    """`oom` when the error says memory ran out, else `failed`."""
    return "oom" if error and any(sign in error for sign in _OUT_OF_MEMORY) else "failed"
