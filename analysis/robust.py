"""Aggregates over seeds as rliable reports them (Agarwal et al., "Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS 2021): the interquartile
mean (IQM), stratified bootstrap intervals, the probability of improvement P(A > B)
and performance profiles (score distributions).

Definitions, as rliable's:
- IQM: `scipy.stats.trim_mean(x, 0.25)`, the mean after cutting floor(n / 4) values
  from each end (a whole number of values, never a fraction of one); n < 4 cuts none,
  so it is the plain mean.
- Stratified bootstrap: each stratum's values (the seeds of one group, or of one cell
  of the other factors) are resampled with replacement within that stratum, so every
  resample keeps each stratum's count. The interval is the percentile interval: the
  2.5th and 97.5th percentiles of the statistic over `reps` resamples (numpy's default
  linear interpolation). Generators are seeded: same data, same interval.
- P(A > B): per stratum, P(X_A better than X_B) + 0.5 P(tie) over all pairs of a
  value of A and a value of B (the Mann-Whitney U over n_A n_B), averaged over strata.
- Performance profile: per tau, the fraction of runs whose score is better than tau
  (all runs of a level pooled, as rliable pools the runs of all tasks).

Every bootstrap is vectorised over its resamples, drawn as (reps, n) positions per
stratum into its values sorted (so row order does not matter). What the report runs
(per-group intervals, P(A > B), profile bands) turns the draws into counts per value
and computes every resample's statistic with one matrix product.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.sweep import label_rows

REPS = 2000
CONFIDENCE = 0.95
SEED = 0

Statistic = Callable[[list[np.ndarray]], np.ndarray]  # (reps, n_i) per stratum -> (reps,)


def iqm(values: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle half, cutting floor(n / 4) values at
    each end (n = 8 cuts 2, n = 6 cuts 1, n < 4 cuts none: the plain mean). NaN values
    are the caller's to drop. `axis=None` pools every value, as rliable does for a
    (runs x tasks) array."""
    return stats.trim_mean(np.asarray(values, dtype=float), 0.25, axis=axis)


def stratified_indices(
    sizes: Sequence[int], reps: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per stratum of `sizes[i]` values, `reps` draws of as many positions with
    replacement: a (reps, sizes[i]) array of positions into that stratum only."""
    return [rng.integers(0, n, size=(reps, n)) for n in sizes]


def stratified_resample(
    strata: Sequence[np.ndarray], reps: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per stratum, `reps` resamples of its values with replacement: a (reps, n_i) array
    each, drawn from that stratum only, so each keeps its count."""
    strata = [np.asarray(s, dtype=float) for s in strata]
    positions = stratified_indices([len(s) for s in strata], reps, rng)
    return [s[p] for s, p in zip(strata, positions, strict=True)]


def bootstrap_interval(
    strata: Sequence[np.ndarray],
    statistic: Statistic,
    reps: int = REPS,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` on the data, and its percentile interval over
    `reps` stratified resamples. `statistic` takes a (reps, n_i) array per stratum and
    returns one value per resample; the estimate is it on the data as one resample."""
    strata = [_sorted(s) for s in strata]
    estimate = float(statistic([s[None, :] for s in strata])[0])
    samples = statistic(stratified_resample(strata, reps, np.random.default_rng(seed)))
    low, high = _percentiles(samples, confidence)
    return estimate, float(low), float(high)


def _percentiles(samples: np.ndarray, confidence: float = CONFIDENCE, axis: int = 0) -> np.ndarray:
    """The percentile interval's ends (2.5th and 97.5th for 95%) along `axis`."""
    tail = (1 - confidence) / 2 * 100
    return np.percentile(samples, [tail, 100 - tail], axis=axis)


def pooled_iqm(resampled: list[np.ndarray]) -> np.ndarray:
    """The IQM of each resample over all strata's values together (rliable's IQM over
    runs x tasks)."""
    return iqm(np.concatenate(resampled, axis=1), axis=1)


def pooled_mean(resampled: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(resampled, axis=1).mean(axis=1)


COLUMNS = ("n", "mean", "boot_low", "boot_high", "iqm", "iqm_low", "iqm_high")


def robust_aggregate(
    df: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    reps: int = REPS,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per (group, metric): n, the mean with its bootstrap interval (boot_low,
    boot_high), the IQM with its (iqm_low, iqm_high); a group's seeds are its one
    stratum. NaN values are left out of n; with n < 2 the intervals are NaN (one value
    has no spread to resample).

    Each group gets what `bootstrap_interval([values], ..., reps, seed=seed)` gives it;
    groups of one size are resampled together, with the same positions drawn."""
    frames = []
    for metric in metrics:
        grouped = df.groupby(list(by), dropna=False, sort=True, observed=True)[metric]
        values = grouped.agg(lambda v: _sorted(v.dropna()))
        table = values.index.to_frame(index=False).assign(metric=metric)
        sizes = values.map(len).to_numpy()
        numbers = {c: np.full(len(values), np.nan) for c in COLUMNS}
        numbers["n"] = sizes
        for n in np.unique(sizes[sizes > 0]):
            where = np.flatnonzero(sizes == n)
            _same_size(np.stack(values.iloc[where].to_list()), where, numbers, reps, seed)
        frames.append(table.assign(**numbers).astype({"n": int}))
    if not frames:
        return pd.DataFrame(columns=[*by, "metric", *COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _same_size(
    values: np.ndarray, where: np.ndarray, out: dict[str, np.ndarray], reps: int, seed: int
) -> None:
    """Fills rows `where` of `out` for groups of one size: `values` is (groups, n), each
    row sorted. A resample is how often it draws each value (counts, (reps, n)); with the
    values sorted, its IQM weighs value j by how much of its run of copies falls in the
    kept middle positions [k, n - k): one matrix product gives every group's resamples."""
    out["mean"][where] = values.mean(axis=1)
    out["iqm"][where] = iqm(values, axis=1)
    n = values.shape[1]
    if n < 2:
        return
    (positions,) = stratified_indices([n], reps, np.random.default_rng(seed))
    counts = _counts(positions, n)
    end = np.cumsum(counts, axis=1)
    cut = n // 4  # trim_mean's int(0.25 * n)
    kept = np.clip(np.minimum(end, n - cut) - np.maximum(end - counts, cut), 0, None)
    for name, weights in (("boot", counts / n), ("iqm", kept / (n - 2 * cut))):
        low, high = _percentiles(values @ weights.T, axis=1)  # (groups, reps) resampled
        out[f"{name}_low"][where], out[f"{name}_high"][where] = low, high


def _better(a: np.ndarray, b: np.ndarray, higher: bool) -> np.ndarray:
    """(n_a, n_b): 1 where a_i is better than b_j, 0.5 for a tie, 0 where worse."""
    diff = a[:, None] - b[None, :]
    return (np.sign(diff if higher else -diff) + 1) / 2


def _counts(positions: np.ndarray, n: int) -> np.ndarray:
    """(reps, n): how often each of n values was drawn in each row of `positions`."""
    reps = len(positions)
    flat = (positions + n * np.arange(reps)[:, None]).ravel()
    return np.bincount(flat, minlength=reps * n).reshape(reps, n).astype(float)


def probability_of_improvement(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], higher: bool = True
) -> float:
    """P(A > B): per stratum i, P(a_i better than b_i) + 0.5 P(tie) over all n_a n_b
    pairs of values (Mann-Whitney's U / (n_a n_b)), averaged over the strata (`a` and
    `b` hold one array per stratum, in the same order). `higher=False`: lower is better."""
    pairs = zip(map(_sorted, a), map(_sorted, b), strict=True)
    return float(np.mean([_better(x, y, higher).mean() for x, y in pairs]))


def _sorted(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The values in order: a resample draws positions, so sorting first makes the
    interval depend on the values only, not on the order of the rows they came in."""
    return np.sort(np.asarray(values, dtype=float))


def improvement_interval(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    higher: bool = True,
    reps: int = REPS,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(P(A > B), low, high): A's and B's values resampled independently within each
    stratum (rliable's stratified independent bootstrap), percentile interval.

    A resample is counts of each value, so its P is counts_a @ better @ counts_b / (n_a n_b):
    one matrix product per stratum for all resamples."""
    a, b = [_sorted(x) for x in a], [_sorted(x) for x in b]
    positions = stratified_indices([*map(len, a), *map(len, b)], reps, np.random.default_rng(seed))
    counts = [_counts(p, len(x)) for p, x in zip(positions, [*a, *b], strict=True)]
    samples = _resampled(a, b, counts[: len(a)], counts[len(a) :], higher)
    low, high = _percentiles(samples)
    return probability_of_improvement(a, b, higher), float(low), float(high)


def _resampled(
    a: list[np.ndarray],
    b: list[np.ndarray],
    counts_a: list[np.ndarray],
    counts_b: list[np.ndarray],
    higher: bool,
) -> np.ndarray:
    """(reps,): P(A > B) of each resample, given as counts per value (reps, n) per stratum."""
    samples = np.zeros(len(counts_a[0]))
    for x, y, ca, cb in zip(a, b, counts_a, counts_b, strict=True):
        samples += ((ca @ _better(x, y, higher)) * cb).sum(axis=1) / (len(x) * len(y))
    return samples / len(a)


def factor_cells(
    df: pd.DataFrame, keys: Sequence[str], cells: Sequence[str], metric: str
) -> dict[str, dict[tuple, np.ndarray]]:
    """Level of the factor set by `keys` (in the order of their values: 32 before 128) ->
    cell of the `cells` columns -> its finite values of `metric`. Rows where every key is
    missing (another sweep's) are no level."""
    frame = df[df[list(keys)].notna().any(axis=1)]
    with contextlib.suppress(TypeError):  # values of several types: in order of appearance
        frame = frame.sort_values(list(keys), kind="stable")
    frame = frame.assign(_level=label_rows(frame, list(keys)), _value=frame[metric])
    frame = frame[frame["_value"].notna()]
    out: dict[str, dict[tuple, np.ndarray]] = {}
    by = ["_level", *cells]
    for key, rows in frame.groupby(by, dropna=False, sort=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        out.setdefault(key[0], {})[key[1:]] = _sorted(rows["_value"])
    return out


def improvements(
    df: pd.DataFrame,
    factors: dict[str, list[str]],
    group_columns: Sequence[str],
    metric: str,
    direction: str | None,
    reps: int = REPS,
    seed: int = SEED,
    min_n: int = 2,
) -> pd.DataFrame:
    """P(A > B) with its interval for every pair of levels of every factor (`factors`:
    name -> the columns it sets): stratified over the cells of the other group columns
    where both levels have at least `min_n` values. No direction: better means higher.
    Columns: factor, metric, a, b, cells, n_a, n_b, p, low, high.

    Each (level, cell) stratum is resampled once, in the order of levels then cells, and
    its resamples serve every pair it is in: with two levels sharing every cell, that is
    what `improvement_interval` draws."""
    higher = direction != "lower"
    rows = []
    for factor, keys in factors.items():
        cells = [c for c in group_columns if c not in keys]
        strata = {
            (level, cell): values
            for level, by_cell in factor_cells(df, keys, cells, metric).items()
            for cell, values in by_cell.items()
            if len(values) >= min_n
        }
        positions = stratified_indices(
            [len(v) for v in strata.values()], reps, np.random.default_rng(seed)
        )
        counts = {k: _counts(p, len(strata[k])) for k, p in zip(strata, positions, strict=True)}
        levels = list(dict.fromkeys(level for level, _ in strata))
        for i, first in enumerate(levels):
            for second in levels[i + 1 :]:
                shared = [c for lv, c in strata if lv == first and (second, c) in strata]
                if shared:
                    rows.append(_pair_row(strata, counts, first, second, shared, higher))
                    rows[-1] |= {"factor": factor, "metric": metric}
    columns = ["factor", "metric", "a", "b", "cells", "n_a", "n_b", "p", "low", "high"]
    return pd.DataFrame(rows, columns=columns)


def _pair_row(
    strata: dict[tuple, np.ndarray],
    counts: dict[tuple, np.ndarray],
    first: str,
    second: str,
    shared: list[tuple],
    higher: bool,
) -> dict[str, object]:
    a = [strata[first, c] for c in shared]
    b = [strata[second, c] for c in shared]
    samples = _resampled(
        a, b, [counts[first, c] for c in shared], [counts[second, c] for c in shared], higher
    )
    low, high = _percentiles(samples)
    return {
        "a": first,
        "b": second,
        "cells": len(shared),
        "n_a": sum(map(len, a)),
        "n_b": sum(map(len, b)),
        "p": probability_of_improvement(a, b, higher),
        "low": float(low),
        "high": float(high),
    }


def score_profile(values: np.ndarray, taus: np.ndarray, higher: bool = True) -> np.ndarray:
    """Per tau, the fraction of `values` better than tau: > tau, or < tau when lower is
    better (rliable's score distribution over runs)."""
    return _beyond(np.asarray(values, dtype=float), np.asarray(taus, dtype=float), higher).mean(0)


def _beyond(values: np.ndarray, taus: np.ndarray, higher: bool) -> np.ndarray:
    """(n, taus): whether each value is better than each tau."""
    return values[:, None] > taus if higher else values[:, None] < taus


def performance_profiles(
    df: pd.DataFrame,
    keys: Sequence[str],
    cells: Sequence[str],
    metric: str,
    direction: str | None,
    taus: np.ndarray,
    reps: int = REPS,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per level of the factor set by `keys`, its performance profile over `taus` with a
    95% percentile band from a bootstrap stratified over the `cells` (the other group
    columns). Columns: level, n, tau, fraction, low, high."""
    higher = direction != "lower"
    frames = []
    for level, strata in factor_cells(df, keys, cells, metric).items():
        values = list(strata.values())
        pooled = np.concatenate(values)
        positions = stratified_indices(list(map(len, values)), reps, np.random.default_rng(seed))
        counts = np.hstack([_counts(p, len(v)) for p, v in zip(positions, values, strict=True)])
        better = _beyond(pooled, taus, higher).astype(float)
        low, high = _percentiles(counts @ better / len(pooled))  # (reps, taus) resampled
        frames.append(
            pd.DataFrame(
                {
                    "level": level,
                    "n": len(pooled),
                    "tau": taus,
                    "fraction": score_profile(pooled, taus, higher),
                    "low": low,
                    "high": high,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["level", "n", "tau", "fraction", "low", "high"])
    return pd.concat(frames, ignore_index=True)
