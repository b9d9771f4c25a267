"""Inference for metrics of pairs of models (prediction difference between seeds).

A pair metric m(i, j) is measured on every pair of models (seeds) i < j of a group:
k models give k(k-1)/2 pairs, each model in k - 1 of them. The group's mean pair
metric is a U-statistic of degree 2 of the models, and pairs that share a model are
correlated: a test that takes the pairs for independent samples (Welch over pairs)
underestimates the variance of that mean, badly when models differ from each other.
The unit of inference is the model.

Method: a delete-one-model jackknife over seeds. Leaving model i out removes all of
its k - 1 pairs; theta_(i) is the mean pair metric of the rest, and

    var_jack = (k - 1) / k * sum_i (theta_(i) - mean_i theta_(i))^2

(for a plain mean of per-model values this is s^2 / k exactly; for a degree-2
U-statistic it is slightly conservative, Efron and Stein 1981). Two levels' models
are disjoint, so their jackknife variances add. Needs k >= 3 models per level (with
two models, leaving one out leaves no pair).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.significance import SMALL_N, holm

METHOD = "delete-one-model jackknife over seeds; pairs sharing a model are not independent"
MIN_MODELS = 3  # leaving one of two models out leaves no pair


@dataclass(frozen=True)
class PairMean:
    """A level's mean pair metric with its jackknife variance (NaN below MIN_MODELS)."""

    mean: float
    variance: float
    n_models: int
    n_pairs: int

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))


def jackknife_variance(leave_one_out: Sequence[float] | np.ndarray) -> float:
    """Delete-one jackknife variance from the n leave-one-out estimates:
    (n - 1) / n * sum (theta_(i) - mean theta_(.))^2; NaN for n < 2 or a NaN estimate."""
    theta = np.asarray(leave_one_out, dtype=float)
    n = len(theta)
    if n < 2 or not np.isfinite(theta).all():
        return float("nan")
    return float((n - 1) / n * np.sum((theta - theta.mean()) ** 2))


def pair_mean(
    model_a: Sequence[Hashable], model_b: Sequence[Hashable], values: Sequence[float]
) -> PairMean:
    """Mean of a pair metric over the pairs (model_a[k], model_b[k]) with a finite value,
    and its delete-one-model jackknife variance."""
    a, b = np.asarray(model_a, dtype=object), np.asarray(model_b, dtype=object)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(v)
    a, b, v = a[keep], b[keep], v[keep]
    models = list(dict.fromkeys([*a.tolist(), *b.tolist()]))
    mean = float(v.mean()) if len(v) else float("nan")
    if len(models) < MIN_MODELS:
        return PairMean(mean, float("nan"), len(models), len(v))
    if np.ptp(v) == 0:  # exactly no spread (rounding would leave a variance of 1e-33)
        return PairMean(mean, 0.0, len(models), len(v))
    leave_one_out = []
    for model in models:
        rest = (a != model) & (b != model)
        leave_one_out.append(v[rest].mean() if rest.any() else np.nan)
    return PairMean(mean, jackknife_variance(leave_one_out), len(models), len(v))


def compare(a: PairMean, b: PairMean, confidence: float = 0.95) -> dict[str, float]:
    """mean(A) - mean(B) with its jackknife standard error, a t-interval and two-sided p.

    SE = sqrt(var_A + var_B): the levels' models are disjoint, so independent.
    df: Welch-Satterthwaite with n - 1 per level (n models),
    (var_A + var_B)^2 / (var_A^2 / (n_A - 1) + var_B^2 / (n_B - 1)). It is never more
    than n_A + n_B - 2 (reached when the two variances are equal at equal n) and
    falls towards n - 1 of the noisier level when one level dominates, as Welch's test
    does for per-trial metrics; the jackknife variance of a mean is s^2 / n, whose
    degrees of freedom are n - 1. NaN where a level has < MIN_MODELS models or neither
    level has spread.
    """
    out = dict.fromkeys(["diff", "se", "df", "t", "ci_low", "ci_high", "p"], float("nan"))
    out["diff"] = a.mean - b.mean
    variance = a.variance + b.variance
    if not np.isfinite(variance) or variance <= 0:
        return out
    df = variance**2 / (a.variance**2 / (a.n_models - 1) + b.variance**2 / (b.n_models - 1))
    se = float(np.sqrt(variance))
    t = out["diff"] / se
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    out.update(
        se=se,
        df=float(df),
        t=float(t),
        ci_low=out["diff"] - half,
        ci_high=out["diff"] + half,
        p=float(2 * stats.t.sf(abs(t), df)),
    )
    return out


def models(pairs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Who the two models of each pair are: trial ids (with the sweep, when stacked), or
    seeds when the table has no trial ids."""
    a, b = ("trial_a", "trial_b") if "trial_a" in pairs else ("seed_a", "seed_b")
    if "sweep" in pairs:
        return (pairs["sweep"].astype(str) + "/" + pairs[a].astype(str),
                pairs["sweep"].astype(str) + "/" + pairs[b].astype(str))  # fmt: skip
    return pairs[a], pairs[b]


def pairwise_models(
    pairs: pd.DataFrame, by: str, metric: str, against: str | None = None
) -> pd.DataFrame:
    """Every two levels of column `by` compared on pair metric `metric` at the level of
    models (`compare`), Holm-corrected over the comparisons (`p_holm`); with `against`,
    only the comparisons that include that level. For reference, Welch over the pairs
    as if independent (`p_welch_pairs`, not Holm-corrected, decides nothing)."""
    pairs = pairs.reset_index(drop=True)
    model_a, model_b = models(pairs)
    levels = {}
    for key, rows in pairs.groupby(by, sort=True, dropna=False, observed=True):
        values = rows[metric].to_numpy(dtype=float)
        levels[str(key)] = (
            pair_mean(model_a[rows.index], model_b[rows.index], values),
            values[np.isfinite(values)],
        )
    out = []
    for (name_a, (a, pairs_a)), (name_b, (b, pairs_b)) in itertools.combinations(levels.items(), 2):
        if against is not None and against not in (name_a, name_b):
            continue
        welch = (
            stats.ttest_ind(pairs_a, pairs_b, equal_var=False).pvalue
            if min(len(pairs_a), len(pairs_b)) >= 2 and np.ptp(np.r_[pairs_a, pairs_b]) > 0
            else np.nan
        )
        out.append(
            {
                "metric": metric,
                "group_a": name_a,
                "group_b": name_b,
                "n_a": a.n_models,
                "n_b": b.n_models,
                "n_pairs_a": a.n_pairs,
                "n_pairs_b": b.n_pairs,
                "mean_a": a.mean,
                "mean_b": b.mean,
                **compare(a, b),
                "p_welch_pairs": float(welch),
                "note": _note(a.n_models, b.n_models),
            }
        )
    table = pd.DataFrame(out)
    if not table.empty:
        table["p_holm"] = holm(table["p"])
    return table


def _note(n_a: int, n_b: int) -> str:
    smallest = min(n_a, n_b)
    if smallest < MIN_MODELS:
        return f"not tested: a level has {smallest} model(s), the jackknife needs {MIN_MODELS}"
    return f"small n ({smallest} models): low power" if smallest < SMALL_N else ""
