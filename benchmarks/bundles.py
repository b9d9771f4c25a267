"""Trial bundles (spec `bundle:`): what they save per trial, and what fusing seeds buys.

1. cost    per-trial cost of N trivial trials (5 steps each), in one process on one Ray:
           plain Ray tasks, Ray Tune tuned by hand (reuse_actors, no loggers), `sweep`
           unbundled, and `sweep` with bundles of 10 and 100 seeds.
2. scale   unbundled `sweep` against tuned Tune at several sizes (--sizes).
3. fused   training throughput (tokens/s, all members together) of the quickstart LM
           with N seeds fused in one model stack (experiments/stacked.py) against one
           trial alone, N = 1, 2, 4, ..., on --device.

    python benchmarks/bundles.py                          # all three, CPU, N=2000
    python benchmarks/bundles.py --parts fused --device cuda --fused-steps 100
    python benchmarks/bundles.py --parts scale --sizes 200 2000 10000
    python benchmarks/bundles.py --parts cost --plot docs/figures/bundles-cost.png
    python benchmarks/bundles.py --parts cost --runners sweep-bundle-100 --repeats 8

Runs of the same part go back to back, alternating their order each repeat (a noisy
machine drifts for all alike); medians are reported, and ratios run by run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # overhead.py, beside this file

from common import script_parser, start_local_ray  # noqa: E402
from overhead import seconds, with_tasks, with_tune  # noqa: E402

from orchestrator import run_sweep  # noqa: E402

# Per bundled run: seconds from the run's start to its first member's start, from then to
# its last member's end, and from then to the run's end, from the trials' own times in the
# run's rows (no file read).
SPANS: dict[int, list[tuple[float, float, float]]] = {}


def with_sweep(n: int, folder: str, bundle: int | None = None) -> None:
    spec: dict[str, Any] = {
        "name": "bundles",
        "experiment": "trivial",
        "grid": {"x": list(range(n // 10))},
        "seeds": 10,  # seeds are what bundles group
        "storage": folder,
    }
    if bundle:
        spec["bundle"] = {"size": bundle, "by": "*"}
    began = time.time()
    result = run_sweep(spec, progress=None)
    ended = time.time()
    assert result.count("ok") == n, result.rows[:1]
    if bundle:
        first = min(row["started_at"] for row in result.rows).timestamp()
        last = max(row["finished_at"] for row in result.rows).timestamp()
        SPANS.setdefault(bundle, []).append((first - began, last - first, ended - last))


def compare(runs: dict[str, Any], n: int, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(seconds(runs[name], n))
            print(f"  {name}, {n} trials: {times[name][-1]:.1f} s", file=sys.stderr)
    return times


RUNNERS = {
    "ray-tasks": with_tasks,
    "tune-tuned": lambda n, f: with_tune(n, f, tuned=True),
    "sweep": with_sweep,
    "sweep-bundle-10": lambda n, f: with_sweep(n, f, 10),
    "sweep-bundle-100": lambda n, f: with_sweep(n, f, 100),
}


def cost(n: int, repeats: int, runners: list[str]) -> dict[str, float]:
    """`runners`' cost per trial; plain Ray tasks always run, the base of the ratios."""
    times = compare({name: RUNNERS[name] for name in ["ray-tasks", *runners]}, n, repeats)
    base = statistics.median(times["ray-tasks"]) / n
    print(f"\n1. per-trial cost, {n} trivial trials, 2 CPUs, median of {repeats}")
    print(f"{'runner':<18} {'ms/trial':>9} {'vs ray-tasks':>13}")
    per_trial = {}
    for name, values in times.items():
        per = statistics.median(values) / n
        per_trial[name] = per * 1e3
        print(f"{name:<18} {per * 1e3:>9.2f} {per / base:>12.2f}x")
    for name, against in (("sweep", "tune-tuned"), ("sweep-bundle-100", "ray-tasks")):
        if name not in times or against not in times:
            continue
        ratios = [a / b for a, b in zip(times[name], times[against], strict=True)]
        print(
            f"{name} / {against}, run by run: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.2f}x ({name} {_spread(times[name])}, "
            f"{against} {_spread(times[against])})"
        )
    for size, spans in SPANS.items():
        waits, runs, tails = ([f"{s:.2f}" for s in column] for column in zip(*spans, strict=True))
        print(
            f"bundles of {size}, run by run: first member began {', '.join(waits)} s into the "
            f"run; all {n:,} members ran in {', '.join(runs)} s; the run ended "
            f"{', '.join(tails)} s after the last member"
        )
    return per_trial


def _spread(seconds: list[float]) -> str:
    return f"{min(seconds):.1f}-{max(seconds):.1f} s"


LABELS = {
    "ray-tasks": "plain Ray tasks",
    "tune-tuned": "Ray Tune, tuned by hand",
    "sweep": "raysweep, one Tune trial each",
    "sweep-bundle-10": "raysweep, bundles of 10",
    "sweep-bundle-100": "raysweep, bundles of 100",
}


def plot_cost(ms_per_trial: dict[str, float], n: int, repeats: int, path: Path) -> None:
    """The cost table as a bar chart (log scale): the README's figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reversed(ms_per_trial))  # first runner on top
    values = [ms_per_trial[name] for name in names]
    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=120)
    colors = ["#4c72b0" if name.startswith("sweep-bundle") else "#999999" for name in names]
    ax.barh([LABELS.get(name, name) for name in names], values, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 2, max(values) * 4)
    for y, value in enumerate(values):
        ax.text(value * 1.08, y, f"{value:.1f} ms", va="center", fontsize=9)
    ax.set_xlabel("ms per trial (log scale; lower is better)")
    ax.set_title(
        f"Cost per trivial trial: {n:,} trials, 5 reported steps each, 2 CPUs, median of {repeats}",
        fontsize=9,
    )
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"figure: {path}")


def scale(sizes: list[int], repeats: int) -> None:
    print(f"\n2. unbundled sweep / tuned Tune, median of {repeats} (and run by run)")
    for n in sizes:
        times = compare({name: RUNNERS[name] for name in ("sweep", "tune-tuned")}, n, repeats)
        ratios = [s / t for s, t in zip(times["sweep"], times["tune-tuned"], strict=True)]
        print(
            f"{n:>6} trials: sweep {statistics.median(times['sweep']) / n * 1e3:.1f} ms/trial, "
            f"tune {statistics.median(times['tune-tuned']) / n * 1e3:.1f} ms/trial, "
            f"ratio {statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"
        )


QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "sweeps" / "quickstart.yaml"


def quickstart_params(steps: int, eval_every: int) -> dict[str, Any]:
    """The quickstart LM's parameters (one activation), trained `steps` steps."""
    import yaml

    params = yaml.safe_load(QUICKSTART.read_text())["params"]
    return {**params, "activation": "gelu", "steps": steps, "eval_every": eval_every}


def fused_rate(n: int, device: str, steps: int) -> float:
    """Training tokens/s of all members together, n seeds of the quickstart LM fused."""
    from experiments.reproducibility import ReproducibilityParams, train_lms
    from orchestrator.context import Trial
    from orchestrator.params import effective

    config = quickstart_params(steps, steps)
    configs = [effective(ReproducibilityParams, {**config, "seed": s}) for s in range(n)]
    trials = [Trial(f"t{s}", c, device, lambda m: None, lambda n, o: "") for s, c in
              enumerate(configs)]  # fmt: skip
    finals = train_lms(configs, trials)
    return finals[0]["tokens_per_s"]  # a member's tokens over its share: the bundle's rate


def fused(members: list[int], device: str, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    fused_rate(1, device, steps)  # warm up (a GPU's first kernels, the corpus)
    one = fused_rate(1, device, steps)
    print(
        f"\n3. fused training, quickstart LM, {steps} steps, device {device}, {threads} thread(s)"
    )
    print(f"{'seeds':>5} {'tokens/s (all)':>15} {'vs one trial':>13}")
    for n in members:
        total = one if n == 1 else fused_rate(n, device, steps)
        print(f"{n:>5} {total:>15,.0f} {total / one:>12.2f}x")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--parts", nargs="+", default=["cost", "scale", "fused"])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--runners",
        nargs="+",
        choices=list(RUNNERS),
        default=list(RUNNERS),
        help="cost: which (plain Ray tasks always)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--fused-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fused, CPU)")
    parser.add_argument("--plot", type=Path, help="cost: also draw its table into this PNG")
    args = parser.parse_args()
    if {"cost", "scale"} & set(args.parts):
        import ray

        start_local_ray()
        seconds(with_tasks, 10)  # start the workers once, for everyone
        seconds(lambda n, f: with_tune(n, f, tuned=True), 4)
        if "cost" in args.parts:
            ms_per_trial = cost(args.trials, args.repeats, args.runners)
            if args.plot:
                plot_cost(ms_per_trial, args.trials, args.repeats, args.plot)
        if "scale" in args.parts:
            scale(args.sizes, args.repeats)
        ray.shutdown()
    if "fused" in args.parts:
        fused(args.members, args.device, args.fused_steps, args.threads)


if __name__ == "__main__":
    main()
