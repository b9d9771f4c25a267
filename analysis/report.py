"""The report of one sweep (or several, compared): `write_report(path)`.

`analyse` computes the numbers once (aggregates, tests, rankings, checks);
each `_section` function turns part of them into text, tables and figures. An
experiment family adds sections of its own through hooks: functions
`(sweep, settings) -> list[Section]` (see analysis.reproducibility).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import pandas as pd

from analysis import checks, plots
from analysis.aggregates import aggregate
from analysis.distributions import normal_fits
from analysis.document import Plot, Section, fmt, write
from analysis.errors import AnalysisError
from analysis.ranking import composite
from analysis.settings import ReportSettings
from analysis.significance import ALPHA, holm, one_way, pairwise
from analysis.sweep import Sweep, load

MAX_METRICS = 8  # metrics analysed when the settings name none
MAX_PAIRWISE_GROUPS = 12  # above this, each group is tested against the best one only
MAX_ROWS = 15  # rows per metric of a table in the report; the CSV files hold all

Hook = Callable[[Sweep, ReportSettings], list[Section]]


@dataclass
class Analysis:
    """The numbers of a report, computed once."""

    sweep: Sweep
    settings: ReportSettings
    metrics: list[str]  # final metrics analysed
    pair_metrics: list[str]
    observations: pd.DataFrame  # successful trials, with their `group` label
    pair_observations: pd.DataFrame | None
    summary: pd.DataFrame  # aggregate per group and metric (`source`: trials or pairs)
    tests: pd.DataFrame  # pairwise comparisons, Holm-corrected per metric
    one_way: pd.DataFrame
    rankings: dict[str, pd.DataFrame]  # profile -> composite scores
    ranking_problems: list[str]

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.summary["group"]))

    def direction(self, metric: str) -> str | None:
        return self.settings.directions.get(metric)

    def label(self, metric: str) -> str:
        return plots.axis_label(metric, self.settings.unit(metric))


def analyse(
    sweep: Sweep, settings: ReportSettings, weights: dict[str, float] | None = None
) -> Analysis:
    """Aggregates, tests and rankings of `sweep`; `weights` adds a custom ranking profile."""
    metrics = [m for m in settings.metrics if m in sweep.final_metrics] or [
        m for m in sweep.final_metrics if m not in sweep.pair_metrics
    ][:MAX_METRICS]
    unknown = [m for m in settings.metrics if m not in sweep.final_metrics + sweep.pair_metrics]
    if unknown:
        raise AnalysisError(
            f"report.metrics names {unknown}, which no trial reported; "
            f"metrics here: {sweep.final_metrics + sweep.pair_metrics}"
        )
    observations = sweep.ok.assign(group=sweep.label(sweep.ok))
    pairs = None
    if sweep.pairs is not None:
        pairs = sweep.pairs.assign(group=sweep.label(sweep.pairs))
    summary = pd.concat(
        [_summarise(sweep, observations, metrics, "trials")]
        + ([_summarise(sweep, pairs, sweep.pair_metrics, "pairs")] if pairs is not None else []),
        ignore_index=True,
    )
    tests = _tests(summary, observations, pairs, settings)
    rankings, problems = _rankings(summary, settings, weights)
    factor_tests = []
    for factor, keys in sweep.grid_factors.items():
        levels = observations[keys[0]] if len(keys) == 1 else _rest_label(observations, keys)
        frame = observations.assign(**{factor: levels})
        factor_tests += [one_way(frame, factor, metric) for metric in metrics]
    return Analysis(
        sweep=sweep,
        settings=settings,
        metrics=metrics,
        pair_metrics=sweep.pair_metrics,
        observations=observations,
        pair_observations=pairs,
        summary=summary,
        tests=tests,
        one_way=_holm_column(pd.DataFrame(factor_tests), "p_anova"),
        rankings=rankings,
        ranking_problems=problems,
    )


def _holm_column(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Adds `<column>_holm`: Holm-corrected over every row of the table."""
    if table.empty:
        return table
    return table.assign(**{f"{column}_holm": holm(table[column])})


def _summarise(sweep: Sweep, frame: pd.DataFrame, metrics: list[str], source: str) -> pd.DataFrame:
    table = aggregate(frame, sweep.group_columns, metrics)
    table.insert(0, "group", sweep.label(table))
    table.insert(0, "source", source)
    return table


def _tests(
    summary: pd.DataFrame,
    observations: pd.DataFrame,
    pairs: pd.DataFrame | None,
    settings: ReportSettings,
) -> pd.DataFrame:
    tables = []
    for (source, metric), rows in summary.groupby(["source", "metric"], sort=False):
        frame = observations if source == "trials" else pairs
        against = None
        if len(rows) > MAX_PAIRWISE_GROUPS:
            against = _ordered(rows, settings.directions.get(metric)).iloc[0]["group"]
        tables.append(pairwise(frame, "group", metric, against=against).assign(source=source))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _ordered(rows: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """Groups best first (by mean, in the declared direction; highest first if none)."""
    return rows.dropna(subset=["mean"]).sort_values("mean", ascending=direction == "lower")


def _rankings(
    summary: pd.DataFrame, settings: ReportSettings, weights: dict[str, float] | None
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    means = summary.pivot_table(index="group", columns="metric", values="mean", sort=False)
    profiles = settings.all_profiles()
    if weights:
        profiles["custom"] = weights
    directed = [m for m in means.columns if m in settings.directions]
    if not profiles and directed:
        profiles["equal weights"] = dict.fromkeys(directed, 1.0)
    rankings, problems = {}, []
    for name, profile in profiles.items():
        try:
            rankings[name] = composite(means, settings, profile)
        except AnalysisError as exc:
            if name == "custom":
                raise
            problems.append(f"profile {name}: {exc}")
    return rankings, problems


def sections(analysis: Analysis, hooks: Sequence[Hook] = ()) -> list[Section]:
    built = [
        _executive_summary(analysis),
        _checks_section(analysis),
        _results_section(analysis),
        _rankings_section(analysis),
        _significance_section(analysis),
        _findings_section(analysis),
        _distributions_section(analysis),
        _curves_section(analysis),
    ]
    for hook in hooks:
        built += hook(analysis.sweep, analysis.settings)
    return [*built, _about_section(analysis)]


def write_report(
    source: str | Path | Sequence[str | Path] | Sweep,
    out: str | Path | None = None,
    settings: ReportSettings | None = None,
    weights: dict[str, float] | None = None,
    hooks: Sequence[Hook] = (),
    defaults: ReportSettings | None = None,
    progress: TextIO | None = None,
    title: str | None = None,
) -> Path:
    """Write report.md, report.html, summary.csv, significance.csv and PNGs; return the folder.

    Settings, later ones winning key by key: `defaults` (an experiment family's),
    the `report:` sections of the specs, `settings` (the command line's).
    `out` defaults to `<sweep>/report`.
    """
    sweep = source if isinstance(source, Sweep) else load(source)
    if out is None:
        if isinstance(source, Sweep) or len(sweep.meta) > 1:
            raise AnalysisError("several sweeps: say where the report goes (out=...)")
        out = Path(source if isinstance(source, str | Path) else source[0]) / "report"
    settings = (defaults or ReportSettings()).merged(sweep.settings()).merged(settings)
    _say(progress, f"{sweep.name}: {len(sweep.ok)} successful trials, {len(sweep.metrics)} steps")
    analysis = analyse(sweep, settings, weights)
    _say(progress, "figures and tables")
    built = sections(analysis, hooks)
    tables = {"summary": analysis.summary, "significance": analysis.tests}
    if not analysis.one_way.empty:
        tables["factors"] = analysis.one_way
    for name, table in analysis.rankings.items():
        tables[f"ranking-{_slug(name)}"] = table.reset_index()
    path = write(Path(out), title or f"Sweep report: {sweep.name}", built, tables)
    _say(progress, f"wrote {path / 'report.html'}")
    return path


def _say(progress: TextIO | None, text: str) -> None:
    if progress is not None:
        progress.write(f"report: {text}\n")
        progress.flush()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


# Sections --------------------------------------------------------------------------------


def _executive_summary(a: Analysis) -> Section:
    sweep = a.sweep
    seeds = a.observations.groupby("group", observed=True).size()
    failed = checks.failed(sweep)
    experiments = sorted({str(m.get("experiment")) for m in sweep.meta.values()})
    lines = [
        f"- **Data**: {len(sweep.ok)} successful trials of {len(sweep.ok) + len(failed)} "
        f"({len(failed)} failed), experiment {', '.join(experiments)}; {len(a.groups)} groups "
        f"({', '.join(sweep.group_columns)}), {seeds.min()}-{seeds.max()} seeds each."
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
                f"- **Most reproducible**: **{best}** (best on "
                f"{', '.join(a.settings.criteria['reproducibility'])})."
            )
    for name, table in a.rankings.items():
        lines.append(
            f"- **Ranking, {name}**: 1. {table.index[0]} (score {fmt(table['score'].iloc[0])})."
        )
    undirected = [m for m in a.metrics + a.pair_metrics if not a.direction(m)]
    if undirected:
        lines.append(
            f"- No direction declared for {', '.join(undirected)}: not ranked "
            "(add `report: {directions: {metric: lower|higher}}` to the spec)."
        )
    significant = int((a.tests["p_welch_holm"] < ALPHA).sum()) if len(a.tests) else 0
    lines.append(
        f"- **Significance**: {significant} of {len(a.tests)} pairwise comparisons "
        f"differ at p < {ALPHA} (Welch, Holm-corrected per metric)."
    )
    return Section("Executive summary").add("\n".join(lines))


def _best_line(a: Analysis, source: str, metric: str) -> str:
    rows = a.summary[(a.summary["source"] == source) & (a.summary["metric"] == metric)]
    ordered = _ordered(rows, a.direction(metric))
    if ordered.empty:
        return f"- **{metric}**: no finite values."
    best = ordered.iloc[0]
    where = ", over pairs of seeds" if source == "pairs" else ""
    text = (
        f"- **{metric}** ({a.direction(metric)} is better{where}): best **{best['group']}** "
        f"{fmt(best['mean'])} {_interval(best)}, n = {best['n']}"
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
    p = test["p_welch_holm"].iloc[0] if len(test) else float("nan")
    if p != p:
        verdict = "no test (a group has n < 2)"
    else:
        verdict = "significantly better" if p < ALPHA else "not significantly different"
        verdict += f" (Welch p = {fmt(p)}, Holm)"
    return text + f"; next {second['group']} {fmt(second['mean'])}: {verdict}."


def _interval(row: pd.Series) -> str:
    return "(no interval: n = 1)" if row["n"] < 2 else _interval_text(row["ci_low"], row["ci_high"])


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
        f"- Trials whose final {' / '.join(losses) or 'loss'} is not below its first value: "
        f"{stuck['trial_id'].nunique() if len(stuck) else 0}"
        + ("" if losses else " (no per-step loss reported: not checked)")
        + ".",
        f"- Groups with fewer successful seeds than asked: {len(short)}.",
    ]
    section.add("\n".join(lines))
    for title, table in (("Failed trials", failed), ("NaN / infinite values", bad),
                         ("Not converged", stuck), ("Groups short of seeds", short)):  # fmt: skip
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
                plots.means(dict(list(panels.items())[:9]), "Mean and 95% interval per group"),
                "Each group's mean with its 95% t-interval across seeds.",
            )
        )
    return section


def _mean_std(mean: float, std: float, n: int) -> str:
    return f"{fmt(mean)} ({n})" if n < 2 else f"{fmt(mean)} ± {fmt(std)} ({n})"


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
        profile = a.settings.all_profiles().get(name)
        weights = ", ".join(f"{k} {v:g}" for k, v in profile.items()) if profile else ""
        section.add(f"**{name}**" + (f" ({weights})" if weights else ""), table.reset_index())
    scores = pd.DataFrame({name: t["score"] for name, t in a.rankings.items()})
    scores = scores.loc[next(iter(a.rankings.values())).index]
    section.add(Plot("rankings", plots.scores(scores, "Composite score per group and profile")))
    return section


def _significance_section(a: Analysis) -> Section:
    section = Section("Significance")
    section.add(
        f"Pairwise: Welch's t-test with the 95% interval of the difference (A - B), "
        f"Mann-Whitney U, Hedges' g; p-values Holm-corrected over the pairs of each metric. "
        f"With more than {MAX_PAIRWISE_GROUPS} groups each group is tested against the best "
        "only. n < 2 is not tested; n < 5 is flagged. All rows: `significance.csv`."
    )
    if a.pair_metrics:
        section.add(
            "Pair metrics (source pairs): the pairs of one group share trials, so they are not "
            "independent and these tests overstate certainty; read them as descriptive."
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
        if rows["p_mwu"].isna().all():
            section.add(f"**{metric}** ({source}): no group has n >= 2, nothing to test.")
            continue
        shown = rows.sort_values("p_welch_holm", na_position="last").head(MAX_ROWS)
        more = f", the {MAX_ROWS} smallest p of {len(rows)}" if len(rows) > MAX_ROWS else ""
        section.add(f"**{metric}** ({source}{more})", _test_table(shown))
    return section


def _test_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The pairwise rows as a reader wants them: who, n, difference with interval, p, g."""
    return pd.DataFrame(
        {
            "A": rows["group_a"],
            "B": rows["group_b"],
            "n": [f"{a}/{b}" for a, b in zip(rows["n_a"], rows["n_b"], strict=True)],
            "A - B": rows["diff"],
            "95% interval": [
                _interval_text(lo, hi)
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "p Welch (Holm)": rows["p_welch_holm"],
            "p Mann-Whitney (Holm)": rows["p_mwu_holm"],
            "Hedges' g": rows["hedges_g"],
            "note": rows["note"],
        }
    )


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
    tests = a.tests[a.tests["source"] == "trials"] if len(a.tests) else pd.DataFrame()
    supported = tests[tests["p_welch_holm"] < ALPHA] if len(tests) else tests
    if supported.empty:
        return section.add(
            f"No pair of groups differs at p < {ALPHA} after Holm correction ({len(tests)} "
            f"comparisons over {len(a.metrics)} metrics). The rankings above order means that "
            "may differ by chance; more seeds would narrow the intervals."
        )
    lines = []
    for row in supported.sort_values("p_welch_holm").head(MAX_ROWS).itertuples():
        low, high = (row.group_a, row.group_b) if row.diff < 0 else (row.group_b, row.group_a)
        unconfirmed = (
            "" if row.p_mwu_holm < ALPHA else "; the rank test does not confirm it at this n"
        )
        lines.append(
            f"- **{low}** has lower {row.metric} than **{high}**: {fmt(row.mean_a)} vs "
            f"{fmt(row.mean_b)} (A - B = {fmt(row.diff)} [{fmt(row.ci_low)}, {fmt(row.ci_high)}]), "
            f"Welch p = {fmt(row.p_welch_holm)} (Holm), Hedges' g = {fmt(row.hedges_g)}, "
            f"n = {row.n_a}/{row.n_b}{unconfirmed}."
        )
    more = len(supported) - MAX_ROWS
    section.add(f"Differences that hold at p < {ALPHA} after Holm correction:", "\n".join(lines))
    return section.add(f"... and {more} more in `significance.csv`." if more > 0 else "")


def _distributions_section(a: Analysis) -> Section:
    section = Section("Distributions")
    section.add(
        "Histograms per group with the fitted normal (maximum likelihood; μ and σ in the "
        "legend), and a Shapiro-Wilk test per group (needs n ≥ 3)."
    )
    for source, frame, metrics in (("trials", a.observations, a.metrics),
                                    ("pairs", a.pair_observations, a.pair_metrics)):  # fmt: skip
        for metric in metrics:
            values = {
                g: rows[metric].to_numpy(dtype=float)
                for g, rows in frame.groupby("group", sort=False)
            }
            values = {g: values[g] for g in a.groups if g in values}
            name = f"distribution-{_slug(metric)}" + ("-pairs" if source == "pairs" else "")
            section.add(Plot(name, plots.distribution(values, metric, a.settings.unit(metric))))
            table = normal_fits(frame, ["group"], metric)
            section.add(table.drop(columns="metric").head(MAX_ROWS * 2))
    return section


def _curves_section(a: Analysis) -> Section:
    section = Section("Curves")
    sweep = a.sweep
    step_metrics = [m for m in a.settings.metrics if m in sweep.step_metrics] or sweep.step_metrics[
        :MAX_METRICS
    ]
    if step_metrics:
        section.add("Per-step metrics: mean across seeds with its 95% t-interval as a band.")
        steps = sweep.steps()
        for metric in step_metrics:
            table = aggregate(steps, ["group", "step"], [metric]).dropna(subset=["mean"])
            section.add(
                Plot(
                    f"curve-{_slug(metric)}",
                    plots.band(table, "step", metric, a.settings.unit(metric)),
                )
            )
    numeric = [
        f for f in sweep.factors
        if pd.api.types.is_numeric_dtype(a.observations[f]) and a.observations[f].nunique() >= 3
    ]  # fmt: skip
    for x in numeric:
        others = [f for f in sweep.group_columns if f != x]
        frame = a.observations.assign(group=_rest_label(a.observations, others))
        for metric in a.metrics:
            table = aggregate(frame, ["group", x], [metric]).dropna(subset=["mean"])
            units = a.settings.unit(metric), a.settings.unit(x)
            section.add(
                Plot(f"{_slug(metric)}-vs-{_slug(x)}", plots.band(table, x, metric, *units))
            )
    if len(section.blocks) == 0:
        section.add("No per-step metrics and no numeric parameter with three or more values.")
    return section


def _rest_label(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not columns:
        return pd.Series("", index=frame.index)
    return (
        frame[columns]
        .astype(str)
        .apply(lambda r: " ".join(f"{c}={v}" for c, v in r.items()), axis=1)
    )


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
        "- Intervals are 95% t-intervals over seeds; n is the number of successful seeds "
        "(or pairs of seeds) behind each number.\n"
        "- Files: `summary.csv` (one row per group and metric), `significance.csv` (every "
        "comparison), `factors.csv`, `ranking-*.csv`, and the PNG figures."
    )


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
            rows.append({"metric": metric, "sweep": name, "n": len(values),
                         "mean ± std": f"{fmt(values.mean())} ± {fmt(values.std())}",
                         "best group": best, "best mean": means[best]})  # fmt: skip
    return [section.add(pd.DataFrame(rows))]


def plot_metric(
    sweep: Sweep,
    metric: str,
    x: str | None = None,
    by: str | None = None,
    settings: ReportSettings | None = None,
) -> Plot:
    """One figure: `metric` per step (a per-step metric), against parameter `x`, or its
    distribution per group; lines or histograms per value of `by` (default: every group)."""
    settings = sweep.settings().merged(settings)
    known = sweep.final_metrics + sweep.step_metrics
    if metric not in known:
        raise AnalysisError(f"no metric {metric!r} in {sweep.name}; metrics: {sorted(set(known))}")
    for option, column in (("--x", x), ("--by", by)):
        if column is not None and column != "step" and column not in sweep.config_columns:
            raise AnalysisError(
                f"{option} {column}: not a parameter of {sweep.name}; "
                f"parameters: {sweep.config_columns}"
            )
    if x is None and metric in sweep.step_metrics:
        x = "step"
    per_step = x == "step"
    if per_step and metric not in sweep.step_metrics:
        raise AnalysisError(f"{metric!r} was not reported per step; plot it against a parameter")
    frame = sweep.steps() if per_step else sweep.ok
    others = [by] if by else [c for c in sweep.group_columns if c != x]
    frame = frame.assign(group=_rest_label(frame, others))
    unit = settings.unit(metric)
    if x is None:
        values = {g: rows[metric].to_numpy(dtype=float) for g, rows in frame.groupby("group")}
        return Plot(f"distribution-{_slug(metric)}", plots.distribution(values, metric, unit))
    table = aggregate(frame, ["group", x], [metric]).dropna(subset=["mean"])
    figure = plots.band(table, x, metric, unit, settings.unit(x))
    return Plot(f"{_slug(metric)}-vs-{_slug(x)}", figure)
