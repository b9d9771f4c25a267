"""analysis.robust against answers worked out by hand: the IQM (rliable's, scipy's
trim_mean at 0.25), P(A > B) by counting pairs, the stratified bootstrap, performance
profiles; and the report's section on a small sweep written without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sweep, trial
from scipy import stats

from analysis import ReportSettings, write_report
from analysis.robust import (
    bootstrap_interval,
    improvement_interval,
    improvements,
    iqm,
    performance_profiles,
    pooled_iqm,
    pooled_mean,
    probability_of_improvement,
    robust_aggregate,
    score_profile,
    stratified_indices,
    stratified_resample,
)


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(1.0, 9.0)) == 4.5  # 8 values: cut 2 each end, mean of 3, 4, 5, 6
    # 6 values: 6 / 4 = 1.5 rounds down to 1 cut at each end (rliable and scipy cut whole
    # values): mean of 2, 3, 4, 10 = 4.75, where a fractional trim (half weight on 2 and
    # 10) would give 13 / 3
    assert iqm([100.0, 1.0, 3.0, 10.0, 2.0, 4.0]) == 4.75
    assert iqm([100.0, 1.0, 3.0, 10.0, 2.0, 4.0]) == stats.trim_mean([1, 2, 3, 4, 10, 100], 0.25)
    assert iqm([1.0, 2.0, 6.0]) == 3.0  # n < 4: nothing cut, the mean
    rows = [[1.0, 2, 3, 4, 5, 6, 7, 8], [8.0, 7, 6, 5, 4, 3, 2, 100]]
    assert iqm(rows, axis=1).tolist() == [4.5, 5.5]  # per row, in any order: 4, 5, 6, 7


def test_probability_of_improvement_counts_pairs_and_half_ties():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.0])
    # a=1 beats 0: 1; a=2 ties 2, 2 and beats 0: 0.5 + 0.5 + 1; a=3 beats all: 3 -> 6 of 9
    assert probability_of_improvement([a], [b]) == pytest.approx(6 / 9)
    # lower is better: 1 beats 2, 2 (2), 2 ties 2, 2 (1): 3 of 9
    assert probability_of_improvement([a], [b], higher=False) == pytest.approx(3 / 9)
    # two strata, averaged: P = 1 in the first, 0.5 (all ties) in the second
    assert probability_of_improvement([a + 10, [5.0]], [b, [5.0, 5.0]]) == pytest.approx(0.75)


def test_bootstrap_interval_is_seeded_percentile_and_degenerate_when_constant():
    values = np.array([3.1, 1.2, 4.4, 1.0, 5.9, 9.3, 2.6, 6.5, 0.7, 3.8])
    first = bootstrap_interval([values], pooled_iqm, reps=500, seed=7)
    assert first == bootstrap_interval([values], pooled_iqm, reps=500, seed=7)
    assert first != bootstrap_interval([values], pooled_iqm, reps=500, seed=8)
    estimate, low, high = first
    assert estimate == iqm(values) and low < estimate < high
    # the percentile interval of the same draws (from the values in order), by hand
    draws = stratified_resample([np.sort(values)], 500, np.random.default_rng(7))
    assert (low, high) == tuple(np.percentile(iqm(draws[0], axis=1), [2.5, 97.5]))
    assert first == bootstrap_interval([values[::-1]], pooled_iqm, reps=500, seed=7)  # any order
    assert bootstrap_interval([np.full(6, 2.5)], pooled_iqm) == (2.5, 2.5, 2.5)
    assert bootstrap_interval([np.full(6, 2.5)], pooled_mean) == (2.5, 2.5, 2.5)
    assert improvement_interval([[1.0, 1.0]], [[0.0, 0.0, 0.0]]) == (1.0, 1.0, 1.0)


def test_the_resampler_draws_within_each_stratum_and_keeps_its_count():
    strata = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0, 40.0, 50.0])]
    first, second = stratified_resample(strata, 200, np.random.default_rng(0))
    assert first.shape == (200, 3) and second.shape == (200, 5)
    assert set(np.unique(first)) == {1.0, 2.0, 3.0}  # only its own, and all of them
    assert set(np.unique(second)) == {10.0, 20.0, 30.0, 40.0, 50.0}
    assert any(len(set(row)) < len(row) for row in first)  # with replacement


def test_groups_resampled_together_get_their_own_bootstrap():
    # sizes 5, 6, 8 and 3 (IQM cuts 1, 1, 2 and no values) and 1; x and x2 are resampled
    # together (one size), through counts rather than values
    groups = {
        "x": [1.0, 5, 2, 8, 3, np.nan],
        "x2": [0.5, 0.1, 9.0, 2.5, 2.5],
        "y": [7.0, 1, 1, 2, 9, 4],
        "w": [3.0, 1, 4, 1, 5, 9, 2, 6],
        "v": [2.0, 7, 1],
        "z": [3.0],
    }
    frame = pd.DataFrame([(g, v) for g, vs in groups.items() for v in vs], columns=["g", "m"])
    table = robust_aggregate(frame, ["g"], ["m"], reps=300, seed=3).set_index("g")
    assert table.loc[list(groups), "n"].tolist() == [5, 5, 6, 8, 3, 1]  # NaN left out
    for group in ("x", "x2", "y", "w", "v"):
        values = np.array(groups[group])[::-1]  # in any order
        values = values[~np.isnan(values)]
        row = table.loc[group]
        for statistic, names in (
            (pooled_iqm, ["iqm", "iqm_low", "iqm_high"]),
            (pooled_mean, ["mean", "boot_low", "boot_high"]),
        ):
            by_values = bootstrap_interval([values], statistic, reps=300, seed=3)
            assert tuple(row[names]) == pytest.approx(by_values)
    assert table.loc["z", "iqm"] == 3.0 and np.isnan(table.loc["z", "iqm_low"])


def test_the_interval_of_p_is_that_of_pairs_counted_on_each_resample():
    rng = np.random.default_rng(1)
    a = [rng.normal(size=4), rng.normal(size=6)]
    b = [rng.normal(size=5) + 0.5, rng.normal(size=3)]
    p, low, high = improvement_interval(a, b, higher=False, reps=400, seed=2)
    # the same draws (A's strata, then B's, each in order), P counted pair by pair
    draws = stratified_resample([*map(np.sort, a), *map(np.sort, b)], 400, np.random.default_rng(2))
    per_stratum = [
        (np.sign(y[:, None, :] - x[:, :, None]).mean(axis=(1, 2)) + 1) / 2
        for x, y in zip(draws[:2], draws[2:], strict=True)
    ]
    by_hand = np.percentile(np.mean(per_stratum, axis=0), [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(by_hand))
    assert p == probability_of_improvement(a, b, higher=False) and low <= p <= high


def test_improvements_average_over_the_cells_both_levels_ran_in():
    rows = [
        # width 8: act a beats b in 3 of 4 pairs; width 16: in all 4; width 32: b has n = 1
        *[("a", 8, v) for v in (2.0, 4.0)],
        *[("b", 8, v) for v in (1.0, 3.0)],
        *[("a", 16, v) for v in (10.0, 11.0)],
        *[("b", 16, v) for v in (0.0, 1.0)],
        *[("a", 32, v) for v in (0.0, 0.0)],
        ("b", 32, 99.0),
    ]
    frame = pd.DataFrame(rows, columns=["act", "width", "acc"])
    table = improvements(frame, {"act": ["act"]}, ["act", "width"], "acc", "higher", reps=200)
    (row,) = table.itertuples()
    assert (row.a, row.b, row.cells, row.n_a, row.n_b) == ("a", "b", 2, 4, 4)
    assert row.p == pytest.approx((3 / 4 + 1) / 2)
    lower = improvements(frame, {"act": ["act"]}, ["act", "width"], "acc", "lower", reps=200)
    assert lower["p"].iloc[0] == pytest.approx(1 - row.p)
    # two levels sharing every cell: what improvement_interval draws for those cells
    both = frame[frame["width"] < 32]
    (shared,) = improvements(both, {"act": ["act"]}, ["act", "width"], "acc", None).itertuples()
    cells = [
        both.loc[(both["act"] == x) & (both["width"] == w), "acc"] for x in "ab" for w in (8, 16)
    ]
    assert (shared.p, shared.low, shared.high) == improvement_interval(cells[:2], cells[2:])


def test_performance_profile_is_the_fraction_of_runs_better_than_tau():
    values, taus = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.5, 4.0])
    assert score_profile(values, taus).tolist() == [1.0, 0.75, 0.5, 0.0]  # > tau
    assert score_profile(values, taus, higher=False).tolist() == [0.0, 0.0, 0.5, 0.75]  # < tau
    frame = pd.DataFrame(
        {"act": ["a"] * 4 + ["b"] * 4, "w": [1, 1, 2, 2] * 2, "m": [1.0, 2, 3, 4, 5, 5, 5, 5]}
    )
    table = performance_profiles(frame, ["act"], ["w"], "m", "higher", taus, reps=100)
    a, b = (table[table["level"] == level] for level in ("a", "b"))
    assert a["fraction"].tolist() == [1.0, 0.75, 0.5, 0.0] and a["n"].iloc[0] == 4
    assert b["fraction"].tolist() == [1.0] * 4  # every run is 5
    assert b["low"].tolist() == b["high"].tolist() == [1.0] * 4  # no spread to resample
    assert (a["low"] <= a["fraction"]).all() and (a["fraction"] <= a["high"]).all()


def test_stratified_indices_are_seeded():
    one = stratified_indices([3, 4], 10, np.random.default_rng(5))
    two = stratified_indices([3, 4], 10, np.random.default_rng(5))
    assert all((x == y).all() for x, y in zip(one, two, strict=True))
    assert [x.shape for x in one] == [(10, 3), (10, 4)] and one[0].max() < 3


def test_the_report_section_shows_iqm_p_and_profiles(tmp_path: Path):
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    b = [2.0, 3.0, 3.0, 5.0, 6.0, 7.0, 8.0, 30.0]  # one odd seed: IQM 5.25, mean 8
    rows = [trial(f"a{i}", "a", i, loss=v) for i, v in enumerate(a)]
    rows += [trial(f"b{i}", "b", i, loss=v) for i, v in enumerate(b)]
    folder = make_sweep(tmp_path, "s", rows, [], seeds=8)
    out = write_report(folder, settings=ReportSettings(directions={"loss": "lower"}))
    md = (out / "report.md").read_text()
    section = md[md.index("## Robust aggregates over seeds") : md.index("## Curves")]
    t_low, t_high = stats.t.interval(0.95, 7, loc=np.mean(b), scale=stats.sem(b))
    line = next(x for x in section.splitlines() if x.startswith("| b |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["b", "8", f"8 [{t_low:.4g}, {t_high:.4g}]"]
    _, low, high = bootstrap_interval([np.array(b)], pooled_iqm)
    assert cells[4] == f"5.25 [{low:.4g}, {high:.4g}]"
    assert section.index("| a |") < section.index("| b |")  # best IQM first
    # P(a better than b), lower better: a is lower in 35 of 64 pairs and 7 tie: 38.5 / 64
    assert "| act | a | b | 1 | 8/8 | 0.6016 |" in section
    assert "![profile-loss](profile-loss.png)" in section and (out / "profile-loss.png").is_file()


def test_the_section_says_so_when_every_group_has_one_seed(tmp_path: Path):
    rows = [trial("a0", "a", 0, loss=1.0), trial("b0", "b", 0, loss=2.0)]
    md = (write_report(make_sweep(tmp_path, "s", rows, [], seeds=1)) / "report.md").read_text()
    assert "## Robust aggregates over seeds\n\nEvery group has one seed" in md


def test_no_p_without_a_direction(tmp_path: Path):
    rows = [trial(f"t{i}", "ab"[i % 2], i // 2, loss=float(i)) for i in range(6)]
    md = (write_report(make_sweep(tmp_path, "s", rows, [], seeds=3)) / "report.md").read_text()
    section = md[md.index("## Robust aggregates over seeds") : md.index("## Curves")]
    assert "**loss**" in section and "P(A > B), loss" not in section
    assert "profile-loss.png" in section  # the primary metric's, though
