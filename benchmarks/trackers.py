"""What a tracker costs per trial: the same sweep of N trivial trials (each reports
--steps steps) with no tracker, and with each of `log: [tensorboard]`, `[mlflow]` (a file
store) and `[wandb]` (offline), on one local Ray, the runs interleaved, in one process.

    python benchmarks/trackers.py                         # N=40, 20 steps, median of 3
    python benchmarks/trackers.py --trials 100 --steps 100 --repeats 5

Each tracker writes under a temporary folder; nothing is contacted. Needs the extras:
pip install 'raysweep[tensorboard,mlflow,wandb]'.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from common import script_parser, start_local_ray

from analysis.tables import Status
from orchestrator import run_sweep

TRACKERS = ("none", "tensorboard", "mlflow", "wandb")


def timed(tracker: str, trials: int, steps: int, folder: str) -> float:
    """Seconds for the sweep, its Parquet tables and its tracker runs."""
    spec = {
        "name": f"trackers-{tracker}",
        "experiment": "trivial",
        "grid": {"x": list(range(trials))},
        "params": {"steps": steps},
        "storage": folder,
        "log": [] if tracker == "none" else [tracker],
    }
    began = time.perf_counter()
    result = run_sweep(spec, progress=None)
    took = time.perf_counter() - began
    if result.count(Status.OK) != trials:
        raise SystemExit(f"log {tracker}: {result.count(Status.OK)} of {trials} trials ok")
    return took


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="raysweep-trackers-")
    os.environ.update(
        MLFLOW_TRACKING_URI=f"file:{work}/mlruns",
        MLFLOW_ALLOW_FILE_STORE="true",
        WANDB_MODE="offline",
        WANDB_DIR=f"{work}/wandb",
    )
    os.makedirs(f"{work}/wandb")
    start_local_ray()
    times: dict[str, list[float]] = {name: [] for name in TRACKERS}
    for repeat in range(args.repeats):
        for name in TRACKERS:
            times[name].append(timed(name, args.trials, args.steps, f"{work}/{repeat}"))
    base = statistics.median(times["none"]) / args.trials
    print(f"\n{args.trials} trivial trials x {args.steps} steps, median of {args.repeats}\n")
    print(f"{'log':<12} {'ms/trial':>9} {'extra ms/trial':>15} {'vs none':>8}")
    for name in TRACKERS:
        per = statistics.median(times[name]) / args.trials
        print(f"{name:<12} {per * 1e3:>9.1f} {(per - base) * 1e3:>15.1f} {per / base:>7.2f}x")
    for name in TRACKERS:
        print(f"{name} runs: " + ", ".join(f"{t:.1f}s" for t in times[name]))


if __name__ == "__main__":
    main()
