"""Tri-decoding with and without KV caches: the figures docs/performance.md quotes.

1. steps   the time of one cached forward pass of k new tokens (k = 1: a decoding step;
           more: verifying a draft) after a 64-token prefill, and of one uncached pass
           over 64 tokens, for each trained size (seed 0 of results/lm-sizes), one thread.
2. table   the two full-grid sweeps side by side: the summary rows and every cell's
           speedups with 95% intervals (markdown), from their trials tables.

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
from analysis.tridecoding import THRESHOLDS, cells  # noqa: E402
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
    means = trials.groupby(list(THRESHOLDS))["speedup"].mean()
    table = cells(trials, list(THRESHOLDS)).set_index(list(THRESHOLDS))
    best = means.idxmax()
    spread = aggregate(trials, THRESHOLDS, ["speedup", "speedup_vs_two_level"])
    print(f"\n{name}: {len(trials)} trials, greedy equal to the target's in "
          f"{int((trials['matches_target'] == 1).sum())}")  # fmt: skip
    print(f"  best cell {best}: {table.loc[best, 'tri']}; cell means "
          f"{means.min():.2f}-{means.max():.2f}")  # fmt: skip
    for metric in ("speedup", "speedup_vs_two_level"):
        rows = spread[spread["metric"] == metric]
        print(f"  {metric}: interval above 1 in {int((rows['ci_low'] > 1).sum())}, below 1 in "
              f"{int((rows['ci_high'] < 1).sum())} of {len(rows)} cells")  # fmt: skip
    for column in ("two_level_speedup", "speedup_vs_two_level"):
        print(f"  {column}: mean {trials[column].mean():.3f}")
    for column in ("target_only_tokens_per_s", "two_level_tokens_per_s", "tokens_per_s",
                   "draft_cost_ratio", "little_cost_ratio"):  # fmt: skip
        print(f"  {column}: median {trials[column].median():.3f}")
    for column in ("cost_ratio", "draft_alpha", "little_alpha", "tokens_per_target_call"):
        print(f"  {column}: {trials[column].min():.3f}-{trials[column].max():.3f}")
    for predicted, measured in (("predicted_speedup", "speedup"),
                                ("two_level_predicted_speedup", "two_level_speedup")):  # fmt: skip
        ratio = (trials[measured] / trials[predicted]).median()
        print(f"  {measured} / {predicted}: median {ratio:.3f}")


def table(cached: Path, uncached: Path) -> None:
    with_cache, without = ok_trials(cached), ok_trials(uncached)
    summary(f"KV cache ({cached})", with_cache)
    summary(f"no cache ({uncached})", without)
    c = cells(with_cache, list(THRESHOLDS)).set_index(list(THRESHOLDS))
    u = cells(without, list(THRESHOLDS)).set_index(list(THRESHOLDS))
    out = pd.DataFrame({
        "tri, no cache": u["tri"], "tri, KV cache": c["tri"], "two-level, KV cache": c["two-level"],
        "tri / two-level, KV cache": c["tri / two-level"],
        "measured/predicted tri": c["tri measured/predicted"].map("{:.2f}".format),
        "measured/predicted two-level": c["two-level measured/predicted"].map("{:.2f}".format),
    })  # fmt: skip
    print("\n| small | draft | " + " | ".join(out.columns) + " |")
    print("|" + "---:|" * (len(out.columns) + 2))
    for (small, draft), row in out.iterrows():
        print(f"| {small:g} | {draft:g} | " + " | ".join(map(str, row)) + " |")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--parts", nargs="+", default=["steps", "table"])
    parser.add_argument("--models", type=Path, default=Path("results/lm-sizes"))
    parser.add_argument("--cached", type=Path, default=Path("results/tridecoding"))
    parser.add_argument("--uncached", type=Path, default=Path("results/tridecoding-uncached"))
    args = parser.parse_args()
    if "steps" in args.parts:
        steps(args.models)
    if "table" in args.parts:
        table(args.cached, args.uncached)


if __name__ == "__main__":
    main()
