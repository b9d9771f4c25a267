"""Several small trials per GPU: training throughput at 1, 2, 4 and 8 trials per GPU.

The same N small LM trainings (the reproducibility experiment, N seeds) run as one
sweep per packing k, each trial asking for 1/k of a GPU, so up to k trials share
one device. Reported per k: wall time, trials per minute, and training tokens per
second summed over the sweep (total tokens / wall time), relative to k = 1.

    python benchmarks/gpu_packing.py                # a GPU machine: k = 1, 2, 4, 8
    python benchmarks/gpu_packing.py --check        # anywhere: the same on CPU, tiny, k = 1, 2

--check runs trials on the CPU (fractions of a CPU instead of a GPU) to show the
script works; its numbers say nothing about GPUs.
"""

from __future__ import annotations

import tempfile
import time

import ray
import torch
from common import script_parser

from orchestrator import run_sweep

MODEL = {"activation": "relu", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64,
         "batch_size": 32, "lr": 0.003, "eval_windows": 8}  # fmt: skip


def run(k: int, trials: int, steps: int, gpu: bool) -> tuple[float, float]:
    """Wall seconds and training tokens/s of `trials` trainings at k per device."""
    resources = {"gpu": 1 / k, "cpu": 1} if gpu else {"cpu": 1 / k}
    params = {**MODEL, "steps": steps, "eval_every": steps}
    with tempfile.TemporaryDirectory() as folder:
        spec = {"name": f"pack{k}", "experiment": "reproducibility", "seeds": trials,
                "params": params, "resources": resources, "storage": folder}  # fmt: skip
        start = time.perf_counter()
        result = run_sweep(spec, progress=None)
        wall = time.perf_counter() - start
    assert result.count("ok") == trials, result.rows[0].get("error")
    tokens = trials * steps * MODEL["batch_size"] * MODEL["block_size"]
    return wall, tokens / wall


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--packing", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--check", action="store_true", help="tiny, on CPU, k = 1 and 2")
    args = parser.parse_args()
    gpu = not args.check
    if gpu and not torch.cuda.is_available():
        parser.error("no CUDA device here; --check runs the same on CPU")
    trials, steps, packing = (
        (4, 20, [1, 2]) if args.check else (args.trials, args.steps, args.packing)
    )

    ray.init(num_gpus=1 if gpu else 0, include_dashboard=False, logging_level="ERROR")
    results = {k: run(k, trials, steps, gpu) for k in packing}
    ray.shutdown()

    device = torch.cuda.get_device_name(0) if gpu else "CPU (--check: not a GPU figure)"
    print(f"\n{trials} trainings x {steps} steps (2 x 64 LM, batch 32 x 64) on one {device}")
    print(f"{'per device':>10} {'wall s':>8} {'trials/min':>11} {'tokens/s':>10} {'vs k=1':>7}")
    base = results[packing[0]][1]
    for k, (wall, rate) in results.items():
        print(
            f"{k:>10} {wall:>8.1f} {60 * trials / wall:>11.1f} {rate:>10,.0f} {rate / base:>6.2f}x"
        )


if __name__ == "__main__":
    main()
