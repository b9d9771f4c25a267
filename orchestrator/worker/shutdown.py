"""A trial's worker ends without a traceback when Ray stops it.

Ray gives each worker a SIGTERM handler that raises SystemExit, carrying Ray's
`ray_terminate_msg`, in whatever Python code the worker's main thread runs, and Ray sends
SIGTERM to the workers it stops (a trial's actor it no longer needs, all of them as a run
ends). Where that code is a callback Python
cannot raise out of (a weak reference's, as a WeakSet drops an entry), Python hands the
SystemExit to `sys.unraisablehook`, whose default prints "Exception ignored in: ..." and
the traceback to the worker's stderr; Ray forwards worker output to the driver's terminal,
so a run that went well could end with a traceback there (about one run in six on a
loaded 2-core machine). That exit is Ray's to ask for and nothing the user can act on:
`quiet_exits` drops exactly it and hands every other unraisable exception, a trial's own
included, to the hook that was there before. Every worker of a Ray that a sweep starts or
joins runs it as it starts, before Ray sets its handler (orchestrator/run/connection.py); a
program that starts Ray itself before `run_sweep` gets the same with
`ray.init(runtime_env={"worker_process_setup_hook": "orchestrator.worker.shutdown.quiet_exits"})`.
"""

from __future__ import annotations

import sys
from typing import Any

_MARK = "raysweep_quiet_exits"


def quiet_exits() -> None:
    """Keep Ray's SIGTERM exits out of this process's stderr; once per process."""
    before = sys.unraisablehook
    if getattr(before, _MARK, False):
        return

    def hook(unraisable: Any) -> None:
        if not is_ray_exit(unraisable.exc_value):
            before(unraisable)

    setattr(hook, _MARK, True)
    sys.unraisablehook = hook


def is_ray_exit(exc: BaseException | None) -> bool:
    """Whether `exc` is the SystemExit Ray raises to end a worker (its SIGTERM handler's)."""
    return isinstance(exc, SystemExit) and hasattr(exc, "ray_terminate_msg")
