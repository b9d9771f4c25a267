"""What a reader must know before trusting the numbers: failed trials, NaN/Inf
values, runs whose loss did not go down, and groups with fewer seeds than asked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.settings import ReportSettings
from analysis.sweep import Sweep


def failed(sweep: Sweep) -> pd.DataFrame:
    """Trials with no successful attempt: attempts made and the last error line."""
    trials = sweep.trials
    succeeded = set(zip(sweep.ok["sweep"], sweep.ok["trial_id"], strict=True))
    keys = list(zip(trials["sweep"], trials["trial_id"], strict=True))
    bad = trials[[k not in succeeded for k in keys]]
    if bad.empty:
        return pd.DataFrame(columns=["sweep", "trial_id", "group", "seed", "attempts", "error"])
    by_trial = bad.sort_values("attempt").groupby(["sweep", "trial_id"], observed=True)
    last = by_trial.tail(1).merge(by_trial.size().rename("attempts").reset_index())
    return pd.DataFrame(
        {
            "sweep": last["sweep"].astype(str),
            "trial_id": last["trial_id"],
            "group": sweep.label(last),
            "seed": last["seed"],
            "attempts": last["attempts"],
            "error": last["error"].map(_last_line),
        }
    ).reset_index(drop=True)


def non_finite(sweep: Sweep) -> pd.DataFrame:
    """Per (where, metric): NaN and infinite values that successful attempts reported."""
    succeeded = sweep.ok[["sweep", "trial_id", "attempt"]].astype({"sweep": str})
    found = sweep.non_finite.astype({"sweep": str}).merge(succeeded)
    rows = []
    for (table, metric), values in found.groupby(["table", "column"], sort=True):
        if metric not in sweep.final_metrics + sweep.step_metrics + sweep.pair_metrics:
            continue
        where = {"trials": "final", "metrics": "per step"}.get(table, table)
        numbers = values["value"].to_numpy(dtype=float)
        rows.append(
            {
                "where": where,
                "metric": metric,
                "nan": int(np.isnan(numbers).sum()),
                "inf": int(np.isinf(numbers).sum()),
                "trials": values["trial_id"].nunique(),
            }
        )
    table = pd.DataFrame(rows, columns=["where", "metric", "nan", "inf", "trials"])
    return table.sort_values(["where", "metric"], ignore_index=True)


def loss_metrics(sweep: Sweep, settings: ReportSettings) -> list[str]:
    """Per-step metrics that should go down: declared `lower`, else those named *loss*."""
    declared = [m for m in sweep.step_metrics if settings.directions.get(m) == "lower"]
    return declared or [m for m in sweep.step_metrics if "loss" in m]


def not_converged(sweep: Sweep, settings: ReportSettings) -> pd.DataFrame:
    """Successful trials whose last value of a loss is not below its first."""
    metrics = loss_metrics(sweep, settings)
    columns = ["sweep", "trial_id", "group", "seed", "metric", "first", "last"]
    if not metrics:
        return pd.DataFrame(columns=columns)
    steps = sweep.steps.sort_values("step")
    keys = ["sweep", "trial_id"]
    rows = []
    for metric in metrics:
        ends = steps.dropna(subset=[metric]).groupby(keys, observed=True)[metric]
        ends = ends.agg(["first", "last", "count"])
        stuck = ends[(ends["count"] > 1) & ~(ends["last"] < ends["first"])].reset_index()
        stuck = stuck.merge(sweep.ids, on=keys).assign(metric=metric)
        rows.append(stuck[columns])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def short_groups(sweep: Sweep) -> pd.DataFrame:
    """Groups of a grid sweep with fewer successful seeds than the spec asked for."""
    everyone = sweep.trials.drop_duplicates(["sweep", "trial_id"])
    groups = everyone.assign(group=sweep.label(everyone))[["sweep", "group"]].drop_duplicates()
    n = sweep.ids.groupby(["sweep", "group"], observed=True).size().rename("n").reset_index()
    counts = groups.astype(str).merge(n.astype({"sweep": str}), how="left").fillna({"n": 0})
    counts["asked"] = pd.to_numeric(counts["sweep"].map(sweep.seeds_asked()))  # None: a search
    short = counts[counts["asked"].notna() & (counts["n"] < counts["asked"])]
    return short.astype({"n": int, "asked": int}).reset_index(drop=True)


def _last_line(error: object) -> str:
    lines = str(error or "").strip().splitlines()
    return lines[-1] if lines else "(no error text)"
