"""The unlearning family's part of a report (SCIENCE.md section 3): the seed notebook's
view, distributions of accuracy and parameter change for soft vs hard targets with
fitted normals, overlaid, and whether they differ.

The notebook pooled every architecture and algorithm into one soft and one hard
list. Pooling mixes strata whose means differ, so the tests are run pooled (as the
notebook did) and within each stratum (the other factors fixed), Holm-corrected
together. The retrained-without-the-forget-set models are the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import plots
from analysis.aggregates import aggregate
from analysis.document import Plot, Section, fmt
from analysis.settings import ReportSettings
from analysis.significance import compare_two, holm
from analysis.sweep import Sweep, label_rows

TARGET_KEYS = ["targets", "temperature", "smoothing"]
HARD = "hard"
REFERENCE = "retrain"
COMPARED = ["forget_acc", "test_acc", "param_change", "param_change_rel"]
REPORT = ReportSettings(
    metrics=["forget_acc", "retain_acc", "test_acc", "test_forget_class_acc", "param_change",
             "param_change_rel", "unlearn_time_s"],
    directions={"forget_acc": "lower", "retain_acc": "higher", "test_acc": "higher",
                "test_forget_class_acc": "lower", "param_change": "lower",
                "param_change_rel": "lower", "unlearn_time_s": "lower"},
    criteria={"forgetting": ["forget_acc"], "utility": ["retain_acc", "test_acc"]},
    units={"unlearn_time_s": "s"},
)  # fmt: skip


def soft_vs_hard(trials: pd.DataFrame, strata: list[str], metrics: list[str]) -> pd.DataFrame:
    """Each kind of soft targets against hard, per metric: pooled over `strata` and within
    each stratum. Welch (interval of soft - hard), Mann-Whitney U, Hedges' g, Holm over all
    rows. `trials` needs a `targets_label` column (hard, soft temperature=2, ...)."""
    rows = []
    scopes = [("all, pooled", trials)]
    if strata:
        scopes += [
            (" ".join(f"{k}={v}" for k, v in zip(strata, key, strict=True)), group)
            for key, group in trials.groupby(strata, sort=True, dropna=False)
        ]
    for metric in metrics:
        for scope, frame in scopes:
            hard = frame.loc[frame["targets_label"] == HARD, metric].dropna().to_numpy()
            for label, soft in frame[frame["targets_label"] != HARD].groupby("targets_label"):
                values = soft[metric].dropna().to_numpy()
                rows.append(
                    {"metric": metric, "scope": scope, "soft": label, "n_soft": len(values),
                     "n_hard": len(hard), "mean_soft": _mean(values), "mean_hard": _mean(hard),
                     **compare_two(values, hard)}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_welch_holm"] = holm(table["p_welch"])
    return table


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("Unlearning: soft vs hard targets")
    trials = sweep.ok
    if "targets" not in trials or not (trials["targets"] == HARD).any():
        return [section.add("No trials with hard targets here: nothing to compare against.")]
    reference = trials[trials["algorithm"] == REFERENCE] if "algorithm" in trials else trials[:0]
    unlearned = trials.drop(reference.index).dropna(subset=["targets"])
    keys = [k for k in TARGET_KEYS if k in unlearned and unlearned[k].nunique() > 0]
    unlearned = unlearned.assign(
        targets_label=label_rows(unlearned, keys).str.replace("targets=", "")
    )
    strata = [f for f in sweep.factors if f not in TARGET_KEYS and unlearned[f].nunique() > 1]
    metrics = [m for m in COMPARED if m in unlearned]
    section.add(
        f"{len(unlearned)} unlearned models ({_counts(unlearned['targets_label'])}) and "
        f"{len(reference)} retrained without the forget set. Each trial trains its own original "
        "model from its seed, so soft and hard runs of one seed start from the same model."
    )
    for metric in metrics:
        values = {
            label: group[metric].to_numpy(dtype=float)
            for label, group in unlearned.groupby("targets_label", sort=True)
        }
        if not reference.empty:
            values[REFERENCE] = reference[metric].to_numpy(dtype=float)
        figure = plots.distribution(values, metric, settings.units.get(metric, ""))
        section.add(Plot(f"unlearning-{metric}", figure))
    tests = soft_vs_hard(unlearned, strata, metrics)
    if tests.empty:
        return [section.add("Only one kind of targets: no test.")]
    section.add(
        "Soft against hard, per metric: pooled over every other factor (the notebook's view) "
        "and within each stratum. diff = mean(soft) - mean(hard) with Welch's 95% interval; "
        "p values Holm-corrected over the whole table.",
        _shown(tests),
        _verdict(tests),
    )
    if not reference.empty:
        by = [s for s in strata if s in reference and s != "algorithm"]
        table = aggregate(reference, by or ["algorithm"], metrics)
        section.add(
            "Reference: models retrained from the same initial weights without the forget set "
            "(mean over seeds, 95% t-interval). An unlearned model that forgets much more than "
            "these has damaged itself rather than unlearned.",
            table.assign(interval=[_interval(r) for r in table.itertuples()])[
                [*(by or ["algorithm"]), "metric", "n", "mean", "interval"]
            ],
        )
    return [section]


def _shown(tests: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": tests["metric"],
            "scope": tests["scope"],
            "soft": tests["soft"],
            "n soft/hard": [
                f"{a}/{b}" for a, b in zip(tests["n_soft"], tests["n_hard"], strict=True)
            ],
            "mean soft": tests["mean_soft"],
            "mean hard": tests["mean_hard"],
            "diff [95% CI]": [
                f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]"
                for d, lo, hi in zip(tests["diff"], tests["ci_low"], tests["ci_high"], strict=True)
            ],
            "Hedges g": tests["hedges_g"],
            "p (Holm)": tests["p_welch_holm"],
            "p MWU": tests["p_mwu"],
        }
    )


def _verdict(tests: pd.DataFrame) -> str:
    significant = tests[tests["p_welch_holm"] < 0.05]
    if significant.empty:
        return (
            "**No difference between soft and hard targets survives the correction** "
            f"({len(tests)} tests)."
        )
    lines = [
        f"- {r.metric} ({r.scope}): {r.soft} - hard = {fmt(r.diff)} "
        f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}], Holm p = {fmt(r.p_welch_holm)}"
        for r in significant.itertuples()
    ]
    return (
        f"Differences that survive the Holm correction ({len(significant)} of {len(tests)}):\n"
        + "\n".join(lines)
    )


def _counts(labels: pd.Series) -> str:
    return ", ".join(f"{n} {label}" for label, n in labels.value_counts().sort_index().items())


def _interval(row: object) -> str:
    return f"[{fmt(row.ci_low)}, {fmt(row.ci_high)}]"


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else np.nan
