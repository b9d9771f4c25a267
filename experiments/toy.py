"""Trivial experiments: for benchmarks of per-trial overhead and for tests."""

from __future__ import annotations

import time
from typing import Any


def trivial(config: dict[str, Any], trial: Any) -> dict[str, float]:
    """Reports `steps` (default 5) cheap steps and returns at once: pure orchestration cost.
    With `sleep`, it first waits that many seconds (a trial of known length, no CPU)."""
    time.sleep(config.get("sleep", 0.0))
    x = float(config.get("x", 1.0))
    steps = int(config.get("steps", 5))
    for step in range(steps):
        trial.report(step=step, value=x * step)
    return {"final": x * steps}
