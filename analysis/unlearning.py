"""The unlearning family's part of a report (SCIENCE.md section 3): the seed notebook's
view, distributions of accuracy and parameter change for soft vs hard targets with
fitted normals, overlaid, and whether they differ.

The notebook pooled every architecture and algorithm into one soft and one hard
list. Pooling mixes strata whose means differ, so the pooled Welch tests are shown
as the notebook's view only; the verdict comes from tests within each stratum (the
other factors fixed), paired by seed (a seed's soft and hard runs unlearn the same
trained model), Holm-corrected together. Models retrained without the forget set
are the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import plots
from analysis.aggregates import aggregate
from analysis.document import Plot, Section, fmt
from analysis.settings import ReportSettings
from analysis.significance import compare_two, holm, paired
from analysis.sweep import Sweep

TARGET_KEYS = ("targets", "temperature", "smoothing")
HARD, REFERENCE = "hard", "retrain"
PLOTTED = ["forget_acc", "test_acc", "param_change", "param_change_rel"]
COMPARED = ["forget_acc", "retain_acc", "test_acc", "test_forget_class_acc", "param_change",
            "param_change_rel", "steps_taken"]  # fmt: skip
REPORT = ReportSettings(
    metrics=[*COMPARED, "unlearn_time_s"],
    directions={"forget_acc": "lower", "retain_acc": "higher", "test_acc": "higher",
                "test_forget_class_acc": "lower", "param_change": "lower",
                "param_change_rel": "lower", "steps_taken": "lower", "unlearn_time_s": "lower"},
    criteria={"forgetting": ["forget_acc"], "utility": ["retain_acc", "test_acc"]},
    units={"unlearn_time_s": "s"},
)  # fmt: skip


def targets_label(row: pd.Series) -> str:
    """hard, soft T=2, smooth 0.1: the kind of targets and its one setting."""
    if row["targets"] == "soft":
        return f"soft T={row['temperature']:g}"
    if row["targets"] == "smooth":
        return f"smooth {row['smoothing']:g}"
    return str(row["targets"])


def soft_vs_hard(trials: pd.DataFrame, strata: list[str], metrics: list[str]) -> pd.DataFrame:
    """Each kind of soft targets against hard, per metric: pooled (Welch, the notebook's
    view) and within each stratum paired by seed (paired t-test on soft - hard), the
    paired p values Holm-corrected together. `trials` needs a `label` column."""
    rows = []
    for metric in metrics:
        rows += _pooled(trials, metric) if strata else []
        for key, frame in trials.groupby(strata, sort=True) if strata else [((), trials)]:
            key = key if isinstance(key, tuple) else (key,)
            scope = " ".join(f"{k}={v}" for k, v in zip(strata, key, strict=True)) or "all"
            rows += _paired(frame, metric, scope)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    paired = table["test"] == "paired t"
    table["p (Holm)"] = np.nan
    table.loc[paired, "p (Holm)"] = holm(table.loc[paired, "p"])
    return table


def _pooled(trials: pd.DataFrame, metric: str) -> list[dict]:
    hard = trials.loc[trials["label"] == HARD, metric].dropna().to_numpy()
    rows = []
    for label, soft in trials[trials["label"] != HARD].groupby("label", sort=True):
        values = soft[metric].dropna().to_numpy()
        test = compare_two(values, hard)
        rows.append(
            _row(metric, "all, pooled", label, "Welch", f"{len(values)}/{len(hard)}",
                 test["diff"], test["ci_low"], test["ci_high"], test["p_welch"])
        )  # fmt: skip
    return rows


def _paired(frame: pd.DataFrame, metric: str, scope: str) -> list[dict]:
    hard = frame.loc[frame["label"] == HARD, ["seed", metric]]
    rows = []
    for label, soft in frame[frame["label"] != HARD].groupby("label", sort=True):
        both = soft[["seed", metric]].merge(hard, on="seed", suffixes=("", "_hard")).dropna()
        test = paired((both[metric] - both[f"{metric}_hard"]).to_numpy())
        rows.append(
            _row(metric, scope, label, "paired t", f"{test['n']} pairs", test["diff"],
                 test["ci_low"], test["ci_high"], test["p"])
        )  # fmt: skip
    return rows


def _row(
    metric: str,
    scope: str,
    label: str,
    test: str,
    n: str,
    diff: float,
    low: float,
    high: float,
    p: float,
) -> dict[str, object]:
    return {"metric": metric, "scope": scope, "soft": label, "test": test, "n": n,
            "diff": diff, "95% CI": f"[{fmt(low)}, {fmt(high)}]", "p": p}  # fmt: skip


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("Unlearning: soft vs hard targets")
    trials = sweep.ok
    if "targets" not in trials or not (trials["targets"] == HARD).any():
        return [section.add("No trials with hard targets here: nothing to compare against.")]
    is_reference = trials["algorithm"] == REFERENCE if "algorithm" in trials else False
    reference = trials[is_reference]
    unlearned = trials[~is_reference].dropna(subset=["targets"])
    unlearned = unlearned.assign(
        label=unlearned.reindex(columns=TARGET_KEYS).apply(targets_label, axis=1)
    )
    strata = [
        f for f in sweep.factors if f not in TARGET_KEYS and unlearned[f].nunique(dropna=False) > 1
    ]
    section.add(
        f"{len(unlearned)} unlearned models ({_counts(unlearned['label'])}) and "
        f"{len(reference)} retrained without the forget set. Each trial trains its own original "
        "model from its seed, so the soft and hard runs of a seed unlearn the same model."
    )
    for metric in [m for m in PLOTTED if m in unlearned]:
        values = {
            label: group[metric].to_numpy(dtype=float)
            for label, group in unlearned.groupby("label", sort=True)
        }
        if not reference.empty:
            values[REFERENCE] = reference[metric].to_numpy(dtype=float)
        figure = plots.distribution(values, metric, settings.units.get(metric, ""))
        section.add(Plot(f"unlearning-{metric}", figure))
    tests = soft_vs_hard(unlearned, strata, [m for m in COMPARED if m in unlearned])
    if tests.empty or not (unlearned["label"] != HARD).any():
        return [section.add("Only one kind of targets: no test.")]
    section.add(
        "Soft against hard, per metric: diff = soft - hard with its 95% interval. 'all, "
        "pooled' rows are the notebook's view (Welch over every other factor, not "
        "corrected, not used for the verdict); the others are within one stratum, paired by "
        "seed, Holm-corrected together.",
        tests,
        _verdict(tests),
    )
    if "stop_at_forget_acc" in unlearned and unlearned["stop_at_forget_acc"].notna().any():
        section.add(
            "Runs stopped once the forget accuracy fell to `stop_at_forget_acc`, so a "
            "forget_acc at that level says the run got there; compare steps_taken and what "
            "the retain and test accuracies lost on the way."
        )
    if not reference.empty:
        by = [s for s in strata if s in reference and s != "algorithm"] or ["algorithm"]
        table = aggregate(reference, by, [m for m in COMPARED if m in reference])
        intervals = [
            f"[{fmt(lo)}, {fmt(hi)}]"
            for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
        ]
        section.add(
            "Reference: models retrained from the same initial weights without the forget set "
            "(mean over seeds, 95% t-interval). Forgetting a class, their forget accuracy is "
            "about 0 (they never saw the class); an unlearned model should come near it "
            "without losing more retain and test accuracy than they do.",
            table.assign(interval=intervals)[[*by, "metric", "n", "mean", "interval"]],
        )
    return [section]


def _verdict(tests: pd.DataFrame) -> str:
    paired = tests[tests["test"] == "paired t"]
    significant = paired[paired["p (Holm)"] < 0.05]
    if significant.empty:
        return (
            "**No difference between soft and hard targets survives the correction** "
            f"({len(paired)} paired tests)."
        )
    lines = [
        f"- {r['metric']} ({r['scope']}): {r['soft']} - hard = {fmt(r['diff'])} {r['95% CI']}, "
        f"Holm p = {fmt(r['p (Holm)'])}"
        for _, r in significant.iterrows()
    ]
    survive = f"{len(significant)} of {len(paired)}"
    return "\n".join([f"Paired differences that survive the Holm correction ({survive}):", *lines])


def _counts(labels: pd.Series) -> str:
    return ", ".join(f"{n} {label}" for label, n in labels.value_counts().sort_index().items())
