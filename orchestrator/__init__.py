"""raysweep's orchestrator: sweep specs in, trials on Ray Tune, Parquet out.

from orchestrator import run_sweep
result = run_sweep("experiments/sweeps/quickstart.yaml")
result.trials()          # pandas DataFrame, one row per trial attempt
"""

from typing import Any

from orchestrator.context import Trial
from orchestrator.errors import InputError
from orchestrator.experiment import Experiment, experiment
from orchestrator.params import parameters
from orchestrator.registry import available, register
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.trials import expand, trial_id

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
    """The runner's names, imported on first use: it imports Ray Tune (about a second),
    which `sweep status`, `sweep ls` and experiment modules do without."""
    if name in ("Plan", "SweepResult", "run_sweep"):
        from orchestrator import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
