"""Trivial experiments: for benchmarks of per-trial overhead and for tests."""

from __future__ import annotations

from typing import Any


def trivial(config: dict[str, Any], trial: Any) -> dict[str, float]:
    """Reports `steps` (default 5) cheap steps and returns at once: pure orchestration cost."""
    x = float(config.get("x", 1.0))
    steps = int(config.get("steps", 5))
    for step in range(steps):
        trial.report(step=step, value=x * step)
    return {"final": x * steps}
