"""Tri-decoding with and without KV caches: the figures docs/performance.md quotes.

1. steps   the time of one cached forward pass of k new tokens (k = 1: a decoding step;
           more: verifying a draft) after a 64-token prefill, and of one uncached pass
           over 64 tokens, for each trained size (seed 0 of results/lm-sizes), one thread.
2. table   the full-grid sweep (and, where it exists, the one without caches): the summary
           rows and every cell's speedups with 95% intervals (markdown), from their
           trials tables.

    python benchmarks/kv_cache.py --parts steps table      # after lm-sizes.yaml, then
    # tridecoding.yaml, with and without --set params.kv_cache=false
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from common import script_parser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, run from anywhere

from analysis.aggregates import aggregate  # noqa: E402
from analysis.tridecoding import (  # noqa: E402
    THRESHOLDS,
    best_fixed,
    cells,
    predictions,
    with_baselines,
)
from experiments.lm.model import CharLM, KVCache  # noqa: E402
from experiments.tridecoding import SIZES  # noqa: E402


def steps(models: Path, repeats: int = 60) -> None:
    torch.set_num_threads(1)
    trials = pd.read_parquet(models / "trials")
    print("\n1. one forward pass, ms (median of", repeats, "), seed-0 models, one thread")
    for size in reversed(SIZES):
        row = trials[(trials["size"] == size) & (trials["seed"] == 0) & (trials["status"] == "ok")]
        model = CharLM.read(models / "artifacts" / row["trial_id"].iloc[0] / "model.pt")
        line = [f"{size:<7}"]
        with torch.no_grad():
            for k in (1, 2, 3, 5, 9):
                times = []
                for _ in range(repeats):
                    cache = KVCache()
                    model(torch.zeros(1, 64, dtype=torch.long), cache)
                    started = time.perf_counter()
                    model(torch.zeros(1, k, dtype=torch.long), cache)
                    times.append(time.perf_counter() - started)
                line.append(f"k={k}: {statistics.median(times) * 1e3:.3f}")
            full = []
            for _ in range(repeats):
                started = time.perf_counter()
                model(torch.zeros(1, 64, dtype=torch.long))
                full.append(time.perf_counter() - started)
        line.append(f"| no cache, 64 tokens: {statistics.median(full) * 1e3:.3f}")
        print("  ".join(line))


def ok_trials(folder: Path) -> pd.DataFrame:
    trials = pd.read_parquet(folder / "trials")
    return trials[trials["status"] == "ok"]


def summary(name: str, trials: pd.DataFrame) -> None:
    trials = with_baselines(trials, [])
    means = trials.groupby(list(THRESHOLDS))["speedup"].mean()
    table = cells(trials, list(THRESHOLDS)).set_index(list(THRESHOLDS))
    best, k = means.idxmax(), len(means)
    print(f"\n{name}: {len(trials)} trials, greedy equal to the target's in "
          f"{int((trials.get('matches_target', pd.Series()) == 1).sum())}")  # fmt: skip
    print(f"  best cell {best} (best of {k}): {table.loc[best, 'tri']}; cell means "
          f"{means.min():.2f}-{means.max():.2f}")  # fmt: skip
    for metric in ("speedup", "best_ratio"):
        for confidence in (0.95, 1 - 0.05 / k):
            rows = aggregate(trials, THRESHOLDS, [metric], confidence=confidence)
            print(f"  {metric}, {confidence:.5f} intervals: above 1 in "
                  f"{int((rows['ci_low'] > 1).sum())}, below 1 in "
                  f"{int((rows['ci_high'] < 1).sum())} of {k} cells")  # fmt: skip
    gamma, lengths = best_fixed(trials)
    per_g = lengths.set_index("gamma")["mean"].round(3).to_dict()
    print(f"  fixed two-level per g (seed means): {per_g}; best g {gamma}")
    tri_over = {"adaptive": trials["speedup"] / trials["adaptive_two_level_speedup"],
                f"fixed g={gamma}": trials["speedup"] / trials["best_fixed_speedup"],
                "best baseline": trials["best_ratio"]}  # fmt: skip
    for label, ratio in tri_over.items():
        print(f"  tri / {label}: mean {ratio.mean():.3f}")
    print(f"  adaptive two-level speedup: mean {trials['adaptive_two_level_speedup'].mean():.3f}")
    speeds = ["target_only_tokens_per_s", "adaptive_two_level_tokens_per_s",
              f"two_level_g{gamma}_tokens_per_s", "tokens_per_s", "draft_cost_ratio",
              "little_cost_ratio"]  # fmt: skip
    for column in speeds:
        print(f"  {column}: median {trials[column].median():.3f}")
    for column in ("cost_ratio", "draft_alpha", "little_alpha", "tokens_per_target_call",
                   "adaptive_two_level_tokens_per_target_call"):  # fmt: skip
        print(f"  {column}: {trials[column].min():.3f}-{trials[column].max():.3f}")
    for decoder, (predicted, measured) in predictions(trials).items():
        ratio = (trials[measured] / trials[predicted]).median()
        calls = measured.replace("speedup", "tokens_per_target_call")
        expected = trials[calls.replace("tokens_per", "expected_tokens_per")]
        print(
            f"  {decoder}: measured/predicted speedup median {ratio:.3f}; tokens per call "
            f"measured/expected median {(trials[calls] / expected).median():.3f}"
        )


def table(cached: Path, uncached: Path | None) -> None:
    with_cache = ok_trials(cached)
    summary(f"KV cache ({cached})", with_cache)
    c = cells(with_cache, list(THRESHOLDS)).set_index(list(THRESHOLDS))
    columns = {"tri": "tri", "adaptive two-level": "adaptive two-level",
               "fixed two-level at best g": "fixed two-level, best g",
               "tri / best baseline": "tri / best baseline"}  # fmt: skip
    out = c[list(columns)].rename(columns=columns)
    for name in ("tri", "adaptive two-level"):
        out[f"measured/predicted {name}"] = c[f"{name} measured/predicted"].map("{:.2f}".format)
    if uncached is not None and (uncached / "trials").exists():
        without = ok_trials(uncached)
        summary(f"no cache ({uncached})", without)
        u = cells(without, list(THRESHOLDS)).set_index(list(THRESHOLDS))
        out.insert(0, "tri, no cache", u["tri"])
    print("\n| small | draft | " + " | ".join(out.columns) + " |")
    print("|" + "---:|" * (len(out.columns) + 2))
    for (small, draft), row in out.iterrows():
        print(f"| {small:g} | {draft:g} | " + " | ".join(map(str, row.fillna("-"))) + " |")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--parts", nargs="+", default=["steps", "table"])
    parser.add_argument("--models", type=Path, default=Path("results/lm-sizes"))
    parser.add_argument("--cached", type=Path, default=Path("results/tridecoding"))
    parser.add_argument("--uncached", type=Path, default=Path("results/tridecoding-uncached"))
    parser.add_argument("--sampled", type=Path, default=Path("results/tridecoding-sampled"))
    args = parser.parse_args()
    if "steps" in args.parts:
        steps(args.models)
    if "table" in args.parts:
        table(args.cached, args.uncached)
        if (args.sampled / "trials").exists():
            summary(f"sampled ({args.sampled})", ok_trials(args.sampled))


if __name__ == "__main__":
    main()
