"""Columns of a sweep's tables that are not results (DESIGN.md's contract). No imports,
so the spec validation can keep config keys off them without loading pandas."""

# Where a trial ran (orchestrator/devices.py): the device, and on a GPU its name, memory,
# CUDA and driver versions, and the trial's peak memory in bytes.
DEVICE_COLUMNS = (
    "device",
    "gpu_name",
    "gpu_memory_total",
    "gpu_memory_peak",
    "gpu_memory_reserved",
    "cuda_version",
    "gpu_driver",
)
# The trials table's bookkeeping: neither config nor results.
BOOKKEEPING = frozenset(DEVICE_COLUMNS) | frozenset(
    {
        "trial_id",
        "sweep",
        "experiment",
        "status",
        "attempt",
        "error",
        "started_at",
        "finished_at",
        "node",
        "host",
        "gpu_ids",
        "bundle",
        "run_id",
        "git_commit",
        "git_dirty",
    }
)
# The metrics table's keys, and the pairs table's (pairs of seeds of one config).
STEP_COLUMNS = frozenset({"sweep", "trial_id", "attempt", "time", "step"})
PAIR_COLUMNS = frozenset({"sweep", "seed_a", "seed_b", "trial_a", "trial_b", "n_positions"})
