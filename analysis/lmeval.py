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
from analysis.significance import holm, paired
from analysis.sweep import Sweep, label_rows

TASKS = ("lexical", "syntactic", "story")  # as experiments.lm.pairs builds them
ACCURACIES = [f"{task}_acc{kind}" for task in TASKS for kind in ("", "_norm")]
LOSSES = ["long_loss", "early_loss", "loss_slope"]
# Lexical and syntactic items have equal lengths (summed = normalised), and early_loss is
# scored before TTT has read anything: the paired table leaves them out.
PAIRED = ["long_loss", "loss_slope", "lexical_acc", "syntactic_acc", "story_acc", "story_acc_norm"]
ARM_KEYS = ("sweep", "variant", "ttt_lr", "ttt_steps")  # what makes TTT differ from its baseline
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
    if "position_loss" in sweep.steps:
        section.add(
            "Loss by position over long documents (mean over documents per bin of positions, "
            "then mean and 95% interval over seeds), and TTT's change of it against the "
            "baseline on the same documents with the same model (below 0: TTT is better).",
            *_position_plots(sweep),
        )
    section.add(
        "Slope of the loss from `slope_from` on (least squares over the binned mean curve, "
        "nats per 1,000 positions; negative: the loss falls as the model reads on). The "
        "documents differ in difficulty along their length, so compare slopes between "
        "variants, not with 0. 'bootstrap' is the median trial's interval from resampling "
        "documents.",
        _slopes(trials),
    )
    paired, note = ttt_vs_baseline(trials, sweep.config_columns, [m for m in PAIRED if m in trials])
    if not paired.empty:
        section.add(
            "TTT against the baseline, paired by model (every config key but the variant's "
            "the same): difference TTT - baseline, 95% t-interval of the paired differences, "
            "p from the paired t-test, Holm-corrected over the table.",
            paired,
        )
    return [section.add(note)]


def ttt_vs_baseline(
    trials: pd.DataFrame, config: list[str], metrics: list[str]
) -> tuple[pd.DataFrame, str]:
    """Per TTT group and metric, the paired differences TTT - baseline over models whose
    config matches in every key but ARM_KEYS; and a note on what could not be paired."""
    if "variant" not in trials:
        return pd.DataFrame(), ""
    trials = trials.assign(variant=trials["variant"].fillna("baseline"))
    keys = [c for c in config if c not in ARM_KEYS and c in trials]
    baseline = trials[trials["variant"] == "baseline"]
    if baseline.empty or (trials["variant"] != "ttt").all():
        return pd.DataFrame(), ""
    if baseline.duplicated(keys).any():
        return pd.DataFrame(), (
            "TTT is not compared with a baseline here: several baseline trials share a model "
            f"and settings ({', '.join(keys)}), so a TTT trial has no single partner."
        )
    rows, unmatched = [], 0
    for group, ttt in trials[trials["variant"] == "ttt"].groupby("group", sort=True):
        both = ttt.merge(baseline, on=keys, suffixes=("", "_baseline"))
        unmatched += len(ttt) - len(both)
        for metric in metrics:
            diff = (both[metric] - both[f"{metric}_baseline"]).dropna().to_numpy()
            rows.append({"ttt": group, "metric": metric, "n models": len(diff), **_paired(diff)})
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm(table.pop("p"))
    note = f"{unmatched} TTT trial(s) had no baseline with the same config." if unmatched else ""
    return table, note


def _paired(diff: np.ndarray) -> dict[str, object]:
    test = paired(diff)
    interval = "" if np.isnan(test["p"]) else f"[{fmt(test['ci_low'])}, {fmt(test['ci_high'])}]"
    return {"mean diff": test["diff"], "95% CI": interval, "p": test["p"]}


def _position_plots(sweep: Sweep) -> list[Plot]:
    """One panel per model (the factors that are not the variant's): the loss curve of
    each variant, and each TTT variant's paired change against the baseline."""
    steps = sweep.steps.rename(columns={"step": "position"})
    arms = [f for f in sweep.factors if f in ARM_KEYS]
    strata = [f for f in sweep.factors if f not in ARM_KEYS]
    steps = steps.assign(arm=label_rows(steps, arms) if arms else steps["group"])
    panels, changes, titles = [], [], []
    for key, frame in steps.groupby(strata, sort=True) if strata else [((), steps)]:
        titles.append(" ".join(map(str, key if isinstance(key, tuple) else (key,))) or "all")
        panels.append(
            (curve(frame, "position", ["arm"], "position_loss"), "position", "position_loss")
        )
        change = _change(frame, [c for c in sweep.config_columns if c not in ARM_KEYS])
        if not change.empty:
            changes.append((curve(change, "position", ["arm"], "change"), "position", "change"))
    plots_ = [Plot("lmeval-loss-by-position", plots.bands(panels, "Loss by position", titles))]
    if len(changes) == len(panels):
        title = "TTT - baseline loss by position"
        plots_.append(Plot("lmeval-ttt-change-by-position", plots.bands(changes, title, titles)))
    return plots_


def _change(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per TTT row: its position loss minus the baseline's at the same position and config."""
    if "variant" not in frame:
        return pd.DataFrame()
    variant = frame["variant"].fillna("baseline")
    keys = [k for k in keys if k in frame] + ["position"]
    base = frame[variant == "baseline"][[*keys, "position_loss"]]
    if base.empty or base.duplicated(keys).any():
        return pd.DataFrame()
    both = frame[variant == "ttt"].merge(base, on=keys, suffixes=("", "_baseline"))
    return both.assign(change=both["position_loss"] - both["position_loss_baseline"])


def _with_pair_intervals(table: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Where a group has one seed, its interval is the Wilson interval over its pairs."""
    for index in table.index[table["n"] == 1]:
        row = trials[trials["group"] == table.at[index, "group"]].iloc[0]
        metric = table.at[index, "metric"]
        table.loc[index, ["ci_low", "ci_high"]] = row[f"{metric}_low"], row[f"{metric}_high"]
    return table


def _slopes(trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group, frame in trials.groupby("group", sort=True):
        row = {"group": group, "n": len(frame)}
        for metric in ("loss_slope", "long_loss", "early_loss"):
            row[metric] = _mean_interval(frame[metric].dropna())
        slopes = frame.dropna(subset=["loss_slope"])
        if not slopes.empty:
            median = slopes.loc[
                (slopes["loss_slope"] - slopes["loss_slope"].median()).abs().idxmin()
            ]
            row["bootstrap"] = (
                f"[{fmt(median['loss_slope_low'])}, {fmt(median['loss_slope_high'])}]"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_interval(values: pd.Series) -> str:
    if len(values) < 2:
        return fmt(values.mean())
    half = stats.t.ppf(0.975, len(values) - 1) * values.std() / np.sqrt(len(values))
    return f"{fmt(values.mean())} ± {fmt(half)}"


def _pairs(trials: pd.DataFrame) -> str:
    counts = [
        f"{task} {int(trials[f'{task}_pairs'].max())}"
        for task in TASKS
        if f"{task}_pairs" in trials
    ]
    return ", ".join(counts) or "unknown"
