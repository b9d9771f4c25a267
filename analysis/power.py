"""How many seeds? Power of a two-sample t-test, with a sweep's own spread as the pilot.

The question: with n seeds per level of a factor KEY, how likely does a two-sided
two-sample t-test at level alpha find a true difference E between two levels of KEY
(its power); how many seeds per level does a power of 0.8 need; and which E can the
seeds a sweep has now detect?

The spread is the sweep's: the pooled within-cell standard deviation, a cell being
one level of KEY at one setting of the other factors (a config without its seed):

    s^2 = sum_c (n_c - 1) s_c^2 / sum_c (n_c - 1),    df = sum_c (n_c - 1)

over the cells c with n_c >= 2 seeds holding a finite value, s_c their standard
deviation (n - 1). The test compares two levels at one setting of the other
factors, n seeds each; its power, for a difference E and d = E / s:

    nc = d * sqrt(n / 2),  t* = t_{1 - alpha/2, 2n - 2}
    power = P(T > t*) + P(T < -t*),  T ~ noncentral t(2n - 2, nc)

taking s as the true sigma (the pilot's own uncertainty is reported as an
interval on s, not folded in). Seeds per level: the smallest n >= 2 with power >=
the power asked. Detectable effect: the E at which the current n (the smallest
seed count of any cell) has exactly that power. With more than two levels each
figure is per pair of levels; `adjust=True` divides alpha by the number of pairs
(Bonferroni: the first, strictest step of the Holm correction the report uses).

Pair metrics (`pairs/`: one value per pair of seeds of a config) have no value per
seed. Each model (seed) gets the mean of the metric over its pairs within its cell;
these per-model means m_i are dependent (they share pairs), and their spread
understates how much the cell's mean pair metric varies: that mean equals the mean
of the m_i, and its delete-one-model jackknife variance is
4 (k-1)^2 / (k (k-2)^2) * var(m_i) for k seeds. So each cell's deviations m_i - mean
are scaled by 2 (k-1) / (k-2), making s^2 / k the jackknife variance of the cell's
mean: the spread of an equivalent per-model value. It needs k >= 3 seeds per cell,
and is an approximation of the model-level spread (see docs/analysis.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.errors import AnalysisError, did_you_mean
from analysis.sweep import Sweep, label_rows

MAX_SEEDS = 10_000_000  # beyond this, seeds_needed gives up (an effect ~1e-3 SD or smaller)


def power(effect: float, n: int | float, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with n per group, for a true standardised
    difference `effect` (difference of means / sigma), at level alpha."""
    if n < 2:
        raise ValueError(f"n={n}: a t-test needs at least 2 per group")
    df = 2 * n - 2
    nc = abs(effect) * math.sqrt(n / 2)
    critical = stats.t.ppf(1 - alpha / 2, df)
    # P(T < -t*) as P(T' > t*), T' ~ nct(df, -nc): scipy's nct.cdf far in the lower tail
    # gives NaN (df 2, nc 8), its sf there a clean 0
    return float(stats.nct.sf(critical, df, nc) + stats.nct.sf(critical, df, -nc))


def seeds_needed(effect: float, target: float = 0.8, alpha: float = 0.05) -> int:
    """The smallest n >= 2 per group whose power for `effect` (standardised) reaches
    `target`."""
    _check_target(target, alpha)
    if not effect or not math.isfinite(effect):
        raise ValueError(f"effect {effect}: give a finite difference other than 0")
    if power(effect, 2, alpha) >= target:
        return 2
    low, high = 2, 4  # power(low) < target <= power(high), power increasing in n
    while power(effect, high, alpha) < target:
        if high >= MAX_SEEDS:
            raise ValueError(f"effect {effect:g} SD needs more than {MAX_SEEDS} per group")
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power(effect, middle, alpha) >= target else (middle, high)
    return high


def detectable_effect(n: int, target: float = 0.8, alpha: float = 0.05) -> float:
    """The standardised difference that n per group detects with power `target`."""
    _check_target(target, alpha)
    high = 1.0
    while power(high, n, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, n, alpha) - target, 0.0, high, xtol=1e-10))


def _check_target(target: float, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha}: give a level between 0 and 1")
    if not alpha < target < 1:
        raise ValueError(
            f"power {target}: give a power above alpha ({alpha:g}: what a difference of 0 "
            "already has) and below 1"
        )


def pooled_sd(frame: pd.DataFrame, value: str, cells: Sequence[str]) -> dict[str, Any]:
    """The pooled within-cell standard deviation of `value`: its sd over the rows of each
    cell (rows with equal `cells` values), pooled with weights n - 1 over the cells with
    n >= 2 finite values. Returns sd, df and the per-cell counts (`seeds`, a Series
    indexed by the cells)."""
    finite = frame[np.isfinite(pd.to_numeric(frame[value], errors="coerce"))]
    grouped = finite.groupby(list(cells), dropna=False, sort=True, observed=True)[value]
    table = grouped.agg(["count", "var"])
    spread = table[table["count"] >= 2]
    df = int((spread["count"] - 1).sum())
    ss = float(((spread["count"] - 1) * spread["var"]).sum())
    return {"sd": math.sqrt(ss / df) if df else math.nan, "df": df, "seeds": table["count"]}


def per_model(pairs: pd.DataFrame, metric: str, cells: Sequence[str]) -> pd.DataFrame:
    """Per model (seed) of each cell: the mean of a pair metric over its pairs in that
    cell, its deviation from the cell's mean scaled by 2 (k-1) / (k-2) for k seeds (see
    the module's docstring); cells with fewer than 3 seeds keep their plain values and
    are left out of the spread by `pooled_sd` (their value is NaN)."""
    cells = list(cells)
    keep = [*cells, metric]
    stacked = pd.concat(
        [
            pairs[[*keep, "seed_a"]].rename(columns={"seed_a": "seed"}),
            pairs[[*keep, "seed_b"]].rename(columns={"seed_b": "seed"}),
        ],
        ignore_index=True,
    )
    stacked = stacked[np.isfinite(pd.to_numeric(stacked[metric], errors="coerce"))]
    models = stacked.groupby([*cells, "seed"], dropna=False, observed=True, sort=True)[metric]
    models = models.mean().reset_index()
    by_cell = models.groupby(cells, dropna=False, observed=True, sort=False)[metric]
    k = by_cell.transform("count")
    center = by_cell.transform("mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(k >= 3, 2 * (k - 1) / (k - 2), np.nan)
    models[metric] = center + scale * (models[metric] - center)
    models["models"] = k  # seeds with pairs in the cell, NaN-valued ones (k < 3) included
    return models


def analyse_power(
    sweep: Sweep,
    metric: str,
    by: str,
    effect: float | None = None,
    target: float = 0.8,
    alpha: float = 0.05,
    adjust: bool = False,
) -> dict[str, Any]:
    """Seeds per level of `by` needed to detect `effect` (in the metric's units) between
    two levels, and the effect the current seeds detect, from the sweep's spread; a dict
    of plain values (what `sweep power --json` prints)."""
    pair_metric = _check(sweep, metric, by)
    others = [f for f in sweep.factors if f != by]
    cells = [by, *others]
    if pair_metric:
        pairs = sweep.pairs
        cells = [c for c in cells if c in pairs]
        frame = per_model(pairs, metric, cells)
        minimum = 3
    else:
        frame, minimum = sweep.ok, 2
    spread = pooled_sd(frame, metric, cells)
    seeds = spread["seeds"]
    if pair_metric:  # seeds with pairs, the NaN values of cells with < 3 seeds counted
        seeds = frame.groupby(cells, dropna=False, observed=True, sort=True)["models"].first()
    if not spread["df"]:
        raise AnalysisError(
            f"{metric} by {by} in {sweep.name}: no cell ({' × '.join(cells)}) has "
            f"{minimum} or more seeds with a value, so there is no spread to plan from; "
            f"run more seeds (sweep run SPEC --set seeds={max(minimum, 3)})"
        )
    if not spread["sd"] > 0:
        raise AnalysisError(
            f"{metric} by {by} in {sweep.name}: the seeds of every cell agree exactly "
            "(pooled sd 0): no seeds are needed to tell levels apart"
        )
    seeds = seeds.reset_index(name="seeds")
    seeds["label"] = label_rows(seeds, cells)
    levels_of = seeds[by].map(_plain)
    levels = sorted(pd.unique(levels_of), key=_order)
    per_level = {str(level): int(seeds.loc[levels_of == level, "seeds"].min()) for level in levels}
    n_now = int(seeds["seeds"].min())
    smallest = seeds.loc[seeds["seeds"].idxmin(), "label"]
    comparisons = len(levels) * (len(levels) - 1) // 2
    per_test = alpha / comparisons if adjust and comparisons > 1 else alpha
    sd, df = spread["sd"], spread["df"]
    try:
        _check_target(target, per_test)
    except ValueError as exc:
        raise AnalysisError(f"--power {target:g}, --alpha {alpha:g}: {exc}") from None
    result: dict[str, Any] = {
        "metric": metric,
        "by": by,
        "levels": [_plain(level) for level in levels],
        "n_per_level": per_level,
        "n": n_now,
        "smallest_cell": smallest,
        "cells": len(seeds),
        "other_factors": others,
        "pooled_sd": sd,
        "pooled_sd_ci95": _sd_interval(sd, df),
        "df": df,
        "alpha": alpha,
        "comparisons": comparisons,
        "adjust": "bonferroni" if adjust and comparisons > 1 else None,
        "alpha_per_test": per_test,
        "power": target,
        "effect": None,
        "effect_sd": None,
        "seeds_per_level": None,
        "power_now": None,
        "detectable_effect": None,
        "detectable_effect_sd": None,
        "pair_metric": pair_metric,
        "notes": [],
    }
    if pair_metric:
        result["notes"].append(
            "pair metric: per-model values (each model's mean over its pairs in its cell), "
            "spread scaled by 2(k-1)/(k-2) to the delete-one-model jackknife; an "
            "approximation of the model-level spread; cells with < 3 seeds are left out of it"
        )
    if effect is not None:
        if not effect or not math.isfinite(effect):
            raise AnalysisError(f"--effect {effect}: give a difference other than 0")
        d = abs(effect) / sd
        try:
            needed = seeds_needed(d, target, per_test)
        except ValueError as exc:
            raise AnalysisError(f"--effect {effect:g}: {exc}") from None
        result.update(effect=abs(effect), effect_sd=d, seeds_per_level=max(needed, minimum))
        if n_now >= minimum:
            result["power_now"] = power(d, n_now, per_test)
    if n_now >= minimum:
        d_now = detectable_effect(n_now, target, per_test)
        result.update(detectable_effect=d_now * sd, detectable_effect_sd=d_now)
    else:
        result["notes"].append(
            f"cell {smallest} has {n_now} seed(s) with a value: no detectable effect at the "
            f"current seeds (it needs {minimum} per level)"
        )
    return result


def describe(result: dict[str, Any]) -> str:
    """A few lines for people: the spread, seeds needed, the detectable effect."""
    r = result
    levels = r["levels"]
    shown = ", ".join(map(str, levels[:8])) + (", ..." if len(levels) > 8 else "")
    low, high = r["pooled_sd_ci95"]
    where = f"{r['by']} × {', '.join(r['other_factors'])}" if r["other_factors"] else r["by"]
    lines = [
        f"{r['metric']} by {r['by']}: {len(levels)} levels ({shown})",
        f"spread: pooled within-cell SD {_g(r['pooled_sd'])} (df {r['df']}, over {r['cells']} "
        f"cells of {where}; 95% interval {_g(low)} to {_g(high)})",
        f"seeds now: {r['n']} per level (the smallest cell: {r['smallest_cell']})",
    ]
    test = f"two-sided t-test at alpha {_g(r['alpha'])}"
    if r["comparisons"] > 1:
        test += (
            f" per pair of levels, Bonferroni over {r['comparisons']} pairs "
            f"(alpha {_g(r['alpha_per_test'])} each)"
            if r["adjust"]
            else f" per pair of levels (unadjusted for the {r['comparisons']} pairs)"
        )
    if r["effect"] is not None:
        now = ""
        if r["power_now"] is not None:
            now = f"; power now, with {r['n']}: {r['power_now']:.2f}"
        lines.append(
            f"to detect a difference of {_g(r['effect'])} ({r['effect_sd']:.2f} SD) with power "
            f"{_g(r['power'])}: {r['seeds_per_level']} seeds per level{now}"
        )
    if r["detectable_effect"] is not None:
        lines.append(
            f"with {r['n']} seeds per level, the smallest difference detected with power "
            f"{_g(r['power'])}: {_g(r['detectable_effect'])} ({r['detectable_effect_sd']:.2f} SD)"
        )
    lines.append(f"({test}; equal seeds per level)")
    lines += [f"note: {note}" for note in r["notes"]]
    return "\n".join(lines)


def _check(sweep: Sweep, metric: str, by: str) -> bool:
    """Whether `metric` is a pair metric; AnalysisError for an unknown metric or KEY."""
    metrics = list(dict.fromkeys([*sweep.final_metrics, *sweep.pair_metrics]))
    if metric not in metrics:
        raise AnalysisError(
            f"--metric {metric}: no final or pair metric {metric!r} in {sweep.name}"
            f"{did_you_mean(metric, metrics)}; metrics: {', '.join(metrics) or 'none'}"
        )
    if by not in sweep.factors:
        keys = [c for c in sweep.config_columns if c != "seed"]
        if by in sweep.config_columns:
            problem = "does not vary" if by != "seed" else "is the seed, not a factor"
            raise AnalysisError(
                f"--by {by}: {by} {problem} in {sweep.name}, so it has no levels to compare; "
                f"factors (keys that vary): {', '.join(sweep.factors) or 'none'}"
            )
        raise AnalysisError(
            f"--by {by}: no config key {by!r} in {sweep.name}{did_you_mean(by, keys)}; "
            f"factors (keys that vary): {', '.join(sweep.factors) or 'none'}"
        )
    return metric not in sweep.final_metrics


def _sd_interval(sd: float, df: int) -> list[float]:
    """The 95% chi-square interval of sigma for a pooled sd with df degrees of freedom."""
    return [
        sd * math.sqrt(df / stats.chi2.ppf(0.975, df)),
        sd * math.sqrt(df / stats.chi2.ppf(0.025, df)),
    ]


def _plain(value: object) -> object:
    """A level as JSON can hold it: numpy scalars as Python numbers, None for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _order(value: object) -> tuple:
    return (value is None, isinstance(value, str), value if value is not None else 0)


def _g(x: float) -> str:
    return f"{x:.4g}"
