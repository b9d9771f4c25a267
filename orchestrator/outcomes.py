"""Whether a failed attempt ran out of memory: `oom` or `failed` (the statuses are
analysis/columns.py's `Status`)."""

from __future__ import annotations

from analysis.columns import Status

# What Ray's memory monitor (ray.exceptions.OutOfMemoryError, worker exit type
# NODE_OUT_OF_MEMORY), Python (MemoryError) and torch (torch.OutOfMemoryError) say.
_OUT_OF_MEMORY = ("MemoryError", "NODE_OUT_OF_MEMORY", "running low on memory")


def failure_status(error: str | None) -> Status:
    """`oom` when the error says memory ran out, else `failed`."""
    out_of_memory = error and any(sign in error for sign in _OUT_OF_MEMORY)
    return Status.OOM if out_of_memory else Status.FAILED
