"""raysweep's orchestrator: sweep specs in, trials on Ray Tune, Parquet out.

from orchestrator import run_sweep
result = run_sweep("experiments/sweeps/quickstart.yaml")
result.trials()          # pandas DataFrame, one row per trial attempt
"""

from typing import TYPE_CHECKING, Any

from orchestrator.context import Trial
from orchestrator.declaration import Experiment, experiment
from orchestrator.errors import InputError
from orchestrator.params import parameters
from orchestrator.registry import available, register
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.trials import expand, trial_id

if TYPE_CHECKING:  # imported on first use below: the runner imports Ray Tune (a second)
    from orchestrator.runner import Plan, SweepResult, run_sweep

__all__ = [
    "Experiment",
    "InputError",
    "Plan",
    "SweepResult",
    "SweepSpec",
    "Trial",
    "available",
    "expand",
    "experiment",
    "load_spec",
    "parameters",
    "register",
    "run_sweep",
    "trial_id",
]


def __getattr__(name: str) -> Any:
    """The runner's names, imported on first use: `sweep status`, `sweep ls` and
    experiment modules do without Ray Tune."""
    if name in ("Plan", "SweepResult", "run_sweep"):
        from orchestrator import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
