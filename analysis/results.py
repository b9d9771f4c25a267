"""The numbers of a report, computed once: `analyse(sweep, settings)` -> `Analysis`.

Aggregates per group and metric, pairwise and one-way tests, rankings. The
report's sections (analysis.sections) only render what is here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import plots
from analysis.aggregates import aggregate
from analysis.errors import AnalysisError
from analysis.pairs import pairwise_models
from analysis.ranking import composite
from analysis.settings import ReportSettings
from analysis.significance import holm, one_way, pairwise
from analysis.sweep import Sweep, label_rows

MAX_METRICS = 8  # metrics analysed when the settings name none

MAX_PAIRWISE_GROUPS = 12  # above this, each group is tested against the best one only
WELCH = "Welch"  # the test that decides for a metric of trials (one value per seed)
JACKKNIFE = "jackknife over models"  # and for a metric of pairs of seeds (analysis.pairs)


@dataclass
class Analysis:
    """The numbers of a report, computed once."""

    sweep: Sweep
    settings: ReportSettings
    metrics: list[str]  # final metrics analysed
    left_out: list[str]  # final metrics not analysed (settings, or more than MAX_METRICS)
    pair_metrics: list[str]
    observations: pd.DataFrame  # successful trials, with their `group` label
    pair_observations: pd.DataFrame | None
    summary: pd.DataFrame  # aggregate per group and metric (`source`: trials or pairs)
    tests: pd.DataFrame  # pairwise comparisons, Holm-corrected per metric
    one_way: pd.DataFrame
    rankings: dict[str, pd.DataFrame]  # profile -> composite scores
    profiles: dict[str, dict[str, float]]  # profile -> its weights
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
    if sweep.ok.empty:
        raise AnalysisError(f"{sweep.name}: no trial succeeded; see sweep status for the errors")
    unknown = [m for m in settings.metrics if m not in sweep.final_metrics + sweep.pair_metrics]
    if unknown:
        raise AnalysisError(
            f"report.metrics names {unknown}, which no trial reported; "
            f"metrics here: {sweep.final_metrics + sweep.pair_metrics}"
        )
    candidates = [m for m in sweep.final_metrics if m not in sweep.pair_metrics]
    if settings.metrics:
        metrics = [m for m in settings.metrics if m in candidates]
    else:
        metrics = candidates[:MAX_METRICS]
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
    rankings, profiles, problems = _rankings(summary, settings, weights)
    factor_tests = []
    for factor, keys in sweep.grid_factors.items():
        frame = observations.assign(**{factor: label_rows(observations, keys)})
        frame = frame[observations[keys].notna().any(axis=1)]  # another sweep's: not a level
        factor_tests += [one_way(frame, factor, metric) for metric in metrics]
    return Analysis(
        sweep=sweep,
        settings=settings,
        metrics=metrics,
        left_out=[m for m in candidates if m not in metrics],
        pair_metrics=sweep.pair_metrics,
        observations=observations,
        pair_observations=pairs,
        summary=summary,
        tests=tests,
        one_way=_holm_column(pd.DataFrame(factor_tests), "p_anova"),
        rankings=rankings,
        profiles=profiles,
        ranking_problems=problems,
    )


def _holm_column(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Adds `<column>_holm`: Holm-corrected over every row of the table."""
    if table.empty:
        return table
    return table.assign(**{f"{column}_holm": holm(table[column])})


def _summarise(sweep: Sweep, frame: pd.DataFrame, metrics: list[str], source: str) -> pd.DataFrame:
    absent = [c for c in sweep.group_columns if c not in frame]  # pairs of a stacked sweep
    table = aggregate(frame.assign(**dict.fromkeys(absent)), sweep.group_columns, metrics)
    table.insert(0, "group", sweep.label(table))
    table.insert(0, "source", source)
    return table


def _tests(
    summary: pd.DataFrame,
    observations: pd.DataFrame,
    pairs: pd.DataFrame | None,
    settings: ReportSettings,
) -> pd.DataFrame:
    """Pairwise comparisons per metric. `test` names the test that decides, `p` and
    `p_holm` (Holm over the comparisons of a metric) are its p-values: Welch for a
    metric of trials; for a pair metric the model-level jackknife of analysis.pairs,
    since pairs sharing a model are not independent (Welch over the pairs is kept as
    `p_welch_pairs`, for reference only)."""
    tables = []
    for (source, metric), rows in summary.groupby(["source", "metric"], sort=False):
        against = None
        if len(rows) > MAX_PAIRWISE_GROUPS:
            against = best_first(rows, settings.directions.get(metric)).iloc[0]["group"]
        if source == "trials":
            table = pairwise(observations, "group", metric, against=against)
            if not table.empty:
                table = table.assign(test=WELCH, p=table["p_welch"], p_holm=table["p_welch_holm"])
        else:
            table = pairwise_models(pairs, "group", metric, against=against)
            table = table.assign(test=JACKKNIFE) if not table.empty else table
        tables.append(table.assign(source=source))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def best_first(rows: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """Groups best first (by mean, in the declared direction; highest first if none)."""
    return rows.dropna(subset=["mean"]).sort_values("mean", ascending=direction == "lower")


def _rankings(
    summary: pd.DataFrame, settings: ReportSettings, weights: dict[str, float] | None
) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, float]], list[str]]:
    """Composite scores per profile, the profiles' weights, and why any profile was left out."""
    # one mean per group and metric; a metric in both tables is ranked by its pairs
    latest = summary.drop_duplicates(["group", "metric"], keep="last")
    means = latest.pivot(index="group", columns="metric", values="mean")
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
    return rankings, {name: profiles[name] for name in rankings}, problems
