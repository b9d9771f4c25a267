"""Columns of a sweep's tables that are not results (DESIGN.md's contract). No imports,
so the spec validation can keep config keys off them without loading pandas."""

# The trials table's bookkeeping: neither config nor results.
BOOKKEEPING = frozenset(
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
        "run_id",
        "git_commit",
        "git_dirty",
    }
)
# The metrics table's keys, and the pairs table's (pairs of seeds of one config).
STEP_COLUMNS = frozenset({"sweep", "trial_id", "attempt", "time", "step"})
PAIR_COLUMNS = frozenset({"sweep", "seed_a", "seed_b", "trial_a", "trial_b", "n_positions"})
