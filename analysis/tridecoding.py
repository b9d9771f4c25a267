"""The tri-decoding family's part of a report (SCIENCE.md section 2): speedup over the
threshold grid as a heat map, tri-decoding against the best of its two-level
baselines (the adaptive one in each cell, the fixed one at its best draft length),
measured against predicted speedup and tokens per target call, and the caveat that
acceptance rates under adaptive stopping are selection-biased.

The best cell and the best fixed draft length are picked on the data they are shown
with, and the report says so; counts of cells faster or slower than the target alone
use intervals adjusted for the number of cells (Bonferroni), not each cell's own."""

from __future__ import annotations

import re

import pandas as pd

from analysis import plots
from analysis.aggregates import aggregate, curve
from analysis.document import Block, Plot, Section, fmt
from analysis.settings import ReportSettings
from analysis.sweep import Sweep

THRESHOLDS = ("small_draft_threshold", "draft_target_threshold")
RATES = ("little_acceptance_rate", "draft_acceptance_rate")  # each set by its threshold
ADAPTIVE = "adaptive_two_level_"
FIXED = re.compile(r"^two_level_g(\d+)_speedup$")
SPEEDUPS = ["speedup", "adaptive_two_level_speedup", "predicted_speedup",
            "adaptive_two_level_predicted_speedup"]  # fmt: skip
REPORT = ReportSettings(
    metrics=[*SPEEDUPS, "cost_ratio", "draft_cost_ratio", "little_cost_ratio", "draft_alpha",
             "little_acceptance_rate", "draft_acceptance_rate", "tokens_per_target_call",
             "expected_tokens_per_target_call", "matches_target"],
    directions={"speedup": "higher", "adaptive_two_level_speedup": "higher",
                "tokens_per_s": "higher", "tokens_per_target_call": "higher",
                "little_acceptance_rate": "higher", "draft_acceptance_rate": "higher",
                "matches_target": "higher"},
    units={**dict.fromkeys(SPEEDUPS, "x"), "tokens_per_target_call": "tokens",
           "expected_tokens_per_target_call": "tokens"},
)  # fmt: skip


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("Tri-decoding: speedup over the threshold grid")
    trials = sweep.ok
    if not set(THRESHOLDS) <= set(trials.columns) or "speedup" not in trials:
        return [section.add("No threshold grid with a speedup here.")]
    others = [f for f in sweep.factors if f not in THRESHOLDS]  # kv_cache, greedy, sweep...
    trials = with_baselines(trials, others)
    parts = trials.groupby(others, sort=True) if others else [((), trials)]
    for key, part in parts:
        label = ", ".join(f"{name} {value}" for name, value in zip(others, key, strict=True))
        section.add(*_speedup_grid(part, label), *_against_baselines(part, label))
    section.add(
        "Per cell, mean over seeds with its 95% t-interval (n seeds; no interval with one); "
        "tri / best baseline divides by the better of the cell's adaptive two-level decoder "
        "and the fixed one at its best draft length:",
        cells(trials, sweep.factors),
    )
    if "predicted_speedup" in trials:
        section.add(*_measured_vs_predicted(trials))
    panels = [
        (curve(trials, threshold, [], rate), threshold, rate)
        for threshold, rate in zip(THRESHOLDS, RATES, strict=True)
        if rate in trials
    ]
    title = "Acceptance rate against its threshold (the other threshold and seeds pooled)"
    section.add(Plot("acceptance-vs-thresholds", plots.bands(panels, title)))
    return [
        section.add(
            "Acceptance rates are selection-biased under adaptive stopping: a higher threshold "
            "drafts shorter, more confident blocks that are accepted more often, so read them "
            "with tokens per target call and the measured speedup, never alone."
        )
    ]


def _suffix(label: str) -> str:
    return "-" + re.sub(r"[^\w.]+", "-", label) if label else ""


def _speedup_grid(trials: pd.DataFrame, label: str) -> list[Block]:
    """The heat map of mean speedup over the thresholds, its best cell (selected), and the
    cells faster or slower than the target alone by intervals simultaneous over the cells,
    for trials that differ only in thresholds and seed (`label` names what they share)."""
    grid = trials.pivot_table(index=THRESHOLDS[0], columns=THRESHOLDS[1], values="speedup")
    means = trials.groupby(list(THRESHOLDS))["speedup"].mean()
    best, k = means.idxmax(), len(means)
    simultaneous = aggregate(trials, THRESHOLDS, ["speedup"], confidence=1 - 0.05 / k)
    title = "Speedup over target-only decoding" + (f" ({label})" if label else "")
    text = (
        f"{label + ': s' if label else 'S'}peedup is target-only decoding time over "
        "tri-decoding time for the same prompts in the same trial (prompt prefills included "
        "on both sides; mean over seeds in each cell); above 1 tri-decoding is faster. Best "
        f"of {k} cells: small_draft_threshold {best[0]:g}, draft_target_threshold "
        f"{best[1]:g}: {fmt(means[best])}x (selected: picked as the largest of {k} means on "
        "these data, so it flatters that cell; confirm it on fresh seeds). With 95% "
        f"intervals simultaneous over the {k} cells (Bonferroni), "
        f"{int((simultaneous['ci_low'] > 1).sum())} cells are faster than the target alone "
        f"and {int((simultaneous['ci_high'] < 1).sum())} slower."
    )
    return [
        text,
        Plot("speedup-heatmap" + _suffix(label), plots.heatmap(grid, title, "speedup (x)")),
    ]


def fixed_lengths(trials: pd.DataFrame) -> dict[int, str]:
    """The fixed two-level baselines present: draft length -> speedup column."""
    found = {int(m[1]): column for column in trials if (m := FIXED.match(column))}
    return dict(sorted(found.items()))


def best_fixed(trials: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """The fixed draft length with the highest mean speedup over every trial given, and
    each length's speedup with a 95% interval over seeds (a seed's trials averaged first:
    the cells of a seed share its models)."""
    columns = fixed_lengths(trials)
    per_seed = trials.groupby("seed")[list(columns.values())].mean()
    per_seed.columns = list(columns)
    table = aggregate(
        per_seed.melt(var_name="gamma", value_name="speedup", ignore_index=False).reset_index(),
        ["gamma"],
        ["speedup"],
    )
    return int(table.loc[table["mean"].idxmax(), "gamma"]), table


def best_baseline(trials: pd.DataFrame) -> pd.Series:
    """Per trial, tri-decoding's speedup over the better baseline of its cell: the adaptive
    two-level decoder of that cell or the fixed one at the best length, whichever has the
    higher mean over the cell's seeds (both on these data: a selection)."""
    gamma, _ = best_fixed(trials)
    fixed, adaptive = f"two_level_g{gamma}_speedup", ADAPTIVE + "speedup"
    means = trials.groupby(list(THRESHOLDS))[[fixed, adaptive]].transform("mean")
    baseline = trials[adaptive].where(means[adaptive] >= means[fixed], trials[fixed])
    return (trials["speedup"] / baseline).rename("tri / best baseline")


def with_baselines(trials: pd.DataFrame, others: list[str]) -> pd.DataFrame:
    """`trials` with, per part that shares the `others` factors, the best fixed length
    (`best_g`), the fixed decoder's speedup at it and tri over the best baseline."""
    if ADAPTIVE + "speedup" not in trials or not fixed_lengths(trials):
        return trials
    parts = []
    for _, part in trials.groupby(others, sort=False) if others else [((), trials)]:
        gamma, _ = best_fixed(part)
        parts.append(
            part.assign(
                best_g=gamma,
                best_fixed_speedup=part[f"two_level_g{gamma}_speedup"],
                best_ratio=best_baseline(part),
            )
        )
    return pd.concat(parts).loc[trials.index]


def _against_baselines(trials: pd.DataFrame, label: str) -> list[Block]:
    """Tri-decoding against the adaptive and the best fixed two-level decoder, for trials
    that differ only in thresholds and seed (`with_baselines` columns added)."""
    if "best_ratio" not in trials:
        return []
    gamma, lengths = best_fixed(trials)
    k = trials.groupby(list(THRESHOLDS)).ngroups
    per_cell = aggregate(trials, THRESHOLDS, ["best_ratio"], confidence=1 - 0.05 / k)
    per_seed = (trials["speedup"] / trials[ADAPTIVE + "speedup"]).groupby(trials["seed"]).mean()
    adaptive = aggregate(per_seed.rename("ratio").reset_index().assign(all=0), ["all"], ["ratio"])
    grid = trials.pivot_table(index=THRESHOLDS[0], columns=THRESHOLDS[1], values="best_ratio")
    title = "Tri-decoding over the best two-level baseline" + (f" ({label})" if label else "")
    lengths = lengths.assign(interval=lengths.apply(_interval, axis=1))[["gamma", "n", "interval"]]
    text = (
        f"{label + ': t' if label else 'T'}wo-level baselines in the same trials. Fixed "
        f"draft lengths {', '.join(map(str, lengths['gamma']))}: best g = {gamma} "
        f"({fmt(trials['best_fixed_speedup'].mean())}x over the target alone; selected as "
        f"the best of {len(lengths)} on these data). The adaptive two-level decoder (the "
        "draft model with tri's confidence rule, no little model) averages "
        f"{fmt(trials[ADAPTIVE + 'speedup'].mean())}x; tri over it {_interval(adaptive.iloc[0])}x "
        f"(each seed's cells averaged, then mean and 95% t-interval over {len(per_seed)} "
        "seeds). Tri over the better baseline of each cell: "
        f"{fmt(trials['best_ratio'].mean())}x on average; with intervals simultaneous over "
        f"the {k} cells, {int((per_cell['ci_low'] > 1).sum())} cells are faster than their "
        f"best baseline and {int((per_cell['ci_high'] < 1).sum())} slower. Each fixed "
        "length's speedup over the target alone, a seed's cells averaged first (n seeds):"
    )
    plot = plots.heatmap(grid, title, "tri / best baseline (x)")
    return [text, lengths, Plot("speedup-vs-best-baseline" + _suffix(label), plot)]


def cells(trials: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per group (threshold pair, and any other factor): tri-decoding's speedup,
    the baselines' and tri over the best baseline, each as mean [95% interval] over
    seeds, and measured/predicted medians."""
    by = [f for f in factors if f not in THRESHOLDS] + list(THRESHOLDS)
    trials = with_baselines(trials, by[:-2])
    speedups = {"speedup": "tri", ADAPTIVE + "speedup": "adaptive two-level",
                "best_fixed_speedup": "fixed two-level at best g",
                "best_ratio": "tri / best baseline"}  # fmt: skip
    speedups = {column: name for column, name in speedups.items() if column in trials}
    table = aggregate(trials, by, list(speedups)).set_index([*by, "metric"])
    interval = (
        table.apply(_interval, axis=1).unstack("metric")[list(speedups)].rename(columns=speedups)
    )
    if "best_g" in trials:
        interval.insert(len(speedups) - 2, "best g", trials.groupby(by)["best_g"].first())
    ratios = pd.DataFrame(
        {
            f"{name} measured/predicted": trials[measured] / trials[predicted]
            for name, (predicted, measured) in predictions(trials).items()
            if name in ("tri", "adaptive two-level")
        }
    )
    groups = ratios.groupby([trials[f] for f in by])
    interval.insert(0, "n", groups.size())
    return interval.join(groups.median()).reset_index()


def _interval(row: pd.Series) -> str:
    """mean [low, high], or the mean alone where one seed gives no interval."""
    if pd.isna(row["ci_low"]):
        return fmt(row["mean"])
    return f"{fmt(row['mean'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def predictions(trials: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Decoder name -> (predicted, measured) speedup columns, for those present."""
    prefixes = {"tri": "", "adaptive two-level": ADAPTIVE}
    prefixes |= {f"fixed g = {g}": f"two_level_g{g}_" for g in fixed_lengths(trials)}
    return {
        name: (f"{prefix}predicted_speedup", f"{prefix}speedup")
        for name, prefix in prefixes.items()
        if f"{prefix}predicted_speedup" in trials
    }


def _measured_vs_predicted(trials: pd.DataFrame) -> list[Block]:
    """How well Leviathan et al.'s formula predicts each decoder's speedup, and whether a
    miss comes from its acceptance model (tokens per target call) or its cost model."""
    pairs = predictions(trials)
    ratios = "; ".join(
        f"{name} {fmt((trials[measured] / trials[predicted]).median())}"
        for name, (predicted, measured) in pairs.items()
    )
    speedups = {
        name: (trials[predicted].rename("predicted speedup"), trials[measured].rename("speedup"))
        for name, (predicted, measured) in pairs.items()
    }
    calls = {
        name: (
            trials[
                predicted.replace("predicted_speedup", "expected_tokens_per_target_call")
            ].rename("expected tokens per target call"),
            trials[predicted.replace("predicted_speedup", "tokens_per_target_call")].rename(
                "measured tokens per target call"
            ),
        )
        for name, (predicted, _) in pairs.items()
        if predicted.replace("predicted_speedup", "expected_tokens_per_target_call") in trials
    }
    text = (
        "Measured against predicted: the formula gives E[(1 - a^(g+1)) / (1 - a)] tokens per "
        "target call over the calls' draft lengths g (not at their mean: it is concave in "
        "g), with a the chance that the target keeps a drafted token it reaches, and costs "
        "a call g c + 1 target steps, c a drafted token's measured time over a step of "
        "target-only decoding (for tri-decoding, the little and draft models' time per "
        "drafted token). The decoder's measured prompt prefills are added to the predicted "
        "time, as they are in the measured one. The formula takes verifying a draft to cost "
        "one target step and acceptance to be i.i.d. Where tokens per call match their "
        "expectation but the speedup misses, the cost model is what fails. Median "
        f"measured/predicted: {ratios}."
    )
    blocks: list[Block] = [
        text,
        Plot(
            "speedup-measured-vs-predicted",
            plots.scatter(speedups, "Measured vs predicted speedup"),
        ),
    ]
    if calls:
        title = "Tokens per target call: measured vs expected"
        blocks.append(Plot("tokens-per-call-measured-vs-expected", plots.scatter(calls, title)))
    return blocks
