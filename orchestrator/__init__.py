"""raysweep's orchestrator: sweep specs in, trials on Ray Tune, Parquet out.

from orchestrator import run_sweep
result = run_sweep("experiments/sweeps/quickstart.yaml")
result.trials()          # pandas DataFrame, one row per trial attempt
"""

from orchestrator.context import Trial
from orchestrator.errors import InputError
from orchestrator.params import parameters
from orchestrator.registry import available, register
from orchestrator.runner import Plan, SweepResult, run_sweep
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.trials import expand, trial_id

__all__ = [
    "InputError",
    "Plan",
    "SweepResult",
    "SweepSpec",
    "Trial",
    "available",
    "expand",
    "load_spec",
    "parameters",
    "register",
    "run_sweep",
    "trial_id",
]
