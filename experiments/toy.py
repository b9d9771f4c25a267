"""Trivial experiments: for benchmarks of per-trial overhead and for tests."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from orchestrator import Trial, experiment


class TrivialParams(BaseModel):
    x: float = Field(1.0, description="scale of the reported values")
    steps: int = Field(5, ge=0, description="steps reported")
    sleep: float = Field(0.0, ge=0, description="seconds to wait first: a trial of known length")


@experiment(params=TrivialParams)
def trivial(config: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Reports `steps` (default 5) cheap steps and returns at once: pure orchestration cost.
    With `sleep`, it first waits that many seconds (a trial of known length, no CPU)."""
    if config["sleep"]:  # sleep(0) still gives up the GIL and waits to get it back
        time.sleep(config["sleep"])
    x, steps = config["x"], config["steps"]
    for step in range(steps):
        trial.report(step=step, value=x * step)
    return {"final": x * steps}
