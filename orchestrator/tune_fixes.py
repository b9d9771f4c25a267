"""A workaround for Ray Tune 2.60 ending a whole sweep when one trial runs out of memory.

When Ray's memory monitor kills a trial's worker, the trial's pending task fails with
`ray.exceptions.OutOfMemoryError`, which is neither the RayActorError nor the
RayTaskError that Tune's actor manager expects: it raises "Caught unexpected exception"
and `Tuner.fit()` ends with no row for any running trial. The worker is dead, so we
hand Tune the error as what it is, the actor's death, with Ray's message: the trial
fails, is retried per `retries`, and the sink records it as `oom`.
"""

from __future__ import annotations

from typing import Any


def treat_out_of_memory_as_actor_death() -> None:
    """Patch Tune's actor manager once per process (idempotent)."""
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
