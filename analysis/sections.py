"""The report's sections, each rendered from an `Analysis`: executive summary,
checks, results, a confirmation on fresh seeds (analysis/confirm.py), rankings,
significance, findings, distributions, curves.

An experiment family adds sections of its own through hooks: functions
`(sweep, settings) -> list[Section]` (see analysis.reproducibility).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from analysis import checks, plots, robust
from analysis.aggregates import curve
from analysis.configs import SearchGoal, rank_search, ranked_lines
from analysis.confirm import confirmation_sections
from analysis.distributions import normal_fits
from analysis.document import Plot, Section, fmt, slug
from analysis.pairs import METHOD, MIN_MODELS
from analysis.results import MAX_METRICS, MAX_PAIRWISE_GROUPS, Analysis, best_first
from analysis.settings import ReportSettings
from analysis.significance import ALPHA
from analysis.sweep import Sweep

SEARCH_ROWS = 20  # configs of a search in the report
MAX_ROWS = 15  # rows per metric of a table in the report; the CSV files hold all

Hook = Callable[[Sweep, ReportSettings], list[Section]]


def sections(analysis: Analysis, hooks: Sequence[Hook] = ()) -> Iterator[Section]:
    """The report's sections in order, each computed when asked for: a section's figures
    can be drawn (analysis.painters) while the next one is computed."""
    yield _executive_summary(analysis)
    yield _checks_section(analysis)
    yield _results_section(analysis)
    yield from _search_sections(analysis)
    yield from confirmation_sections(analysis.sweep)
    yield _rankings_section(analysis)
    yield _significance_section(analysis)
    yield _findings_section(analysis)
    yield _distributions_section(analysis)
    yield _robust_section(analysis)
    yield _curves_section(analysis)
    for hook in hooks:
        yield from hook(analysis.sweep, analysis.settings)
    yield _about_section(analysis)


def _executive_summary(a: Analysis) -> Section:
    sweep = a.sweep
    seeds = a.observations.groupby("group", observed=True).size()
    failed = checks.failed(sweep)
    experiments = sorted({str(m.get("experiment")) for m in sweep.meta.values()})
    spread = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    lines = [
        f"- **Data**: {len(sweep.ok)} successful trials of {len(sweep.ok) + len(failed)} "
        f"({len(failed)} failed), experiment {', '.join(experiments)}; {_count(a.groups, 'group')} "
        f"({', '.join(sweep.group_columns)}) with {spread} successful seeds each."
    ]
    for source, metrics in (("trials", a.metrics), ("pairs", a.pair_metrics)):
        for metric in metrics:
            if a.direction(metric):
                lines.append(_best_line(a, source, metric))
    if "reproducibility" in a.settings.criteria and a.rankings:
        scores = next(iter(a.rankings.values()))
        if "reproducibility" in scores:
            best = scores["reproducibility"].idxmax()
            lines.append(
                f"- **Most reproducible**: **{best}**, by the reproducibility score (the mean of "
                f"{', '.join(a.settings.criteria['reproducibility'])}, each rescaled so the best "
                "group is 1); see Significance for whether it really differs."
            )
    for name, table in a.rankings.items():
        lines.append(
            f"- **Ranking, {name}** (an order of means, not a test): 1. {table.index[0]} "
            f"(score {fmt(table['score'].iloc[0])})."
        )
    undirected = [m for m in a.metrics + a.pair_metrics if not a.direction(m)]
    if undirected:
        lines.append(
            f"- No direction declared for {', '.join(undirected)}: not ranked "
            "(add `report: {directions: {metric: lower|higher}}` to the spec)."
        )
    tested = a.tests["p_holm"].dropna() if len(a.tests) else pd.Series(dtype=float)
    lines.append(
        f"- **Significance**: {int((tested < ALPHA).sum())} of {len(tested)} tested pairwise "
        f"comparisons differ at p < {ALPHA} (Welch"
        + (f"; pair metrics: {METHOD}" if a.pair_metrics else "")
        + "; Holm-corrected per metric)."
    )
    return Section("Executive summary").add("\n".join(lines))


def _best_line(a: Analysis, source: str, metric: str) -> str:
    rows = a.summary[(a.summary["source"] == source) & (a.summary["metric"] == metric)]
    ordered = best_first(rows, a.direction(metric))
    if ordered.empty:
        return f"- **{metric}**: no finite values."
    best = ordered.iloc[0]
    where = ", over pairs of seeds" if source == "pairs" else ""
    # a t-interval over pairs would be too narrow (they share models): the test below is
    # the model-level one, with its own interval in the significance section
    spread = f"(mean of {best['n']} pairs)" if source == "pairs" else _interval(best)
    text = (
        f"- **{metric}** ({a.direction(metric)} is better{where}): best of {len(ordered)} "
        f"**{best['group']}** {fmt(best['mean'])} {spread}"
        + (" (selected: picked on these data, so its estimate flatters it)" * (len(ordered) > 1))
    )
    if len(ordered) < 2:
        return text + "."
    second = ordered.iloc[1]
    pair = {best["group"], second["group"]}
    test = a.tests[
        (a.tests["source"] == source)
        & (a.tests["metric"] == metric)
        & a.tests["group_a"].isin(pair)
        & a.tests["group_b"].isin(pair)
    ]
    p = test["p_holm"].iloc[0] if len(test) else float("nan")
    if p != p:
        if source == "pairs":
            n_ok = len(test) and min(test["n_a"].iloc[0], test["n_b"].iloc[0]) >= MIN_MODELS
            short = f"a group has fewer than {MIN_MODELS} seeds"
        else:
            n_ok, short = min(best["n"], second["n"]) >= 2, "a group has n < 2"
        verdict = "no test (" + ("no spread in either group" if n_ok else short) + ")"
    else:
        verdict = "significantly better" if p < ALPHA else "not significantly different"
        if source == "pairs":
            row = test.iloc[0]
            verdict += f" ({row['test']} p = {fmt(p)}, Holm; {row['n_a']}/{row['n_b']} seeds)"
        else:
            verdict += f" (Welch p = {fmt(p)}, Holm)"
    return text + f"; next {second['group']} {fmt(second['mean'])}: {verdict}."


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}" + ("" if len(items) == 1 else "s")


def _interval(row: pd.Series) -> str:
    """`[low, high], n = 5`, or `(n = 1, no interval)`."""
    if row["n"] < 2:
        return f"(n = {row['n']}, no interval)"
    return f"{_interval_text(row['ci_low'], row['ci_high'])}, n = {row['n']}"


def _checks_section(a: Analysis) -> Section:
    section = Section("Checks")
    failed = checks.failed(a.sweep)
    bad = checks.non_finite(a.sweep)
    stuck = checks.not_converged(a.sweep, a.settings)
    short = checks.short_groups(a.sweep)
    losses = checks.loss_metrics(a.sweep, a.settings)
    lines = [
        f"- Failed trials (no successful attempt): {len(failed)}.",
        f"- NaN or infinite values: {int(bad[['nan', 'inf']].sum().sum()) if len(bad) else 0}.",
        f"- Trials whose final {' / '.join(losses)} is not below its first value: "
        f"{stuck['trial_id'].nunique() if len(stuck) else 0}."
        if losses
        else "- Losses going down: not checked (no per-step loss reported).",
        f"- Groups with fewer successful seeds than asked: {len(short)}.",
    ]
    section.add("\n".join(lines))
    for title, table in (
        ("Failed trials", failed),
        ("NaN / infinite values", bad),
        ("Not converged", stuck),
        ("Groups short of seeds", short),
    ):
        if len(table):
            first = f", first {MAX_ROWS}" if len(table) > MAX_ROWS else ""
            section.add(f"**{title}** ({len(table)}{first}):")
            section.add(table.head(MAX_ROWS))
    return section


def _results_section(a: Analysis) -> Section:
    section = Section("Results per group")
    section.add(
        "Mean ± standard deviation over seeds, n in brackets; 95% t-intervals are in "
        "`summary.csv` and the figure. A group is a config minus its seed."
    )
    if a.left_out:
        section.add(
            f"Not analysed: {', '.join(a.left_out)} (name the metrics to analyse with "
            "`report: {metrics: [...]}` in the spec or `--metric`)."
        )
    for source, title in (
        ("trials", "final metrics of each trial"),
        ("pairs", "over pairs of seeds"),
    ):
        rows = a.summary[a.summary["source"] == source]
        if rows.empty:
            continue
        cells = rows.assign(
            cell=[_mean_std(*r) for r in zip(rows["mean"], rows["std"], rows["n"], strict=True)]
        )
        wide = cells.pivot_table(
            index="group", columns="metric", values="cell", aggfunc="first", sort=False
        )
        section.add(f"**{title.capitalize()}**", wide.reset_index())
    panels = {}
    for (source, metric), rows in a.summary.groupby(["source", "metric"], sort=False):
        panels[f"{metric} ({source})" if source == "pairs" else metric] = (rows, a.label(metric))
    if panels:
        section.add(
            Plot(
                "overview",
                plots.sketch(
                    plots.means, dict(list(panels.items())[:9]), "Mean and 95% interval per group"
                ),
                "Each group's mean with its 95% t-interval across seeds.",
            )
        )
    return section


def _mean_std(mean: float, std: float, n: int) -> str:
    return f"{fmt(mean)} ({n})" if n < 2 else f"{fmt(mean)} ± {fmt(std)} ({n})"


def _search_sections(a: Analysis) -> list[Section]:
    """Per search sweep with a metric: its configs ranked as its searcher saw them."""
    built = []
    several = len(a.sweep.meta) > 1
    for name, meta in a.sweep.meta.items():
        trials = a.sweep.trials[a.sweep.trials["sweep"] == name]
        found = rank_search(trials, meta)
        if found is None:
            continue
        title = "Search: configs ranked over seeds" + (f" ({name})" if several else "")
        built.append(_search_section(title, *found))
    return built


def _search_section(title: str, goal: SearchGoal, ranked: pd.DataFrame, keys: list[str]) -> Section:
    valued = int(ranked["value"].notna().sum())
    first = f", the best {SEARCH_ROWS}" if len(ranked) > SEARCH_ROWS else ""
    section = Section(title).add(
        f"Each config the searcher sampled ran with every seed; it was told the {goal.how} "
        f"over the seeds of **{goal.metric}** ({goal.mode} is better), or nothing when a "
        "seed failed or lacks the metric (no value, listed last). n: seeds with a value; "
        "the 95% t-interval is of their mean."
    )
    if valued:
        section.add(
            f"The best config is a best-of-{valued} pick (the configs with a value), and its "
            "interval is computed on the same data that chose it, so both flatter it: run it "
            "again with fresh seeds to confirm."
        )
    section.add(f"**{len(ranked)} configs{first}**", ranked_lines(ranked, keys, SEARCH_ROWS))
    return section


def _rankings_section(a: Analysis) -> Section:
    section = Section("Rankings")
    section.add(
        "Composite scores: each metric's group means rescaled to [0, 1] in its declared "
        "direction (1 = best group), averaged within a criterion, weighted per profile. "
        "Ranks order means; whether two groups really differ is the next section's question."
    )
    if a.settings.criteria:
        section.add(
            "\n".join(
                f"- criterion **{c}**: {', '.join(ms)}" for c, ms in a.settings.criteria.items()
            )
        )
    section.add("\n".join(f"- {p}" for p in a.ranking_problems))
    if not a.rankings:
        return section.add(
            "No ranking: no metric has a declared direction. Add to the spec "
            "`report: {directions: {val_loss: lower, accuracy: higher}}`, or pass "
            "`sweep report --weights val_loss=1`."
        )
    for name, table in a.rankings.items():
        weights = ", ".join(f"{k} {v:g}" for k, v in a.profiles[name].items())
        section.add(f"**{name}** ({weights})", table.reset_index())
    scores = pd.DataFrame({name: t["score"] for name, t in a.rankings.items()})
    scores = scores.loc[next(iter(a.rankings.values())).index]
    title = "Composite score per group and profile"
    section.add(Plot("rankings", plots.sketch(plots.scores, scores, title)))
    return section


def _significance_section(a: Analysis) -> Section:
    section = Section("Significance")
    section.add(
        "Pairwise, for metrics of trials: Welch's t-test with the 95% interval of the "
        "difference (A - B, not adjusted for the number of comparisons), Mann-Whitney U, "
        "Hedges' g; p-values "
        "Holm-corrected over the pairs of each metric. n < 2 is not tested; n < 5 is flagged, "
        "with the smallest p Mann-Whitney can reach at that n. All rows: `significance.csv`."
    )
    if len(a.groups) > MAX_PAIRWISE_GROUPS:
        section.add(
            f"With {len(a.groups)} groups, each group is tested against the one with the best "
            "mean only. That group was chosen from these same data, so its p-values are "
            "optimistic: treat them as a screen, not a confirmation."
        )
    if a.pair_metrics:
        section.add(
            f"Pair metrics (source pairs) are tested at the level of models: {METHOD}. "
            "Each group's mean pair metric gets a jackknife variance (leaving one seed out "
            "removes all its pairs); A - B has the standard error sqrt(var_A + var_B), a "
            "t-interval and p with Welch-Satterthwaite degrees of freedom (n - 1 per group, "
            f"n = seeds), Holm-corrected over the pairs of groups of each metric. It needs "
            f"{MIN_MODELS} or more seeds per group. Welch over the pairs is shown for "
            "reference only (pairs treated as independent): it decides nothing."
        )
    if not a.one_way.empty:
        section.add(
            "**Across the levels of each factor** (other factors pooled): one-way ANOVA "
            "(Holm-corrected over the table) and Kruskal-Wallis.",
            a.one_way,
        )
    if a.tests.empty:
        return section.add("Only one group: nothing to compare.")
    for (source, metric), rows in a.tests.groupby(["source", "metric"], sort=False):
        if rows["note"].str.startswith("not tested").all():
            least = f"{MIN_MODELS} seeds" if source == "pairs" else "n >= 2"
            section.add(f"**{metric}** ({source}): no two groups have {least}, nothing to test.")
            continue
        shown = rows.sort_values("p_holm", na_position="last").head(MAX_ROWS)
        more = f", the {MAX_ROWS} smallest p of {len(rows)}" if len(rows) > MAX_ROWS else ""
        table = _pair_test_table(shown) if source == "pairs" else _test_table(shown)
        section.add(f"**{metric}** ({source}{more})", table)
    return section


def _pair_test_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The model-level comparisons of a pair metric, Welch over pairs beside for reference."""
    return pd.DataFrame(
        {
            "A": rows["group_a"],
            "B": rows["group_b"],
            "seeds": _both(rows["n_a"], rows["n_b"]),
            "pairs": _both(rows["n_pairs_a"], rows["n_pairs_b"]),
            "A - B": rows["diff"],
            "SE (jackknife)": rows["se"],
            "95% interval (unadjusted)": [
                _interval_text(lo, hi)
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "df": rows["df"],
            "p": rows["p"],
            "p (Holm)": rows["p_holm"],
            "p Welch over pairs (pairs treated as independent, for reference)": rows[
                "p_welch_pairs"
            ],
            "note": rows["note"],
        }
    )


def _test_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The pairwise rows as a reader wants them: who, n, difference with interval, p, g."""
    return pd.DataFrame(
        {
            "A": rows["group_a"],
            "B": rows["group_b"],
            "n": [f"{a}/{b}" for a, b in zip(rows["n_a"], rows["n_b"], strict=True)],
            "A - B": rows["diff"],
            "95% interval (unadjusted)": [
                _interval_text(lo, hi)
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "p Welch": rows["p_welch"],
            "p Welch (Holm)": rows["p_welch_holm"],
            "p Mann-Whitney (Holm)": rows["p_mwu_holm"],
            "Hedges' g": rows["hedges_g"],
            "note": rows["note"],
        }
    )


def _both(a: pd.Series, b: pd.Series) -> list[str]:
    """`5/5`: counts of A and B (whole numbers, though a table with NaN made them floats)."""
    return [f"{x:.0f}/{y:.0f}" for x, y in zip(a, b, strict=True)]


def _interval_text(low: float, high: float) -> str:
    return "-" if pd.isna(low) else f"[{fmt(low)}, {fmt(high)}]"


def _findings_section(a: Analysis) -> Section:
    section = Section("Findings")
    effects = a.one_way[a.one_way["p_anova_holm"] < ALPHA] if len(a.one_way) else a.one_way
    if len(effects):
        section.add(
            "Factors whose levels differ (one-way ANOVA, Holm-corrected over all factors and "
            "metrics; Kruskal-Wallis beside it):",
            "\n".join(
                f"- **{r.factor}** changes **{r.metric}** across its {r.levels} levels: "
                f"ANOVA p = {fmt(r.p_anova_holm)} (Holm), Kruskal-Wallis p = {fmt(r.p_kruskal)} "
                f"(uncorrected), n = {r.n_min}-{r.n_max} per level"
                + ("; the rank test does not confirm it." if r.p_kruskal >= ALPHA else ".")
                for r in effects.sort_values("p_anova_holm").itertuples()
            ),
        )
    tested = a.tests[a.tests["p_holm"].notna()] if len(a.tests) else a.tests
    supported = tested[tested["p_holm"] < ALPHA] if len(tested) else tested
    if supported.empty:
        if len(a.groups) < 2:
            return section.add("One group only: there is nothing to compare.")
        return section.add(
            f"No pair of groups differs at p < {ALPHA} after Holm correction ({len(tested)} "
            f"tested comparisons over {len(a.metrics) + len(a.pair_metrics)} metrics): the "
            "order of the means above "
            "may be chance; more seeds would narrow the intervals."
        )
    lines = [
        _pair_finding(row) if row.source == "pairs" else _finding(row)
        for row in supported.sort_values("p_holm").head(MAX_ROWS).itertuples()
    ]
    more = len(supported) - MAX_ROWS
    section.add(f"Differences that hold at p < {ALPHA} after Holm correction:", "\n".join(lines))
    return section.add(f"... and {more} more in `significance.csv`." if more > 0 else "")


def _lower_first(row: Any) -> tuple[bool, tuple, tuple, tuple, tuple]:
    """A tested pair with the lower group first: whether it was flipped, then the groups,
    their means, their n and the interval of the difference, in that order."""
    flip = row.diff > 0
    groups = (row.group_b, row.group_a) if flip else (row.group_a, row.group_b)
    means = (row.mean_b, row.mean_a) if flip else (row.mean_a, row.mean_b)
    n = (row.n_b, row.n_a) if flip else (row.n_a, row.n_b)
    ci = (-row.ci_high, -row.ci_low) if flip else (row.ci_low, row.ci_high)
    return flip, groups, means, n, ci


def _finding(row: Any) -> str:
    """One significant pair as a sentence, the lower group first, its numbers in that order."""
    flip, (low, high), means, n, ci = _lower_first(row)
    unconfirmed = "" if row.p_mwu_holm < ALPHA else "; the rank test does not confirm it at this n"
    return (
        f"- **{low}** has lower {row.metric} than **{high}**: {fmt(means[0])} vs {fmt(means[1])} "
        f"(difference {fmt(means[0] - means[1])}, 95% interval [{fmt(ci[0])}, {fmt(ci[1])}] "
        f"unadjusted), Welch p = {fmt(row.p_welch_holm)} (Holm), Hedges' g = "
        f"{fmt(-row.hedges_g if flip else row.hedges_g)}, n = {n[0]}/{n[1]}{unconfirmed}."
    )


def _pair_finding(row: Any) -> str:
    """One pair metric's significant difference (model-level test), the lower group first."""
    _, (low, high), means, n, ci = _lower_first(row)
    return (
        f"- **{low}** has lower {row.metric} (over pairs of seeds) than **{high}**: "
        f"{fmt(means[0])} vs {fmt(means[1])} (difference {fmt(means[0] - means[1])}, 95% "
        f"interval [{fmt(ci[0])}, {fmt(ci[1])}] unadjusted), {row.test} p = "
        f"{fmt(row.p_holm)} (Holm), n = {n[0]}/{n[1]} seeds."
    )


def _distributions_section(a: Analysis) -> Section:
    section = Section("Distributions")
    section.add(
        "Histograms per group with the fitted normal (maximum likelihood: σ divides by n, "
        "so it is a little smaller than the std of the results table, which divides by n - 1; "
        "drawn for n ≥ 3), and a Shapiro-Wilk test per group (needs n ≥ 3)."
    )
    for source, frame, metrics in (
        ("trials", a.observations, a.metrics),
        ("pairs", a.pair_observations, a.pair_metrics),
    ):
        for metric in metrics:
            values = {
                g: rows[metric].to_numpy(dtype=float)
                for g, rows in frame.groupby("group", sort=False)
            }
            values = {g: values[g] for g in a.groups if g in values}
            name = f"distribution-{slug(metric)}" + ("-pairs" if source == "pairs" else "")
            unit = a.settings.unit(metric)
            section.add(Plot(name, plots.sketch(plots.distribution, values, metric, unit)))
            table = normal_fits(frame, ["group"], metric).set_index("group")
            table = table.reindex([g for g in a.groups if g in table.index]).reset_index()
            table = table.drop(columns="metric").rename(columns={"sigma": "sigma (MLE)"})
            section.add(table.head(MAX_ROWS * 2))
    return section


PROFILE_METRICS = 3  # metrics with a performance profile; more: the primary one only
PROFILE_PANELS = 3  # factors drawn per performance profile
TAUS = 100  # thresholds of a performance profile


def _robust_section(a: Analysis) -> Section:
    """rliable's aggregates (analysis.robust): IQM and bootstrap intervals per group,
    P(A > B) between the levels of each factor, performance profiles."""
    section = Section("Robust aggregates over seeds")
    if a.observations.groupby("group", observed=True).size().max() < 2:
        return section.add("Every group has one seed: nothing to resample.")
    section.add(
        "As rliable reports them (Agarwal et al., NeurIPS 2021). **IQM**: the mean of the "
        "middle half of a group's seeds (a quarter, rounded down, cut at each end; the mean "
        "when n < 4), less moved by one odd seed. Intervals: 95% percentile intervals of a "
        f"stratified bootstrap ({robust.REPS} resamples, seed {robust.SEED}: seeds drawn with "
        "replacement within each group, or within each cell of the other factors). "
        "**P(A > B)**, for metrics with a direction: the chance that a run of level A is "
        "better than a run of level B (ties count half), averaged over the cells of the "
        "other factors where both ran with n >= 2; 0.5 means no difference. **Performance "
        "profiles**: the fraction of runs better than each threshold τ, per level."
    )
    table = robust.robust_aggregate(a.observations, ["group"], a.metrics)
    trials = a.summary[a.summary["source"] == "trials"]
    factors = {
        f: keys
        for f, keys in a.sweep.grid_factors.items()
        if a.observations[keys].drop_duplicates().shape[0] <= MAX_PAIRWISE_GROUPS
    }
    for metric in a.metrics:
        direction = a.direction(metric)
        rows = trials[trials["metric"] == metric].merge(
            table[table["metric"] == metric], on=["group", "metric"], suffixes=("", "_robust")
        )
        if direction:
            rows = rows.sort_values("iqm", ascending=direction == "lower")
        first = (
            f", the {'best' if direction else 'first'} {MAX_ROWS}" if len(rows) > MAX_ROWS else ""
        )
        section.add(f"**{metric}**{first}", _robust_table(rows.head(MAX_ROWS)))
        if not direction:
            continue
        pairs = robust.improvements(
            a.observations, factors, a.sweep.group_columns, metric, direction
        )
        if len(pairs):
            shown = _better_first(pairs).head(MAX_ROWS)
            more = f", the {MAX_ROWS} largest of {len(pairs)}" if len(pairs) > MAX_ROWS else ""
            section.add(f"P(A > B), {metric} ({direction} is better{more}):", shown)
    directed = [m for m in a.metrics if a.direction(m)] or a.metrics[:1]
    for metric in directed if len(directed) <= PROFILE_METRICS else directed[:1]:
        figure = _profile_figure(a, metric, factors)
        if figure is not None:
            section.add(Plot(f"profile-{slug(metric)}", figure))
    return section


def _robust_table(rows: pd.DataFrame) -> pd.DataFrame:
    def cell(value: float, low: float, high: float) -> str:
        return f"{fmt(value)} {_interval_text(low, high)}"

    return pd.DataFrame(
        {
            "group": rows["group"],
            "n": rows["n"],
            "mean [t 95%]": list(map(cell, rows["mean"], rows["ci_low"], rows["ci_high"])),
            "mean [bootstrap 95%]": list(
                map(cell, rows["mean"], rows["boot_low"], rows["boot_high"])
            ),
            "IQM [bootstrap 95%]": list(map(cell, rows["iqm"], rows["iqm_low"], rows["iqm_high"])),
        }
    )


def _better_first(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair with its likelier-better level as A, the largest P(A > B) first."""
    flip = pairs["p"] < 0.5
    table = pd.DataFrame(
        {
            "factor": pairs["factor"],
            "A": pairs["a"].where(~flip, pairs["b"]),
            "B": pairs["b"].where(~flip, pairs["a"]),
            "cells": pairs["cells"],
            "n": [f"{x}/{y}" for x, y in zip(pairs["n_a"], pairs["n_b"], strict=True)],
            "P(A > B)": pairs["p"].where(~flip, 1 - pairs["p"]),
            "95% interval": [
                _interval_text(*((1 - h, 1 - lo) if f else (lo, h)))
                for f, lo, h in zip(flip, pairs["low"], pairs["high"], strict=True)
            ],
        }
    )
    return table.sort_values("P(A > B)", ascending=False, kind="stable")


def _profile_figure(a: Analysis, metric: str, factors: dict[str, list[str]]) -> plots.Sketch | None:
    values = a.observations[metric].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or values.min() == values.max():
        return None
    pad = 0.02 * (values.max() - values.min())
    taus = np.linspace(values.min() - pad, values.max() + pad, TAUS)
    columns = a.sweep.group_columns
    by_factor = factors or {"group": columns}
    panels = {
        factor: robust.performance_profiles(
            a.observations,
            keys,
            [c for c in columns if c not in keys],
            metric,
            a.direction(metric),
            taus,
        )
        for factor, keys in list(by_factor.items())[:PROFILE_PANELS]
    }
    unit, direction = a.settings.unit(metric), a.direction(metric)
    return plots.sketch(plots.profiles, panels, metric, unit, direction)


def _curves_section(a: Analysis) -> Section:
    section = Section("Curves")
    sweep = a.sweep
    declared = [m for m in a.settings.metrics if m in sweep.step_metrics]
    step_metrics = declared or sweep.step_metrics[:MAX_METRICS]
    if step_metrics:
        section.add("Per-step metrics: mean across seeds with its 95% t-interval as a band.")
        steps = sweep.steps
        for metric in step_metrics:
            table = curve(steps, "step", sweep.group_columns, metric)
            if table.empty:  # reported by failed attempts only
                continue
            table, caption = _best_groups(table, metric, a.direction(metric))
            unit = a.settings.unit(metric)
            figure = plots.sketch(plots.band, table, "step", metric, unit, by=sweep.group_columns)
            section.add(Plot(f"curve-{slug(metric)}", figure, caption))
    numeric = [
        f
        for f in sweep.factors
        if pd.api.types.is_numeric_dtype(a.observations[f]) and a.observations[f].nunique() >= 3
    ]
    for x in numeric:
        others = [f for f in sweep.group_columns if f != x]
        for metric in a.metrics:
            table = curve(a.observations, x, others, metric)
            table, caption = _best_groups(table, metric, a.direction(metric))
            units = a.settings.unit(metric), a.settings.unit(x)
            figure = plots.sketch(plots.band, table, x, metric, *units, by=others)
            section.add(Plot(f"{slug(metric)}-vs-{slug(x)}", figure, caption))
    if len(section.blocks) == 0:
        section.add("No per-step metrics and no numeric parameter with three or more values.")
    return section


def _best_groups(
    table: pd.DataFrame, metric: str, direction: str | None
) -> tuple[pd.DataFrame, str]:
    """At most plots.MAX_GROUPS lines: the groups with the best value anywhere on their
    curve when the metric has a direction, else the first ones; and a caption saying so."""
    groups = list(dict.fromkeys(table["group"]))
    if len(groups) <= plots.MAX_GROUPS or direction is None:
        return table, ""
    best = table.groupby("group")["mean"].agg("min" if direction == "lower" else "max")
    keep = set(best.sort_values(ascending=direction == "lower").index[: plots.MAX_GROUPS])
    which = "lowest" if direction == "lower" else "highest"
    caption = f"The {plots.MAX_GROUPS} of {len(groups)} groups that reach the {which} {metric}."
    return table[table["group"].isin(keep)], caption


def _about_section(a: Analysis) -> Section:
    commits = sorted(
        {
            str(r.get("git_commit", "-"))[:10]
            for m in a.sweep.meta.values()
            for r in m.get("runs", [])
        }
    )
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Section("About this report").add(
        f"- Generated {when} from the Parquet tables of {', '.join(a.sweep.names)}; "
        "regenerate any time with `sweep report` (or `sweep compare`).\n"
        f"- Code versions of the runs (git): {', '.join(commits) or '-'}.\n"
        f"- Parameters the same in every successful trial, defaults included: "
        f"{_fixed_parameters(a.sweep)}.\n"
        "- Intervals are 95% t-intervals over seeds (bootstrap ones in Robust aggregates); "
        "n is the number of successful seeds "
        "(or pairs of seeds) behind each number.\n"
        "- Files: `summary.csv` (one row per group and metric), `significance.csv` (every "
        "comparison), `factors.csv`, `ranking-*.csv`, and the PNG figures."
    )


def _fixed_parameters(sweep: Sweep) -> str:
    ok = sweep.ok
    columns = [c for c in sweep.config_columns if c != "seed" and c in ok]
    fixed = [c for c in columns if len(ok) and ok[c].nunique(dropna=False) == 1]
    return ", ".join(f"{c}={ok[c].iloc[0]}" for c in fixed) or "none"


def compare_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    """For `sweep compare`: per metric, each sweep's trials pooled, and its best group."""
    section = Section("Sweeps side by side")
    section.add(
        "All successful trials of each sweep pooled (mean ± std, n), and each sweep's best "
        "group by mean (highest when no direction is declared)."
    )
    observations = sweep.ok.assign(group=sweep.label(sweep.ok))
    rows = []
    for metric in sweep.final_metrics:
        for name, trials in observations.groupby("sweep", sort=False, observed=True):
            values = trials[metric].dropna()
            if values.empty:
                continue
            means = trials.groupby("group", observed=True)[metric].mean().dropna()
            best = means.idxmin() if settings.directions.get(metric) == "lower" else means.idxmax()
            rows.append(
                {
                    "metric": metric,
                    "sweep": name,
                    "n": len(values),
                    "mean ± std": f"{fmt(values.mean())} ± {fmt(values.std())}",
                    "best group": best,
                    "best mean": means[best],
                }
            )
    return [section.add(pd.DataFrame(rows))]
