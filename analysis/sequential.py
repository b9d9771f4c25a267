"""Seeds added until a comparison is decided, with an error rate that holds however the
looks go.

A sequential sweep (`seeds: {min, max, step, until: {metric, by, mode}}`) runs `min` seeds of
every cell, then `step` more at a time for the cells whose comparison is not decided, up to
`max`. A comparison is one stratum (the cells that share every config key but `by` and the
seed): it is decided when its best level of `by` beats every other level. Looking at the
data after every round and stopping when it looks decided inflates a plain test's error
rate; here alpha is split evenly over the planned looks and over the pairs of levels
(Bonferroni), so the chance that a stratum ever declares a winner when its levels do not
differ is at most alpha, whatever happens between looks. It is conservative: the price of
looking up to K times is testing at alpha / K each time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Rule:
    """When a stratum is decided: `metric` better by `mode` among the levels of `by`."""

    metric: str
    by: str
    mode: str  # min or max
    alpha: float = 0.05
    looks: int = 1  # planned looks: 1 + ceil((max - min) / step)

    def level(self, levels: int) -> float:
        """The significance level of one pairwise test at one look."""
        pairs = levels * (levels - 1) // 2
        return self.alpha / (self.looks * max(pairs, 1))


@dataclass(frozen=True)
class Verdict:
    """A stratum at one look: its best level, and whether it beats every other."""

    decided: bool
    best: object
    p_max: float  # the largest p of best against another level (nan: not testable)
    n: int  # the fewest seeds of a level


def looks(minimum: int, maximum: int, step: int) -> int:
    """How many times a sequential sweep may look: after `minimum` seeds, then every `step`."""
    return 1 + math.ceil(max(maximum - minimum, 0) / step)


def verdict(values: dict[object, np.ndarray], rule: Rule) -> Verdict:
    """Whether the best level (by its mean) beats every other level at this look: Welch's
    t-test of best against each, each at `rule.level`. Fewer than 2 seeds in a level, or a
    level without spread on both sides, is not decided."""
    means = {level: float(np.mean(v)) for level, v in values.items() if len(v)}
    if len(means) < 2:
        return Verdict(False, None, math.nan, 0)
    pick = min if rule.mode == "min" else max
    best = pick(means, key=means.__getitem__)
    n = min(len(v) for v in values.values())
    p_values = [_p(values[best], values[other]) for other in values if other != best]
    p_max = max(p_values)
    decided = n >= 2 and not math.isnan(p_max) and p_max < rule.level(len(values))
    return Verdict(decided, best, p_max, n)


def _p(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's two-sided p (scipy.stats.ttest_ind(equal_var=False), written out: the
    simulation calls it hundreds of thousands of times)."""
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return math.nan
    v_a, v_b = a.var(ddof=1) / n_a, b.var(ddof=1) / n_b
    if v_a + v_b == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    t = (a.mean() - b.mean()) / math.sqrt(v_a + v_b)
    df = (v_a + v_b) ** 2 / (v_a**2 / (n_a - 1) + v_b**2 / (n_b - 1))
    return float(2 * stats.t.sf(abs(t), df))


def simulate(
    rule: Rule,
    effects: list[float],
    minimum: int,
    maximum: int,
    step: int,
    sweeps: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """The rule on `sweeps` simulated strata: one level per effect (its mean; every level's
    values have sd 1), `minimum` seeds, then `step` more per level until decided or
    `maximum`. Returns the share of strata that declared a winner, the share that declared
    the truly best level (the first of the smallest effects for mode min), and the mean
    seeds per level used."""
    rng = np.random.default_rng(seed)
    truth = int(np.argmin(effects) if rule.mode == "min" else np.argmax(effects))
    draws = rng.normal(size=(sweeps, len(effects), maximum)) + np.asarray(effects)[:, None]
    declared = right = 0
    used = 0
    for values in draws:
        n = minimum
        while True:
            result = verdict({level: values[level, :n] for level in range(len(effects))}, rule)
            if result.decided or n >= maximum:
                break
            n = min(n + step, maximum)
        declared += result.decided
        right += result.decided and result.best == truth
        used += n
    return {
        "declared": declared / sweeps,
        "declared_best": right / sweeps,
        "mean_seeds": used / sweeps,
    }
