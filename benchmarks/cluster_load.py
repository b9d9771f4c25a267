"""Many short trials on a three-node local Ray cluster: how far above the theoretical
minimum each runner finishes.

A head and two workers (ray.cluster_utils.Cluster, one machine), each with
--slots logical CPUs; every trial sleeps --duration seconds (no CPU) and
reports 5 steps, so with S slots in all the best possible wall time is
ceil(N / S) * duration. The same N trials run through:
  sweep        orchestrator.run_sweep (experiment `trivial` with `sleep`), Parquet included
  tune-tuned   Ray Tune, reuse_actors=True, TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1
  tune-stock   Ray Tune with its defaults, on --stock-trials trials (it is slow)
Ray's own release test accepts about 14-20% overhead for 10,000 one-second trials.

    python benchmarks/cluster_load.py                        # 1,000 x 1 s, 3 nodes x 4 slots
    python benchmarks/cluster_load.py --trials 200 --stock-trials 48
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import ray
from overhead import STEPS, env
from ray import tune
from ray.cluster_utils import Cluster

from orchestrator import run_sweep


def sleepy_tune(config: dict) -> dict:
    time.sleep(config["sleep"])
    for step in range(STEPS):
        tune.report({"step": step, "value": config["x"] * step})
    return {"final": config["x"] * STEPS}


def with_sweep(n: int, duration: float, folder: str) -> None:
    spec = {"name": "load", "experiment": "trivial", "grid": {"x": list(range(n))},
            "params": {"sleep": duration}, "storage": folder}  # fmt: skip
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == n, result.rows[:1]


def with_tune(n: int, duration: float, folder: str, tuned: bool) -> None:
    with env("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1" if tuned else "0"):
        tuner = tune.Tuner(
            sleepy_tune,
            param_space={"x": tune.grid_search(list(range(n))), "sleep": duration},
            tune_config=tune.TuneConfig(reuse_actors=tuned),
            run_config=tune.RunConfig(storage_path=folder, name="load", verbose=0),
        )
        grid = tuner.fit()
    assert grid.num_errors == 0 and len(grid) == n


def timed(run, n: int, duration: float) -> float:  # noqa: ANN001
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run(n, duration, folder)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--stock-trials", type=int, default=120)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=4, help="logical CPUs per node")
    args = parser.parse_args()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.slots})
    for _ in range(2):
        cluster.add_node(num_cpus=args.slots)
    ray.init(address=cluster.address, logging_level="ERROR")
    slots = 3 * args.slots
    timed(lambda n, d, f: with_tune(n, d, f, tuned=True), slots, 0.0)  # warm the workers
    runs = {
        "sweep": (lambda n, d, f: with_sweep(n, d, f), args.trials),
        "tune-tuned": (lambda n, d, f: with_tune(n, d, f, tuned=True), args.trials),
        "tune-stock": (lambda n, d, f: with_tune(n, d, f, tuned=False), args.stock_trials),
    }
    results = {name: (timed(run, n, args.duration), n) for name, (run, n) in runs.items()}
    ray.shutdown()
    cluster.shutdown()

    print(f"\n3 nodes x {args.slots} slots on {os.cpu_count()} CPU cores; trials of "
          f"{args.duration:g} s + {STEPS} reported steps")  # fmt: skip
    print(f"{'runner':<11} {'trials':>6} {'minimum s':>10} {'wall s':>8} {'overhead':>9}")
    for name, (wall, n) in results.items():
        minimum = math.ceil(n / slots) * args.duration
        print(f"{name:<11} {n:>6} {minimum:>10.1f} {wall:>8.1f} {wall / minimum - 1:>8.1%}")


if __name__ == "__main__":
    main()
