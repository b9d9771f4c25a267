"""The unlearning family's part of a report (SCIENCE.md section 3): the seed notebook's
view, distributions of accuracy and parameter change for soft vs hard targets with
fitted normals, overlaid, and whether they differ.

The notebook pooled every architecture and algorithm into one soft and one hard
list. Pooling mixes strata whose means differ, so the pooled Welch tests are shown
as the notebook's view only; the verdict comes from tests within each stratum (the
other factors fixed), paired by seed (a seed's soft and hard runs unlearn the same
trained model), Holm-corrected together. Models retrained without the forget set
are the reference.

Diverged runs (`diverged` = 1: weights or logits went non-finite, so their accuracies are
NaN) are counted per cell and left out of everything else here; a seed whose soft or
hard run diverged drops out of its pair.

Equal effort: a hard run stops once its forget accuracy reaches `stop_at_forget_acc`,
while a soft run that never gets there ascends for every step, so their final retain and
test accuracies compare different amounts of ascent. `equal_effort` reads each seed's soft
and hard runs off their per-step reports at the same step and at the same distance
||theta - theta_0|| from the trained model.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.aggregates import aggregate
from analysis.document import Block, Plot, Section, fmt, slug
from analysis.settings import ReportSettings
from analysis.significance import compare_two, holm, paired
from analysis.sweep import Sweep

TARGET_KEYS = ("targets", "temperature", "smoothing")
HARD, REFERENCE = "hard", "retrain"
PLOTTED = ["forget_acc", "test_acc", "param_change", "param_change_rel"]
COMPARED = ["forget_acc", "retain_acc", "test_acc", "test_forget_class_acc", "param_change",
            "param_change_rel", "steps_taken"]  # fmt: skip
MEANS = ["forget_acc", "retain_acc", "test_acc", "steps_taken"]  # per cell, of the runs kept
MATCHED = ["retain_acc", "test_acc"]  # soft vs hard at equal effort
EFFORT = {"equal steps": "step", "equal distance": "distance"}  # matching -> its axis
REPORT = ReportSettings(
    metrics=[*COMPARED, "unlearn_time_s", "diverged"],
    directions={"forget_acc": "lower", "retain_acc": "higher", "test_acc": "higher",
                "test_forget_class_acc": "lower", "param_change": "lower",
                "param_change_rel": "lower", "steps_taken": "lower", "unlearn_time_s": "lower",
                "diverged": "lower"},
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
        for scope, frame in _strata(trials, strata):
            rows += _paired(frame, metric, scope)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    paired = table["test"] == "paired t"
    table["p (Holm)"] = np.nan
    table.loc[paired, "p (Holm)"] = holm(table.loc[paired, "p"])
    return table


def _strata(trials: pd.DataFrame, strata: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each stratum's rows with its name (`arch=cnn algorithm=gradasc`; `all` without strata)."""
    if not strata:
        yield "all", trials
        return
    for key, frame in trials.groupby(strata, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield " ".join(f"{k}={v}" for k, v in zip(strata, key, strict=True)), frame


def _soft_and_hard(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Per kind of soft targets in one stratum: its runs joined to the hard run of the same
    seed (the hard run's columns suffixed `_hard`)."""
    hard = frame[frame["label"] == HARD]
    for label, soft in frame[frame["label"] != HARD].groupby("label", sort=True):
        yield label, soft.merge(hard, on="seed", suffixes=("", "_hard"))


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
    rows = []
    for label, both in _soft_and_hard(frame):
        both = both[[metric, f"{metric}_hard"]].dropna()
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


def equal_effort(trials: pd.DataFrame, steps: pd.DataFrame, strata: list[str]) -> pd.DataFrame:
    """Each soft run against the hard run of its seed in its stratum, at equal effort: one
    row per pair, matching (EFFORT) and MATCHED metric, with the step or distance compared
    `at` and the two runs' values there. At equal steps that is the smaller of the two runs'
    last steps (where the hard run stopped, if it did); at equal distance the smaller of
    their largest ||theta - theta_0||, read where each run first gets that far. `trials`
    needs a `label` column; `steps` is the per-step table (Sweep.steps)."""
    paths = effort_paths(trials, steps)
    rows = []
    for scope, frame in _strata(trials, strata):
        for label, both in _soft_and_hard(frame):
            for pair in both.itertuples():
                soft = paths[(str(pair.sweep), pair.trial_id)]
                hard = paths[(str(pair.sweep_hard), pair.trial_id_hard)]
                rows += [
                    {"scope": scope, "soft": label, "seed": pair.seed, **match}
                    for match in _matched(soft, hard)
                ]
    columns = ["scope", "soft", "seed", "matched", "at", "metric", "soft_value", "hard_value"]
    return pd.DataFrame(rows, columns=columns)


def effort_paths(trials: pd.DataFrame, steps: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Per trial, by (sweep, trial_id): step, distance and the MATCHED accuracies of each
    report in step order, after step 0, the trained model (its `*_before` accuracies at
    distance 0), so that a point before the first report can be read too."""
    keys = ["sweep", "trial_id"]
    start = trials[keys].assign(step=0, distance=0.0, **{m: trials[f"{m}_before"] for m in MATCHED})
    reported = steps.merge(trials[keys], on=keys).reindex(columns=start.columns)
    path = pd.concat([start, reported], ignore_index=True).sort_values([*keys, "step"])
    grouped = path.groupby(keys, observed=True, sort=False)
    return {(str(sweep), trial): rows for (sweep, trial), rows in grouped}


def _matched(soft: pd.DataFrame, hard: pd.DataFrame) -> list[dict[str, object]]:
    if min(len(soft), len(hard)) < 2:  # a run with no report past step 0: nothing to match
        return []
    rows = []
    for matching, axis in EFFORT.items():
        # NaN (never reported, as distance by older sweeps) leaves the pair out
        at = np.minimum(soft[axis].max(skipna=False), hard[axis].max(skipna=False))
        rows += [
            {"matched": matching, "at": at, "metric": metric,
             "soft_value": first_reaching(soft[axis], soft[metric], at),
             "hard_value": first_reaching(hard[axis], hard[metric], at)}
            for metric in MATCHED
        ]  # fmt: skip
    return rows


def first_reaching(x: pd.Series, y: pd.Series, at: float) -> float:
    """y where x first reaches `at`, linear between the reports on either side of it (y's
    first value if x starts there or beyond; NaN if x never gets there)."""
    x_values, y_values = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    reached = np.flatnonzero(x_values >= at)
    if not len(reached):
        return np.nan
    i = reached[0]
    if i == 0:
        return float(y_values[0])
    return float(np.interp(at, x_values[i - 1 : i + 1], y_values[i - 1 : i + 1]))


def effort_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per scope, soft targets, matching and metric of `equal_effort`'s pairs: n pairs, the
    mean point compared at, and soft - hard paired by seed (mean, 95% t-interval)."""
    keys = ["scope", "soft", "matched", "metric"]
    rows = []
    for key, group in pairs.dropna().groupby(keys, sort=False):
        test = paired((group["soft_value"] - group["hard_value"]).to_numpy())
        rows.append(
            {**dict(zip(keys, key, strict=True)), "n": test["n"], "at": group["at"].mean(),
             "diff": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"]}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "n", "at", "diff", "ci_low", "ci_high"])


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("Unlearning: soft vs hard targets")
    trials = sweep.ok
    if "targets" not in trials or not (trials["targets"] == HARD).any():
        return [section.add("No trials with hard targets here: nothing to compare against.")]
    is_reference = trials["algorithm"] == REFERENCE if "algorithm" in trials else False
    reference = trials[is_reference].assign(label=REFERENCE)
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
        "model from its seed, so the soft and hard runs of a seed unlearn the same model.",
        *_diverged_blocks(pd.concat([unlearned, reference]), strata),
    )
    unlearned, reference = unlearned[~diverged(unlearned)], reference[~diverged(reference)]
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
        return [section.add("Only one kind of targets among the runs kept: no test.")]
    section.add(
        "Soft against hard, per metric: diff = soft - hard with its 95% interval. 'all, "
        "pooled' rows are the notebook's view (Welch over every other factor, not "
        "corrected, not used for the verdict); the others are within one stratum, paired by "
        "seed, Holm-corrected together. A seed whose soft or hard run diverged has no pair: "
        "n counts the pairs left.",
        tests,
        _verdict(tests),
    )
    if "stop_at_forget_acc" in unlearned and unlearned["stop_at_forget_acc"].notna().any():
        section.add(
            "Runs stopped once the forget accuracy fell to `stop_at_forget_acc`, so a "
            "forget_acc at that level says the run got there; compare steps_taken and what "
            "the retain and test accuracies lost on the way."
        )
    section.add(*_effort_blocks(unlearned, sweep.steps, strata))
    if not reference.empty:
        section.add(*_reference_blocks(reference, strata))
    return [section]


def diverged(trials: pd.DataFrame) -> pd.Series:
    """Per trial: did it diverge (`diverged` = 1)? False where not recorded."""
    if "diverged" not in trials:
        return pd.Series(False, index=trials.index)
    return trials["diverged"].eq(1)


def _diverged_blocks(runs: pd.DataFrame, strata: list[str]) -> list[Block]:
    gone = diverged(runs)
    by = [*strata, "label"]
    table = runs.assign(diverged=gone).groupby(by, sort=True, dropna=False)
    table = table.agg(runs=("label", "size"), diverged=("diverged", "sum"))
    means = runs[~gone].groupby(by, sort=True, dropna=False)[MEANS].mean()
    table = table.join(means.rename(columns=lambda m: f"{m} (mean)")).reset_index()
    return [
        f"{int(gone.sum())} of {len(runs)} runs diverged (weights or logits went to inf or "
        "NaN, so their accuracies are NaN; argmax of NaN logits is class 0, which would pass "
        "for forgetting). They are left out of every mean, distribution, test and comparison "
        "below. Per cell, the runs, those that diverged, and the mean accuracies of the rest:",
        table.rename(columns={"label": "targets"}),
    ]


def _effort_blocks(unlearned: pd.DataFrame, steps: pd.DataFrame, strata: list[str]) -> list[Block]:
    summary = effort_summary(equal_effort(unlearned, steps, strata))
    if summary.empty:
        return ["Equal effort: no soft and hard runs of a seed with per-step reports to compare."]
    text = (
        "**Equal effort.** A hard run stops once its forget accuracy reaches "
        "`stop_at_forget_acc`; a soft run that never gets there ascends for all "
        "`unlearn_steps`, so their final accuracies compare different amounts of ascent. Here "
        "each seed's soft run is set against its hard run (the same trained model) at **equal "
        "steps**: the smaller of the two runs' last steps (where the hard run stopped, when "
        "it did); and at **equal distance** ||θ - θ₀|| from the trained model: the smaller of "
        "the two runs' largest distances (the hard run's final one, when the soft run got "
        "that far), read where each run first reaches it. Between reports (every "
        "`eval_every` steps) values are interpolated linearly; step 0 is the trained model "
        "(its `*_before` accuracies, distance 0). Cells: soft - hard, the mean over n pairs "
        "with its 95% t-interval (not corrected: the tests above decide); at: the mean step "
        "or distance compared at."
    )
    figures = [
        Plot(f"unlearning-{slug(matching)}", _effort_figure(rows, matching))
        for matching, rows in summary.groupby("matched", sort=False)
    ]
    return [text, _effort_table(summary), *figures]


def _effort_table(summary: pd.DataFrame) -> pd.DataFrame:
    cells = summary.assign(
        cell=[
            f"{fmt(d)} [{fmt(lo)}, {fmt(hi)}]"
            for d, lo, hi in zip(
                summary["diff"], summary["ci_low"], summary["ci_high"], strict=True
            )
        ]
    )
    wide = cells.pivot_table(
        index=["scope", "soft", "matched", "n", "at"], columns="metric", values="cell",
        aggfunc="first", sort=False,
    )  # fmt: skip
    wide.columns = [f"{metric}: soft - hard" for metric in wide.columns]
    return wide.reset_index().rename(
        columns={"matched": "at equal", "n": "n pairs", "at": "at (mean)"}
    )


def _effort_figure(rows: pd.DataFrame, matching: str) -> Figure:
    rows = rows.assign(group=rows["scope"] + ": " + rows["soft"], mean=rows["diff"])
    panels = {m: (rows[rows["metric"] == m], f"soft - hard, {m}") for m in MATCHED}
    return plots.means(panels, f"Soft - hard at {matching}, paired by seed: mean and 95% interval")


def _reference_blocks(reference: pd.DataFrame, strata: list[str]) -> list[Block]:
    by = [s for s in strata if s in reference and s != "algorithm"] or ["algorithm"]
    table = aggregate(reference, by, [m for m in COMPARED if m in reference])
    intervals = [
        f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
    ]
    return [
        "Reference: models retrained from the same initial weights without the forget set "
        "(mean over seeds, 95% t-interval). Forgetting a class, their forget accuracy is "
        "about 0 (they never saw the class); an unlearned model should come near it "
        "without losing more retain and test accuracy than they do.",
        table.assign(interval=intervals)[[*by, "metric", "n", "mean", "interval"]],
    ]


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
