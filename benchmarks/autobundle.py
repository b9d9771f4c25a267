"""`bundle: {size: auto}` on the quickstart LM: the size the probe picks, against fixed sizes.

1. auto    the choice `sweep run` makes for a sweep of --seeds seeds of the quickstart LM
           (one activation), each bundle asking for one GPU (one CPU with --check): the
           probe runs through Ray, on a worker that asks for what a bundle asks, as in a
           sweep (orchestrator/autobundle.py), with validation every --eval-every steps
           (its step: from one report to the next).
2. fixed   fused training throughput (tokens/s, all members together) at N = --members
           and at the size auto picked, as benchmarks/bundles.py's part 3 measures it.
Then the size auto picked and its throughput against the best fixed size's.

    python benchmarks/autobundle.py            # a GPU machine: N = 1, 16, 32, 64, 128
    python benchmarks/autobundle.py --check    # anywhere: the same on the CPU, tiny

--check runs on the CPU with 4 seeds, N = 1, 2, 4 and short runs to show the script works;
its numbers say nothing about GPUs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bundles.py, beside this file

import ray  # noqa: E402
import torch  # noqa: E402
from bundles import fused_rate, quickstart_params  # noqa: E402
from common import script_parser  # noqa: E402

from orchestrator import run_sweep  # noqa: E402
from orchestrator.autobundle import choose  # noqa: E402
from orchestrator.registry import resolve  # noqa: E402


def auto_choice(seeds: int, eval_every: int, gpu: bool) -> dict[str, Any]:
    """What `bundle: {size: auto}` records for the sweep, measured as `sweep run` would."""
    with tempfile.TemporaryDirectory() as folder:
        spec = {"name": "auto", "experiment": "reproducibility", "seeds": seeds,
                "params": quickstart_params(300, eval_every), "bundle": {"size": "auto"},
                "resources": {"cpu": 1, "gpu": int(gpu)}, "storage": folder}  # fmt: skip
        plan = run_sweep(spec, dry_run=True, progress=None)
        return choose(plan, resolve("reproducibility"), {})


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=128)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 32, 64, 128])
    parser.add_argument("--steps", type=int, default=100, help="training steps per fixed size")
    parser.add_argument("--eval-every", type=int, default=50, help="the probe's step")
    parser.add_argument("--check", action="store_true", help="tiny, on CPU")
    args = parser.parse_args()
    gpu = not args.check
    if gpu and not torch.cuda.is_available():
        parser.error("no CUDA device here; --check runs the same on CPU")
    seeds, members, steps, every = (
        (4, [1, 2, 4], 10, 5) if args.check else (args.seeds, args.members, args.steps,
                                                  args.eval_every)
    )  # fmt: skip
    device = "cuda" if gpu else "cpu"

    ray.init(num_gpus=int(gpu), include_dashboard=False, logging_level="ERROR")
    record = auto_choice(seeds, every, gpu)
    ray.shutdown()
    print(f"auto: {record}")

    fused_rate(1, device, steps)  # warm up (a GPU's first kernels, the corpus)
    rates = {n: fused_rate(n, device, steps) for n in sorted({*members, record["size"]})}
    name = torch.cuda.get_device_name(0) if gpu else "CPU (--check: not a GPU figure)"
    print(f"\nquickstart LM fused, {steps} steps, on one {name}")
    first = min(rates)
    print(f"{'members':>7} {'tokens/s (all)':>15} {f'vs {first}':>6}")
    for n, rate in rates.items():
        print(f"{n:>7} {rate:>15,.0f} {rate / rates[first]:>5.2f}x")
    best = max(rates, key=rates.__getitem__)
    chosen = record["size"]
    print(
        f"\nauto picked {chosen} ({record['rule']}, floor {record['floor']}): "
        f"{rates[chosen]:,.0f} tokens/s, {rates[chosen] / rates[best]:.2f}x the best fixed "
        f"size's ({best}: {rates[best]:,.0f} tokens/s)"
    )


if __name__ == "__main__":
    main()
