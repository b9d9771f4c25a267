"""The LM evaluation family's part of a report (SCIENCE.md section 4): minimal-pair
accuracies as bars with intervals, loss by position as curves, slopes, and TTT
against the baseline, paired by model. Shown by `sweep report` for one sweep and by
`sweep compare` for a baseline sweep beside a TTT sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis import plots
from analysis.aggregates import aggregate, curve
from analysis.document import Plot, Section, fmt
from analysis.settings import ReportSettings
from analysis.significance import holm
from analysis.sweep import Sweep

TASKS = ("lexical", "syntactic", "story")
ACCURACIES = [f"{task}_acc{kind}" for task in TASKS for kind in ("", "_norm")]
LOSSES = ["long_loss", "early_loss", "loss_slope"]
REPORT = ReportSettings(
    metrics=[*ACCURACIES, *LOSSES],
    directions={**dict.fromkeys(ACCURACIES, "higher"), **dict.fromkeys(LOSSES, "lower")},
    criteria={"benchmarks": ACCURACIES, "long_context": ["long_loss"]},
    units={"long_loss": "nats", "early_loss": "nats", "loss_slope": "nats per 1k positions"},
)


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("LM evaluation: minimal pairs and loss by position")
    trials = sweep.ok.assign(group=sweep.label(sweep.ok))
    if "long_loss" not in trials:
        return [section.add("No LM evaluation metrics here.")]
    accuracies = [m for m in ACCURACIES if m in trials]
    table = _with_pair_intervals(aggregate(trials, ["group"], accuracies), trials)
    section.add(
        "Minimal-pair accuracy: the share of pairs whose correct item the model scores higher "
        "(ties count 1/2; chance 0.5), summed log-likelihood and per-character mean (`_norm`). "
        "Bars: mean over seeds with its 95% t-interval (cut at 0 and 1); with one seed, the "
        f"Wilson interval over that trial's pairs. Pairs per task: {_pairs(trials)}.",
        Plot(
            "lmeval-benchmarks",
            plots.bars(table, "Minimal-pair accuracy", "accuracy", 0.5, (0.0, 1.0)),
        ),
    )
    steps = sweep.steps
    if "position_loss" in steps:
        losses = curve(steps, "step", ["group"], "position_loss").rename(
            columns={"step": "position"}
        )
        figure = plots.band(losses, "position", "position_loss", "nats", "characters")
        section.add(
            "Loss by position over long documents (mean over documents per bin, then mean and "
            "95% interval over seeds).",
            Plot("lmeval-loss-by-position", figure),
        )
    section.add(
        "Slope of the loss from `slope_from` on (least squares over the binned mean curve, "
        "nats per 1,000 positions; negative: the loss falls as the model reads on). "
        "'bootstrap' is the median trial's interval from resampling documents.",
        _slopes(trials),
    )
    paired = ttt_vs_baseline(trials, sweep.config_columns, [*LOSSES, *accuracies])
    if not paired.empty:
        section.add(
            "TTT against the baseline, paired by model (same seed and model keys): "
            "difference TTT - baseline, 95% t-interval of the paired differences, p from the "
            "paired t-test, Holm-corrected over the table.",
            paired,
        )
    return [section]


def ttt_vs_baseline(trials: pd.DataFrame, config: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per TTT group and metric: paired differences TTT - baseline over models."""
    if "variant" not in trials or not {"baseline", "ttt"} <= set(trials["variant"]):
        return pd.DataFrame()
    keys = [c for c in config if c == "seed" or c.startswith("model_")]
    baseline = trials[trials["variant"] == "baseline"].set_index(keys)
    rows = []
    for group, ttt in trials[trials["variant"] == "ttt"].groupby("group", sort=True):
        both = ttt.set_index(keys).join(baseline, rsuffix="_baseline", how="inner")
        for metric in metrics:
            diff = (both[metric] - both[f"{metric}_baseline"]).dropna().to_numpy()
            rows.append({"ttt": group, "metric": metric, "n models": len(diff), **_paired(diff)})
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm(table.pop("p"))
    return table


def _paired(diff: np.ndarray) -> dict[str, object]:
    if len(diff) < 2 or np.ptp(diff) == 0:
        return {
            "mean diff": float(np.mean(diff)) if len(diff) else np.nan,
            "95% CI": "",
            "p": np.nan,
        }
    test = stats.ttest_1samp(diff, 0.0)
    interval = test.confidence_interval(0.95)
    return {
        "mean diff": float(np.mean(diff)),
        "95% CI": f"[{fmt(interval.low)}, {fmt(interval.high)}]",
        "p": float(test.pvalue),
    }


def _with_pair_intervals(table: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Where a group has one seed, its interval is the Wilson interval over its pairs."""
    single = table["n"] == 1
    for index in table.index[single]:
        row = trials[trials["group"] == table.at[index, "group"]].iloc[0]
        metric = table.at[index, "metric"]
        table.loc[index, ["ci_low", "ci_high"]] = row[f"{metric}_low"], row[f"{metric}_high"]
    return table


def _slopes(trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group, frame in trials.groupby("group", sort=True):
        row = {"group": group, "n": len(frame)}
        for metric in ("loss_slope", "long_loss", "early_loss"):
            values = frame[metric].dropna()
            half = (
                stats.t.ppf(0.975, len(values) - 1) * values.std() / np.sqrt(len(values))
                if len(values) > 1
                else np.nan
            )
            row[metric] = (
                f"{fmt(values.mean())} ± {fmt(half)}" if len(values) > 1 else fmt(values.mean())
            )
        median = frame.iloc[
            (frame["loss_slope"] - frame["loss_slope"].median()).abs().argsort().iloc[0]
        ]
        row["bootstrap"] = f"[{fmt(median['loss_slope_low'])}, {fmt(median['loss_slope_high'])}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _pairs(trials: pd.DataFrame) -> str:
    counts = [
        f"{task} {int(trials[f'{task}_pairs'].max())}"
        for task in TASKS
        if f"{task}_pairs" in trials
    ]
    return ", ".join(counts) or "unknown"
