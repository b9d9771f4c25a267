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

import math
import os

import ray
from common import script_parser
from overhead import STEPS, seconds, with_sweep, with_tune
from ray.cluster_utils import Cluster


def main() -> None:
    parser = script_parser(__doc__)
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
    seconds(lambda n, f: with_tune(n, f, tuned=True), slots)  # warm the workers
    sleep = args.duration
    runs = {
        "sweep": (lambda n, f: with_sweep(n, f, sleep), args.trials),
        "tune-tuned": (lambda n, f: with_tune(n, f, tuned=True, sleep=sleep), args.trials),
        "tune-stock": (lambda n, f: with_tune(n, f, tuned=False, sleep=sleep), args.stock_trials),
    }
    results = {name: (seconds(run, n), n) for name, (run, n) in runs.items()}
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
