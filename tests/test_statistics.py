"""The analysis statistics on cases with known answers: normal fits, normality,
Welch / Mann-Whitney / Hedges' g / Holm, one-way tests, rankings and settings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats

from analysis.distributions import fit_normal, normal_fits, normality
from analysis.errors import AnalysisError
from analysis.ranking import composite, normalised, parse_weights
from analysis.settings import ReportSettings
from analysis.significance import compare_two, hedges_g, holm, one_way, pairwise
from orchestrator.errors import InputError
from orchestrator.spec import load_spec


def test_normal_fit_recovers_known_parameters_and_matches_scipy():
    values = np.random.default_rng(0).normal(3.0, 2.0, 50_000)
    mu, sigma = fit_normal(values)
    assert mu == pytest.approx(3.0, abs=0.03) and sigma == pytest.approx(2.0, abs=0.03)
    assert (mu, sigma) == pytest.approx(stats.norm.fit(values))
    assert fit_normal([1.0, 3.0, np.nan]) == (2.0, 1.0)  # ddof=0, NaN left out


def test_normality_test_passes_normal_data_and_rejects_skewed_data():
    rng = np.random.default_rng(1)
    assert normality(rng.normal(size=200))["normality"] == "consistent with normal"
    skewed = normality(rng.exponential(size=200))
    assert skewed["shapiro_p"] < 1e-6 and skewed["normality"].startswith("not normal")
    assert normality([1.0, 2.0])["normality"] == "not tested (n < 3)"
    assert math.isnan(normality([1.0, 2.0])["shapiro_p"])


def test_distribution_table_per_group():
    df = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 2, "x": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]})
    table = normal_fits(df, ["g"], "x").set_index("g")
    assert table.loc["a", "mu"] == 2.5 and table.loc["a", "sigma"] == pytest.approx(
        np.std([1, 2, 3, 4])
    )
    assert table.loc["b", "n"] == 2 and table.loc["b", "normality"] == "not tested (n < 3)"


def test_welch_test_and_interval_match_scipy_and_the_formula():
    a = np.array([5.1, 4.9, 5.6, 5.8, 6.0, 5.3])
    b = np.array([4.1, 4.5, 3.9, 4.8, 4.0])
    got = compare_two(a, b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert got["diff"] == pytest.approx(diff)
    assert got["df"] == pytest.approx(df)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((diff - half, diff + half))
    assert got["t"] == pytest.approx(diff / math.sqrt(va + vb))
    assert got["p_welch"] == pytest.approx(2 * stats.t.sf(abs(got["t"]), df))
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert (got["u"], got["p_mwu"]) == pytest.approx((u.statistic, u.pvalue))
    assert got["u"] == 30.0  # every a is above every b: U = 6 * 5


def test_hedges_g_on_a_hand_computed_case():
    # pooled sd 1, Cohen's d = -3, small-sample factor 1 - 3 / (4 * 6 - 9) = 0.8
    assert hedges_g(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == pytest.approx(-2.4)
    assert math.isnan(hedges_g(np.array([1.0]), np.array([2.0, 3.0])))


def test_holm_adjustment_on_a_known_case():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04); NaN is no test
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.5, 0.02]) == pytest.approx([0.5, 0.04])
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # 2 * 0.8 capped at 1, then monotone


def test_pairwise_reports_small_groups_instead_of_hiding_them():
    df = pd.DataFrame({"g": ["a"] * 3 + ["b"] * 3 + ["c"], "x": [1.0, 2, 3, 10, 11, 12, 5]})
    table = pairwise(df, "g", "x").set_index(["group_a", "group_b"])
    assert len(table) == 3
    assert table.loc[("a", "c"), "note"] == "not tested: n < 2"
    assert math.isnan(table.loc[("a", "c"), "p_welch"])
    assert table.loc[("a", "b"), "note"].startswith("small n (3)")
    # only one real test, so Holm leaves its p as is
    assert table.loc[("a", "b"), "p_welch_holm"] == pytest.approx(table.loc[("a", "b"), "p_welch"])
    against = pairwise(df, "g", "x", against="b")
    assert set(zip(against["group_a"], against["group_b"], strict=True)) == {("a", "b"), ("b", "c")}


def test_one_way_matches_scipy_and_refuses_singletons():
    df = pd.DataFrame({"f": list("aaabbbccc"), "x": [1.0, 2, 3, 2, 3, 4, 6, 7, 8]})
    got = one_way(df, "f", "x")
    groups = [[1, 2, 3], [2, 3, 4], [6, 7, 8]]
    assert got["p_anova"] == pytest.approx(stats.f_oneway(*groups).pvalue)
    assert got["p_kruskal"] == pytest.approx(stats.kruskal(*groups).pvalue)
    lonely = one_way(df.iloc[:7], "f", "x")  # level c has one value
    assert math.isnan(lonely["p_anova"]) and "n < 2" in lonely["note"]


def test_scores_follow_the_declared_direction():
    means = pd.DataFrame({"loss": [1.0, 2.0, 3.0], "acc": [0.5, 0.7, 0.9]}, index=list("xyz"))
    scores = normalised(means, {"loss": "lower", "acc": "higher"})
    assert scores["loss"].tolist() == [1.0, 0.5, 0.0]
    assert scores["acc"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    settings = ReportSettings(
        directions={"loss": "lower", "acc": "higher"},
        criteria={"quality": ["loss"], "fit": ["acc"]},
    )
    ranked = composite(means, settings, {"quality": 3, "fit": 1})
    # x: 0.75 * 1 + 0.25 * 0 = 0.75; y: 0.5; z: 0.25
    assert ranked.index.tolist() == ["x", "y", "z"]
    assert ranked["score"].tolist() == pytest.approx([0.75, 0.5, 0.25])
    assert ranked["rank"].tolist() == [1, 2, 3]
    with pytest.raises(AnalysisError, match="no direction declared"):
        composite(means.assign(other=1.0), settings, {"other": 1})


def test_builtin_profiles_need_their_criteria():
    settings = ReportSettings(
        directions={"pd": "lower", "val_loss": "lower", "tokens_per_s": "higher"},
        criteria={"reproducibility": ["pd"], "accuracy": ["val_loss"], "speed": ["tokens_per_s"]},
    )
    assert settings.all_profiles()["research"] == {
        "reproducibility": 0.6,
        "accuracy": 0.3,
        "speed": 0.1,
    }
    assert set(settings.all_profiles()) == {"research", "production", "speed"}
    assert ReportSettings().all_profiles() == {}


def test_settings_merge_key_by_key_and_check_themselves():
    family = ReportSettings(directions={"a": "lower", "b": "higher"}, metrics=["a", "b"])
    spec = ReportSettings(directions={"b": "lower"})
    merged = family.merged(spec)
    assert merged.directions == {"a": "lower", "b": "lower"} and merged.metrics == ["a", "b"]
    with pytest.raises(ValidationError, match="weights must be >= 0"):
        ReportSettings(profiles={"mine": {"speed": -1.0}})
    assert ReportSettings().unit("train_time_s") == "s"
    assert ReportSettings().unit("tokens_per_s") == "tokens/s"
    assert ReportSettings().unit("top1_mismatch_pct") == "%"
    assert ReportSettings(units={"loss": "nats"}).unit("loss") == "nats"


def test_a_spec_report_section_is_validated_with_the_rest():
    spec = {"name": "s", "experiment": "trivial", "report": {"directions": {"loss": "lower"}}}
    assert load_spec(spec).report.directions == {"loss": "lower"}
    with pytest.raises(
        InputError, match='report.direction: unknown key \\(did you mean "directions"'
    ):
        load_spec({**spec, "report": {"direction": {"loss": "lower"}}})
    with pytest.raises(InputError, match="report.directions.loss"):
        load_spec({**spec, "report": {"directions": {"loss": "smaller"}}})


def test_weights_from_the_command_line():
    assert parse_weights("val_loss=0.7, tokens_per_s=0.3") == {"val_loss": 0.7, "tokens_per_s": 0.3}
    for bad in ("val_loss", "val_loss=x", "val_loss=-1", "=1", "a=0"):
        with pytest.raises(AnalysisError):
            parse_weights(bad)
