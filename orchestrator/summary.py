"""What `sweep ls` and `sweep status` show: counts, failures and suspicious metrics."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from analysis.configs import SearchGoal, rank_search, ranked_lines
from analysis.tables import FAILURE, SUCCESS
from orchestrator.errors import error_line
from orchestrator.spec import RESERVED_KEYS
from orchestrator.store.folder import RunStatus, SweepStore

NOT_METRICS = RESERVED_KEYS | {"seed", "time"}


@dataclass
class SweepSummary:
    name: str
    path: str
    experiment: str
    total: int
    ok: int
    failed: int
    started: str
    updated: str

    @property
    def pending(self) -> int:
        return max(self.total - self.ok - self.failed, 0)


def find_sweeps(root: str) -> list[SweepStore]:
    """Every sweep folder (one holding sweep.json) directly under `root`, a folder or URI."""
    fs, base = pafs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    return [store for store in (SweepStore(root, name) for name in names) if store.exists()]


def latest_status(trials: pd.DataFrame) -> pd.Series:
    """Per trial id: ok (a successful attempt exists), stopped, or how its last attempt
    failed (failed, timeout, oom)."""
    if trials.empty:
        return pd.Series(dtype=object)
    # the best attempt of a trial shows: ok, then stopped (SUCCESS lists the best first)
    rank = trials["status"].map({s: len(SUCCESS) - i for i, s in enumerate(SUCCESS)}).fillna(0)
    best = trials.assign(rank=rank).sort_values("rank").groupby("trial_id")["status"].last()
    return best


def summarise(
    store: SweepStore, trials: pd.DataFrame | None = None, meta: dict[str, Any] | None = None
) -> SweepSummary:
    """Counts of one sweep; pass `trials` and `meta` (its sweep.json) when the caller has
    read them already."""
    meta = meta if meta is not None else store.read_meta() or {}
    if trials is None:
        trials = store.read("trials", ["trial_id", "status"])
    status = latest_status(trials)
    runs = meta.get("runs", [])
    ok = int(status.isin(SUCCESS).sum())
    failed = int(status.isin(FAILURE).sum())
    total = max(runs[-1]["total"] if runs else 0, len(status))
    return SweepSummary(
        name=meta.get("name", Path(store.path).name),
        path=store.uri,
        experiment=meta.get("experiment", "?"),
        total=total,
        ok=ok,
        failed=failed,
        started=runs[0]["started_at"] if runs else "?",
        updated=meta.get("updated_at", "?"),
    )


def ls_table(root: str) -> pd.DataFrame:
    rows = []
    for store in find_sweeps(root):
        s = summarise(store)
        rows.append(
            {
                "sweep": s.name,
                "experiment": s.experiment,
                "ok": s.ok,
                "failed": s.failed,
                "total": s.total,
                "started": s.started,
                "last update": s.updated,
            }
        )
    return pd.DataFrame(rows)


def non_finite(table: pa.Table) -> pd.DataFrame:
    """(trial_id, attempt, metric, value) for every NaN or infinite metric value."""
    found = []
    for name in table.column_names:
        column = table[name]
        if name in NOT_METRICS or not pa.types.is_floating(column.type):
            continue
        bad = pc.fill_null(pc.or_(pc.is_nan(column), pc.is_inf(column)), False)
        for i in pc.indices_nonzero(bad).to_pylist():
            found.append(
                {
                    "trial_id": table["trial_id"][i].as_py(),
                    "attempt": table["attempt"][i].as_py(),
                    "metric": name,
                    "value": column[i].as_py(),
                }
            )
    return pd.DataFrame(found, columns=["trial_id", "attempt", "metric", "value"])


def status_text(store: SweepStore, max_rows: int = 30) -> str:
    """The text of `sweep status`: counts, runs, failures, non-finite metrics, trials."""
    table = store.read_arrow("trials") if store.schema("trials") else None
    s = summarise(
        store, None if table is None else table.select(["trial_id", "status"]).to_pandas()
    )
    meta = store.read_meta() or {}
    description = (meta.get("spec") or {}).get("description")
    lines = [
        f"sweep {s.name}  (experiment {s.experiment})"
        + (f": {description}" if description else ""),
        f"  folder   {s.path}",
        f"  trials   {s.total} total | {s.ok} ok | {s.failed} failed | {s.pending} not run",
    ]
    for run in meta.get("runs", []):
        counts = ", ".join(f"{run[k]} {k}" for k in (*SUCCESS, *FAILURE) if run.get(k))
        dirty = " (dirty)" if run.get("git_dirty") else ""
        lines.append(
            f"  run {run['run_id']}  {run['started_at']}  {run_state(run):<11} "
            f"{run['to_run']} to run{': ' + counts if counts else ''}"
            f"  git {(run.get('git_commit') or '-')[:10]}{dirty}"
        )
    if table is None:
        return "\n".join([*lines, "  no trial has finished yet"])
    trials = table.to_pandas()
    if "bundle" in trials and trials["bundle"].notna().any():
        bundled = trials.dropna(subset=["bundle"])
        searched = meta["spec"].get("search", {}).get("algorithm", "grid") != "grid"
        why = "each a config's seeds" if searched else f"spec bundle: {meta['spec'].get('bundle')}"
        lines.append(
            f"  bundles  {bundled['bundle'].nunique()} bundles ran "
            f"{bundled['trial_id'].nunique()} trials ({why})"
        )
    last = failed_attempts(trials)
    if len(last):
        lines.append("failed trials (last attempt; full tracebacks in the `error` column):")
        lines += [
            f"  {r.trial_id} attempt {r.attempt}: {error_line(r.error)}" for r in last.itertuples()
        ]
    bad = non_finite(table)
    if len(bad):
        lines.append("non-finite metrics (NaN or infinite; stored as such):")
        lines += [
            f"  {r.trial_id} attempt {r.attempt}: {r.metric} = {r.value}" for r in bad.itertuples()
        ]
    lines += gpu_memory_lines(trials, (meta.get("spec") or {}).get("resources") or {})
    lines += search_lines(trials, meta)
    lines.append("trials:")
    lines.append(_trial_listing(trials, meta.get("spec", {}), max_rows))
    return "\n".join(lines)


def failed_attempts(trials: pd.DataFrame) -> pd.DataFrame:
    """The last attempt of each trial that failed (failed, timeout, oom; none succeeded)."""
    failed = trials[
        trials["trial_id"].isin(latest_status(trials).loc[lambda x: x.isin(FAILURE)].index)
    ]
    return failed.sort_values("attempt").groupby("trial_id").tail(1)


def search_lines(trials: pd.DataFrame, meta: dict[str, Any], top: int = 10) -> list[str]:
    """For a search sweep with a metric: its best configs as the searcher saw them."""
    found = rank_search(trials, meta)
    return [] if found is None else ranking_lines(*found, top, "what the searcher saw; ")


def ranking_lines(
    goal: SearchGoal, ranked: pd.DataFrame, keys: list[str], top: int, note: str = ""
) -> list[str]:
    """The `top` best of `rank_search`'s configs as a table under a title naming the goal."""
    valued = int(ranked["value"].notna().sum())
    shown = f"the best {top} of {len(ranked)}" if len(ranked) > top else f"{len(ranked)}"
    lines = [f"{goal.title} ({note}{shown} configs, {valued} with a value, {goal.mode} is better):"]
    text = ranked_lines(ranked, keys, top).to_string(index=False, max_colwidth=24)
    return [*lines, "  " + text.replace("\n", "\n  ")]


def gpu_memory_lines(trials: pd.DataFrame, resources: dict[str, Any]) -> list[str]:
    """Peak GPU memory per trial against the device's, per kind of GPU, and how many such
    trials one GPU holds, so the spec's GPU fraction can be chosen from data."""
    if "gpu_memory_peak" not in trials:
        return []
    measured = trials.dropna(subset=["gpu_memory_peak", "gpu_memory_total"])
    if measured.empty:
        return []
    asked = resources.get("gpu") or 0
    per_gpu = f", {int(1 / asked)} per GPU" if 0 < asked < 1 else ""
    spec = f"; the spec asks {asked:g} GPU per trial{per_gpu}" if asked else ""
    lines = [f"GPU memory per trial attempt (peak since it began{spec}):"]
    for name, rows in measured.groupby("gpu_name", dropna=False):
        total = rows["gpu_memory_total"].max()
        peak, reserved = rows["gpu_memory_peak"], rows["gpu_memory_reserved"]
        fit = (
            f"{int(total // reserved.max())} trials like the largest fit in one GPU's memory"
            if reserved.max() > 0
            else "no GPU memory held by torch"
        )
        lines += [
            f"  {name} ({_bytes(total)}), {len(rows)} attempts: allocated median "
            f"{_bytes(peak.median())}, max {_bytes(peak.max())} ({peak.max() / total:.1%}); "
            f"reserved max {_bytes(reserved.max())}",
            f"    {fit} (each process also holds a CUDA context, not counted here)",
        ]
    return lines


def _bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def run_state(run: dict[str, Any]) -> RunStatus:
    """A run's status; DIED for one still marked running whose driver is gone."""
    status = RunStatus(run["status"])
    if status != RunStatus.RUNNING or run.get("host") != socket.gethostname():
        return status
    try:
        os.kill(run["pid"], 0)
    except ProcessLookupError:
        return RunStatus.DIED
    except PermissionError:
        pass  # alive, and someone else's
    return RunStatus.RUNNING


def clock(seconds: float) -> str:
    """A span of time as H:MM:SS."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def metric_columns(trials: pd.DataFrame, config: list[str]) -> list[str]:
    """The trials table's columns that hold final metrics: neither bookkeeping, nor
    `config`, nor versions."""
    return [
        c
        for c in trials.columns
        if c not in NOT_METRICS and c not in config and not c.startswith("version_")
    ]


def _trial_listing(trials: pd.DataFrame, spec: dict[str, Any], max_rows: int) -> str:
    config = [*spec.get("params", {}), *spec.get("grid", {}), "seed"]
    metrics = metric_columns(trials, config)
    bundles = ["bundle"] if "bundle" in trials and trials["bundle"].notna().any() else []
    columns = [
        "trial_id",
        "status",
        "attempt",
        *bundles,
        *[c for c in config if c in trials],
        *metrics,
    ]
    shown = trials.sort_values([*bundles, "trial_id", "attempt"])[columns]
    text = shown.head(max_rows).to_string(index=False, max_colwidth=24)
    more = len(shown) - max_rows
    return "  " + text.replace("\n", "\n  ") + (f"\n  ... {more} more rows" if more > 0 else "")
