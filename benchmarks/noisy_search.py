"""How many seeds per config, for a fixed budget of trials? Search on a noisy function.

The objective is f(x, y) = (x - 0.3)^2 + (y - 0.7)^2 on [0, 1]^2 (optimum 0 at
(0.3, 0.7)), observed as f + sigma * N(0, 1), the noise drawn from a generator seeded by
(seed, x, y): each (config, seed) has its own independent noise. Each sweep spends the
same budget of trials (--budget, default 64) on budget/k configs with k seeds each
(k = 1: 64 configs of one seed; k = 8: 8 configs of 8 seeds), with `search` random or
optuna told the mean over a config's seeds (`aggregate: mean`). The config a sweep
reports as best is rank 1 of analysis.configs.rank_configs (the best mean over its
seeds: what the searcher saw); its regret is the noise-free f there (f's optimum is 0).

Every (noise, algorithm, k) runs --reps times (seeds [rep*1000 + i for i < k], one
storage folder per sweep), all sweeps in one local Ray of 2 CPUs. Per (noise,
algorithm, k) it prints the median regret and its interquartile range over the reps,
and splits it in two: `sampled` = the best noise-free f among the configs the sweep
ran (what a noise-free pick would have got), and `selection` = regret - sampled (what
the noise cost when picking among them); `optimism` = the pick's reported mean minus
its true f (how flattering the reported best value is; negative = too good), and
`p vs fewest seeds` the two-sided Mann-Whitney p-value of the row's regrets against
those of the fewest seeds per config (same noise and algorithm).

    python benchmarks/noisy_search.py                        # 20 reps x 2 x 2 x 4 = 320 sweeps
    python benchmarks/noisy_search.py --reps 2 --budget 16   # plumbing check
    python benchmarks/noisy_search.py --noise 0.01 0.1 0.3 --algorithms random --out results/

Writes sweeps.csv (one row per sweep, written as they finish), summary.csv,
summary.json and the sweeps' folders under --out (default: a new temporary folder).
A sweep that fails or does not run its whole budget is counted, shown, and left out.
"""

from __future__ import annotations

import csv
import json
import math
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, beside this file

OPTIMUM = (0.3, 0.7)
METRIC = "loss"
SWEEP_FIELDS = [
    "sigma", "algorithm", "k", "rep", "configs", "seconds", "trials_ok", "configs_run",
    "best_x", "best_y", "reported", "regret", "sampled", "selection", "optimism", "error",
]  # fmt: skip


def true_f(x: float, y: float) -> float:
    """The noise-free objective; its minimum, 0, is at OPTIMUM."""
    return (x - OPTIMUM[0]) ** 2 + (y - OPTIMUM[1]) ** 2


def _bits(v: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(v)))[0]


def objective(config: dict[str, Any], trial: Any) -> dict[str, float]:
    """The experiment: f at (x, y) plus sigma * N(0, 1), the noise seeded by (seed, x, y)."""
    x, y, sigma = config["x"], config["y"], config["sigma"]
    rng = np.random.default_rng([trial.seed, _bits(x), _bits(y)])
    f = true_f(x, y)
    return {METRIC: f + sigma * float(rng.standard_normal()), "true": f}


def spread_of_f(n: int = 200_000) -> dict[str, float]:
    """f over uniform [0, 1]^2: its sd and quantiles, for reading sigma against."""
    pts = np.random.default_rng(0).random((n, 2))
    f = (pts[:, 0] - OPTIMUM[0]) ** 2 + (pts[:, 1] - OPTIMUM[1]) ** 2
    q = np.quantile(f, [0.01, 0.1, 0.5, 0.9])
    return {"sd": float(f.std()), "q01": q[0], "q10": q[1], "q50": q[2], "q90": q[3]}


def one_sweep(
    storage: Path, name: str, algorithm: str, sigma: float, k: int, rep: int, budget: int
) -> dict[str, Any]:
    """Run one search sweep; what it picked, and how good that is without the noise."""
    import pandas as pd

    from analysis.configs import rank_configs
    from orchestrator import run_sweep

    configs = budget // k
    spec = {
        "name": name,
        "experiment": "noisy_search:objective",
        "grid": {"x": {"uniform": [0, 1]}, "y": {"uniform": [0, 1]}},
        "params": {"sigma": sigma},
        "seeds": [rep * 1000 + i for i in range(k)],
        "search": {
            "algorithm": algorithm,
            "num_samples": configs,
            "metric": METRIC,
            "mode": "min",
            "aggregate": "mean",
        },
        "storage": str(storage),
    }
    row: dict[str, Any] = {
        "sigma": sigma, "algorithm": algorithm, "k": k, "rep": rep, "configs": configs,
    }  # fmt: skip
    start = time.perf_counter()
    try:
        run_sweep(spec, progress=None)
        trials = pd.read_parquet(storage / name / "trials")
    except Exception as exc:  # a failed sweep is reported, not fatal to the benchmark
        return {**row, "seconds": time.perf_counter() - start, "error": repr(exc)[:300]}
    row["seconds"] = time.perf_counter() - start
    ok = trials[trials["status"] == "ok"]
    row["trials_ok"] = len(ok)
    row["configs_run"] = int(trials["config_id"].nunique())
    if len(ok) != budget or row["configs_run"] != configs:
        row["error"] = f"{len(ok)} ok trials of {budget}, {row['configs_run']} configs"
        return row
    ranked = rank_configs(trials, METRIC, "min", how="mean", config_columns=["x", "y"])
    best = ranked.iloc[0]
    regret = true_f(best["x"], best["y"])
    sampled = min(true_f(x, y) for x, y in zip(ranked["x"], ranked["y"], strict=True))
    return {
        **row,
        "best_x": float(best["x"]),
        "best_y": float(best["y"]),
        "reported": float(best["value"]),
        "regret": regret,
        "sampled": sampled,
        "selection": regret - sampled,
        "optimism": float(best["value"]) - regret,
        "error": "",
    }


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return float(q1), float(q2), float(q3)


def summarize(rows: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Per (sigma, algorithm, k): quartiles over the reps, and the two-sided Mann-Whitney
    p-value of its regrets against those of the fewest seeds per config."""
    from scipy.stats import mannwhitneyu

    groups: dict[tuple[float, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["sigma"], r["algorithm"], r["k"]), []).append(r)
    out = []
    for (sigma, algorithm, k), members in sorted(groups.items()):
        good = [r for r in members if not r.get("error")]
        entry: dict[str, Any] = {
            "sigma": sigma,
            "algorithm": algorithm,
            "seeds_per_config": k,
            "configs": budget // k,
            "reps": len(good),
            "failed": len(members) - len(good),
        }
        for key in ("regret", "sampled", "selection", "optimism"):
            q1, q2, q3 = quartiles([r[key] for r in good]) if good else (math.nan,) * 3
            entry.update({f"{key}_median": q2, f"{key}_q1": q1, f"{key}_q3": q3})
        fewest = groups[(sigma, algorithm, min(k for _, _, k in groups))]
        base = [r["regret"] for r in fewest if not r.get("error")]
        entry["p_vs_fewest_seeds"] = (
            float(mannwhitneyu([r["regret"] for r in good], base).pvalue)
            if good and base and members is not fewest
            else math.nan
        )
        entry["seconds_median"] = float(np.median([r["seconds"] for r in members]))
        out.append(entry)
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| noise sigma | search | seeds/config | configs | median regret [IQR] "
        "| sampled | selection | optimism | p vs fewest seeds | reps |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        failed = f" ({s['failed']} failed)" if s["failed"] else ""
        lines.append(
            f"| {s['sigma']:g} | {s['algorithm']} | {s['seeds_per_config']} | {s['configs']} "
            f"| {s['regret_median']:.4f} [{s['regret_q1']:.4f}, {s['regret_q3']:.4f}] "
            f"| {s['sampled_median']:.4f} | {s['selection_median']:.4f} "
            f"| {s['optimism_median']:+.4f} | {_p(s['p_vs_fewest_seeds'])} | {s['reps']}{failed} |"
        )
    return "\n".join(lines)


def _p(p: float) -> str:
    return "-" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def main() -> None:
    from common import script_parser, start_local_ray

    parser = script_parser(__doc__)
    parser.add_argument("--budget", type=int, default=64, help="trials per sweep (default 64)")
    parser.add_argument("--reps", type=int, default=20, help="repetitions per row (default 20)")
    parser.add_argument("--seeds-per-config", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--algorithms", nargs="+", default=["random", "optuna"])
    parser.add_argument("--out", type=Path, default=None, help="default: a new temp folder")
    args = parser.parse_args()
    for k in args.seeds_per_config:
        if k < 1 or args.budget % k:
            parser.error(f"--seeds-per-config {k} does not divide --budget {args.budget}")
    out = (args.out or Path(tempfile.mkdtemp(prefix="raysweep-noisy-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = out / "sweeps"

    import noisy_search  # this file as a module (not __main__), shipped to workers by value
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(noisy_search)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass

    spread = spread_of_f()
    print(
        f"f over [0,1]^2: sd {spread['sd']:.3f}; quantiles 1% {spread['q01']:.4f}, "
        f"10% {spread['q10']:.4f}, 50% {spread['q50']:.4f}, 90% {spread['q90']:.4f}",
        file=sys.stderr,
    )
    start_local_ray()
    rows: list[dict[str, Any]] = []
    total = args.reps * len(args.noise) * len(args.algorithms) * len(args.seeds_per_config)
    began = time.perf_counter()
    with open(out / "sweeps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SWEEP_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for rep in range(args.reps):  # reps outermost: drift hits every row alike
            for sigma in args.noise:
                for algorithm in args.algorithms:
                    for k in args.seeds_per_config:
                        name = f"{algorithm}-s{sigma:g}-k{k}-r{rep}"
                        row = one_sweep(storage, name, algorithm, sigma, k, rep, args.budget)
                        rows.append(row)
                        writer.writerow(row)
                        f.flush()
                        what = row.get("error") or (
                            f"regret {row['regret']:.4f} (sampled {row['sampled']:.4f})"
                        )
                        print(
                            f"[{len(rows)}/{total}] {name}: {what}, {row['seconds']:.1f} s "
                            f"({time.perf_counter() - began:.0f} s so far)",
                            file=sys.stderr,
                        )
    ray.shutdown()
    wall = time.perf_counter() - began

    summary = summarize(rows, args.budget)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "budget": args.budget,
                "reps": args.reps,
                "noise": args.noise,
                "algorithms": args.algorithms,
                "seeds_per_config": args.seeds_per_config,
                "spread_of_f": spread,
                "wall_seconds": wall,
                "rows": summary,
            },
            indent=1,
        )
    )
    with open(out / "summary.csv", "w", newline="") as f:
        table_writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        table_writer.writeheader()
        table_writer.writerows(summary)

    failed = sum(1 for r in rows if r.get("error"))
    print(
        f"\nBudget {args.budget} trials per sweep, {args.reps} reps per row, {len(rows)} "
        f"sweeps ({failed} failed), {wall / 60:.1f} min. Regret = noise-free f at the config "
        f"ranked best (optimum 0); f's sd over [0,1]^2 is {spread['sd']:.3f}.\n"
    )
    print(table(summary))
    print(f"\nResults: {out}")


if __name__ == "__main__":
    main()
