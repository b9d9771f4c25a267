"""Inference for metrics of pairs of models (analysis/pairs.py) on cases with known
answers: the delete-one-model jackknife against its closed forms, a small example
computed by hand, a simulation where pairs share models, and the report's verdicts."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sweep, trial
from scipy import stats

from analysis import write_report
from analysis.pairs import (
    METHOD,
    compare,
    jackknife_variance,
    pair_mean,
    pairwise_models,
)
from analysis.reproducibility import report_section
from analysis.settings import ReportSettings


def all_pairs(values: np.ndarray) -> tuple[list[int], list[int], list[float]]:
    """Models 0..n-1 and pair(i, j) = (v_i + v_j) / 2 for every i < j."""
    ij = list(itertools.combinations(range(len(values)), 2))
    return [i for i, _ in ij], [j for _, j in ij], [(values[i] + values[j]) / 2 for i, j in ij]


def test_the_jackknife_of_a_plain_mean_is_s_over_root_n():
    v = np.array([0.3, 1.1, 0.7, 2.0, 1.6, 0.2])
    n = len(v)
    leave_one_out = [np.delete(v, i).mean() for i in range(n)]
    se = math.sqrt(jackknife_variance(leave_one_out))
    assert se == pytest.approx(v.std(ddof=1) / math.sqrt(n), rel=1e-12)
    assert math.isnan(jackknife_variance([1.0]))


@pytest.mark.parametrize("n", [3, 4, 7])
def test_pairs_that_average_their_models_have_the_jackknife_of_the_models_mean(n: int):
    """pair(i, j) = (v_i + v_j) / 2. Each model is in n - 1 of the n(n-1)/2 pairs, so the
    mean pair = mean(v). Leaving model i out leaves the pairs of the other n - 1 models:
    theta_(i) = (n mean(v) - v_i) / (n - 1), so theta_(i) - mean theta = -(v_i - mean(v)) /
    (n - 1), and var_jack = (n - 1) / n * sum (v_i - mean(v))^2 / (n - 1)^2 = s^2 / n."""
    v = np.random.default_rng(n).normal(0.2, 0.05, n)
    level = pair_mean(*all_pairs(v))
    assert level.mean == pytest.approx(v.mean(), rel=1e-12)
    assert level.variance == pytest.approx(v.var(ddof=1) / n, rel=1e-10)
    assert (level.n_models, level.n_pairs) == (n, n * (n - 1) // 2)


def test_a_small_example_computed_by_hand():
    # A: 3 models, pairs (1,2) 0.20, (1,3) 0.22, (2,3) 0.24; mean 0.22. Leaving a model
    # out leaves the one pair without it: theta_(i) = 0.24, 0.22, 0.20; deviations
    # -+0.02, 0: var_A = 2/3 * 0.0008 = 48/90000.
    a = pair_mean([1, 1, 2], [2, 3, 3], [0.20, 0.22, 0.24])
    assert (a.mean, a.n_models, a.n_pairs) == (pytest.approx(0.22), 3, 3)
    assert a.variance == pytest.approx(48 / 90000)
    # B: 4 models, pairs 12 .30, 13 .26, 14 .28, 23 .32, 24 .27, 34 .25; mean 1.68/6 = 0.28.
    # theta_(1) = (.32+.27+.25)/3 = 84/300, theta_(2) = 79/300, theta_(3) = 85/300,
    # theta_(4) = 88/300; their mean 84/300; deviations 0, -5, 1, 4 (/300): sum of squares
    # 42/90000, var_B = 3/4 * 42/90000 = 31.5/90000.
    b = pair_mean([1, 1, 1, 2, 2, 3], [2, 3, 4, 3, 4, 4], [0.30, 0.26, 0.28, 0.32, 0.27, 0.25])
    assert (b.mean, b.n_models, b.n_pairs) == (pytest.approx(0.28), 4, 6)
    assert b.variance == pytest.approx(31.5 / 90000)
    # A - B = -0.06; SE = sqrt(79.5/90000) = 0.0297209; t = -2.018780;
    # df = 79.5^2 / (48^2/2 + 31.5^2/3) = 6320.25 / 1482.75 = 4.262519
    got = compare(a, b)
    se, df = math.sqrt(79.5 / 90000), 6320.25 / 1482.75
    assert got["diff"] == pytest.approx(-0.06)
    assert got["se"] == pytest.approx(0.0297209, abs=1e-7) == pytest.approx(se)
    assert got["t"] == pytest.approx(-2.018780, abs=1e-6)
    assert got["df"] == pytest.approx(4.262519, abs=1e-6) == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * se  # t quantile 2.71029 at 4.26 df
    assert stats.t.ppf(0.975, df) == pytest.approx(2.71029, abs=1e-5)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((-0.06 - half, -0.06 + half))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((-0.140552, 0.020552), abs=1e-6)
    assert got["p"] == pytest.approx(2 * stats.t.sf(2.018780, df), abs=1e-6)
    assert got["p"] == pytest.approx(0.10932, abs=1e-5)
    # the same 9 pairs taken for independent samples: Welch would call it (p = 0.011)
    pairs_b = [0.30, 0.26, 0.28, 0.32, 0.27, 0.25]
    welch = stats.ttest_ind([0.20, 0.22, 0.24], pairs_b, equal_var=False)
    assert welch.pvalue == pytest.approx(0.01104, abs=1e-5)

    frame = pd.DataFrame(
        {
            "level": ["A"] * 3 + ["B"] * 6,
            "trial_a": ["a1", "a1", "a2", "b1", "b1", "b1", "b2", "b2", "b3"],
            "trial_b": ["a2", "a3", "a3", "b2", "b3", "b4", "b3", "b4", "b4"],
            "pd": [0.20, 0.22, 0.24, 0.30, 0.26, 0.28, 0.32, 0.27, 0.25],
        }
    )
    row = pairwise_models(frame, "level", "pd").iloc[0]
    assert (row["n_a"], row["n_b"], row["n_pairs_a"], row["n_pairs_b"]) == (3, 4, 3, 6)
    assert row["p"] == pytest.approx(got["p"]) and row["p_holm"] == pytest.approx(got["p"])
    assert row["p_welch_pairs"] == pytest.approx(welch.pvalue)
    assert row["note"] == "small n (3 models): low power"


def test_too_few_models_or_no_spread_is_not_tested():
    two = pair_mean(["x"], ["y"], [0.3])  # two models: leaving one out leaves no pair
    three = pair_mean([1, 1, 2], [2, 3, 3], [0.2, 0.2, 0.2])
    assert math.isnan(two.variance) and two.mean == 0.3
    assert math.isnan(compare(two, three)["p"])
    assert compare(two, three)["diff"] == pytest.approx(0.1)
    assert math.isnan(compare(three, three)["p"])  # no spread at all: t undefined
    one_nan = pair_mean([1, 1, 2], [2, 3, 3], [0.2, np.nan, 0.4])  # NaN pairs are left out
    assert (one_nan.mean, one_nan.n_pairs) == (pytest.approx(0.3), 2)


def test_pairs_sharing_models_fool_welch_but_not_the_jackknife():
    """Levels that do not differ, models that do: pair(i, j) = u_i + u_j + e_ij with model
    effects u ~ N(0, 1) and pair noise e ~ N(0, 0.3^2), 5 models (10 pairs) per level.
    The mean of a level's pairs is (2/5) sum u_i + noise: variance 0.8 + 0.009; the pairs'
    own spread suggests about a sixth of it, so Welch over pairs rejects far too often."""
    rng = np.random.default_rng(20240601)
    n, reps = 5, 400
    i, j = np.array(list(itertools.combinations(range(n), 2))).T
    welch = jack = 0
    for _ in range(reps):
        levels = []
        for _level in range(2):
            u = rng.normal(0, 1, n)
            values = u[i] + u[j] + rng.normal(0, 0.3, len(i))
            levels.append((values, pair_mean(i, j, values)))
        (va, a), (vb, b) = levels
        welch += stats.ttest_ind(va, vb, equal_var=False).pvalue < 0.05
        jack += compare(a, b)["p"] < 0.05
    assert welch / reps > 0.15, welch / reps
    assert jack / reps < 0.10, jack / reps


def _pairs_of(act: str, v: np.ndarray) -> list[dict]:
    return [
        {"act": act, "steps": 3, "seed_a": int(a), "seed_b": int(b),
         "trial_a": f"{act}{a}", "trial_b": f"{act}{b}", "pd": float(m)}
        for a, b, m in zip(*all_pairs(v), strict=True)
    ]  # fmt: skip


def test_the_report_says_significant_for_a_pair_metric_only_when_the_models_say_so(
    tmp_path: Path,
):
    """Groups a, b, c of 5 seeds each, pair(i, j) = (v_i + v_j) / 2: b is a shifted by 0.05
    (Welch over its 10 pairs says p = 0.007, the models say p = 0.25: not significant),
    c is a shifted by 0.3 (significant either way)."""
    v = np.array([0.10, 0.14, 0.18, 0.22, 0.26])
    shifts = {"a": 0.0, "b": 0.05, "c": 0.3}
    rows = [trial(f"{act}{s}", act, s, loss=1.0 + s) for act in shifts for s in range(5)]
    pairs = [p for act, shift in shifts.items() for p in _pairs_of(act, v + shift)]
    folder = make_sweep(tmp_path, "s", rows, [], seeds=5, grid={"act": list(shifts)}, pairs=pairs)
    out = write_report(
        folder, settings=ReportSettings(directions={"pd": "lower"}), hooks=[report_section]
    )
    md = (out / "report.md").read_text()
    tests = pd.read_csv(out / "significance.csv")
    ab = tests[(tests["metric"] == "pd") & (tests["group_a"] == "a") & (tests["group_b"] == "b")]
    ab = ab.iloc[0]
    # the premise: the pair-level test, Holm over the 3 comparisons, would have called it
    assert ab["p_welch_pairs"] < 0.01 and ab["test"] == "jackknife over models"
    assert 0.2 < ab["p_holm"] < 0.5 and (ab["n_a"], ab["n_pairs_a"]) == (5, 10)
    assert pd.isna(ab["p_welch_holm"])  # no Welch p that anything could read as the verdict

    best = next(line for line in md.splitlines() if line.startswith("- **pd** "))
    assert "best of 3 **a** 0.18 (mean of 10 pairs) (selected: picked on these data" in best
    assert "; next b 0.23: not significantly different" in best
    assert "jackknife over models p = " in best and "5/5 seeds" in best
    assert "significantly better" not in best
    assert f"pair metrics: {METHOD}" in md
    findings = md.split("## Findings")[1].split("\n## ")[0]
    assert "**a** has lower pd (over pairs of seeds) than **c**" in findings
    assert "**b** has lower pd (over pairs of seeds) than **c**" in findings
    assert "than **b**" not in findings
    assert "pairs treated as independent, for reference" in md
    assert f"Intervals: {METHOD}." in md  # the family's own section
