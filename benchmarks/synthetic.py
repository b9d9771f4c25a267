"""A synthetic sweep folder for the benchmarks, written with the project's own SweepStore.

    build_sweep(storage, trials=1000, steps=1000)   # -> <storage>/bench

Grid: lr (10 levels) x width (5 levels) x seeds, so `trials` must be a multiple
of 50. Per-step rows go to metrics/ the way a run's writer writes them: many
appends of `rows_per_file` rows (one Parquet file each), each covering the steps
of a few trials. trials/ gets one row per trial in files of `trials_per_file`.
With `jsonl=True` the same step rows are also written as Ray Tune's
JsonLoggerCallback would: one `<storage>/bench-json/<trial>/result.json` per
trial, one JSON object per line (`time` as ISO 8601 text, JSON having no dates).
Values are deterministic (numpy seed 0) and drift with lr and width, so a
report finds real differences between groups.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from analysis.tables import COLUMN_TYPES
from orchestrator.store.folder import SweepStore
from orchestrator.trials import trial_id

NAME = "bench"
LRS = [round(1e-4 * 2**i, 7) for i in range(10)]
WIDTHS = [32, 64, 128, 256, 512]
ATTEMPT = 1  # the ledger numbers attempts from 1
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
STEP_S = 0.05  # seconds between two reported steps of a trial
DIRECTIONS = {"val_loss": "lower", "accuracy": "higher"}


def build_sweep(
    storage: str | Path,
    trials: int = 1000,
    steps: int = 1000,
    rows_per_file: int = 10_000,
    trials_per_file: int = 100,
    jsonl: bool = False,
    report: dict | None = None,
) -> Path:
    """Write sweep `bench` under `storage`; return its folder (<storage>/bench).

    `report` is the spec's `report:` section (e.g. {"directions": DIRECTIONS}).
    """
    if trials % (len(LRS) * len(WIDTHS)):
        raise ValueError(f"trials must be a multiple of {len(LRS) * len(WIDTHS)}, not {trials}")
    seeds = trials // (len(LRS) * len(WIDTHS))
    store = SweepStore(str(storage), NAME)
    rng = np.random.default_rng(0)
    configs = [
        {"lr": lr, "width": w, "seed": s} for lr in LRS for w in WIDTHS for s in range(seeds)
    ]
    ids = [trial_id(NAME, c) for c in configs]
    started = [START + timedelta(seconds=i * steps * STEP_S / 2) for i in range(trials)]

    # Per-step curves, one row of `steps` values per trial: loss decays at a rate set by
    # lr and width, plus seed noise; accuracy follows the validation loss.
    lr_idx = np.repeat(np.arange(len(LRS)), len(WIDTHS) * seeds)
    w_idx = np.tile(np.repeat(np.arange(len(WIDTHS)), seeds), len(LRS))
    rate = 3.0 + 0.25 * lr_idx - 0.02 * (lr_idx - 6) ** 2 + 0.15 * w_idx
    floor = 0.3 + 0.02 * np.abs(lr_idx - 6) - 0.01 * w_idx
    x = np.linspace(0.0, 1.0, steps)
    train = floor[:, None] + 2.0 * np.exp(-rate[:, None] * x) + rng.normal(0, 0.02, (trials, steps))
    val = train + 0.05 + rng.normal(0, 0.03, (trials, steps))
    accuracy = np.clip(1.0 - val / 2.5 + rng.normal(0, 0.01, (trials, steps)), 0.0, 1.0)

    step_s = timedelta(seconds=STEP_S)
    rows: list[dict] = []
    json_dir = Path(storage) / f"{NAME}-json"
    for t in range(trials):
        trial_rows = [
            {
                "trial_id": ids[t],
                "attempt": ATTEMPT,
                "time": started[t] + s * step_s,
                "step": s,
                "train_loss": float(train[t, s]),
                "val_loss": float(val[t, s]),
                "accuracy": float(accuracy[t, s]),
            }
            for s in range(steps)
        ]
        if jsonl:
            folder = json_dir / ids[t]
            folder.mkdir(parents=True, exist_ok=True)
            lines = (
                json.dumps({**r, "time": r["time"].isoformat("T", "microseconds")})
                for r in trial_rows
            )
            (folder / "result.json").write_text("\n".join(lines) + "\n")
        rows += trial_rows
        while len(rows) >= rows_per_file or (t == trials - 1 and rows):
            chunk, rows = rows[:rows_per_file], rows[rows_per_file:]
            store.append("metrics", chunk, COLUMN_TYPES["metrics"])

    trial_rows = []
    for t, config in enumerate(configs):
        finished = started[t] + steps * step_s
        trial_rows.append(
            {
                "trial_id": ids[t],
                "sweep": NAME,
                "experiment": NAME,
                "status": "ok",
                "attempt": ATTEMPT,
                "error": None,
                "started_at": started[t],
                "finished_at": finished,
                "duration_s": (finished - started[t]).total_seconds(),
                "node": "node-0",
                "host": "bench-host",
                "gpu_ids": None,
                **config,
                "val_loss": float(val[t, -1]),
                "accuracy": float(accuracy[t, -1]),
                "run_id": "bench000",
                "git_commit": "0" * 40,
                "git_dirty": False,
            }
        )
    for i in range(0, trials, trials_per_file):
        store.append("trials", trial_rows[i : i + trials_per_file], COLUMN_TYPES["trials"])

    spec = {
        "name": NAME,
        "experiment": NAME,
        "grid": {"lr": LRS, "width": WIDTHS},
        "seeds": seeds,
        "params": {},
        "search": {"algorithm": "grid"},
        "report": report or {},
    }
    store.write_meta(
        {
            "name": NAME,
            "experiment": NAME,
            "config_columns": ["lr", "width", "seed"],
            "spec": spec,
            "runs": [],
        }
    )
    return Path(store.path)
