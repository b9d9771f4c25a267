"""`sweep status --watch`: a sweep's progress, live, from its tables alone.

Every `every` seconds it reads sweep.json and the trials and metrics tables through the
store (a folder or a bucket; never Ray, so it works from a laptop while the sweep runs
elsewhere) and shows: the counts and an ETA, the attempts running with their last
reported step, the newest failures, and the best configs so far. On a terminal the view is
redrawn in place; in a log or a pipe a new view is printed only when more than the clock
changed. It ends when the sweep's newest run has ended (finished, interrupted, aborted, or
its driver died) at two reads in a row: a sequential sweep runs each round as a run of its
own, begun right after the last one ended.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

import pandas as pd

from analysis.configs import SearchGoal, rank_search, search_goal
from analysis.settings import ReportSettings
from analysis.tables import STEP_COLUMNS, UnreadableFileWarning
from orchestrator.errors import InputError, error_line
from orchestrator.objective import family_defaults, goal
from orchestrator.store.folder import RunStatus, SweepStore, store_at
from orchestrator.summary import (
    SweepSummary,
    clock,
    failed_attempts,
    metric_columns,
    ranking_lines,
    run_state,
    summarise,
)

SHOWN = {"running": 10, "failed": 5, "best": 3}  # lines of each part of the view, at most


@dataclass
class Tables:
    """One read of a sweep: its sweep.json, counts, trials table, and the steps that its
    newest run's attempts reported."""

    meta: dict[str, Any]
    summary: SweepSummary
    trials: pd.DataFrame
    steps: pd.DataFrame

    @property
    def run(self) -> dict[str, Any]:
        """The newest run's entry in sweep.json ({} before the first run)."""
        return (self.meta.get("runs") or [{}])[-1]

    @property
    def state(self) -> RunStatus | None:
        """The newest run's state (None before the first run)."""
        return run_state(self.run) if self.run else None

    @property
    def ended(self) -> bool:
        """Whether the newest run has ended, however it ended."""
        return self.state not in (None, RunStatus.RUNNING)


def read_tables(uri: str) -> Tables:
    """The sweep at `uri` as it is now. A file that vanished as it was read (compaction
    swaps a table's files when a run ends) is no damage: read once more, then warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableFileWarning)
        store = store_at(uri)
        tables = _read(store)
    return _read(store_at(uri)) if store.unreadable else tables


def _read(store: SweepStore) -> Tables:
    meta = store.read_meta() or {}
    trials = store.read("trials")
    steps = store.read("metrics")
    started = (meta.get("runs") or [{}])[-1].get("started_at")
    if started and "time" in steps:
        steps = steps[steps["time"] >= pd.Timestamp(started)]
    summary = summarise(store, trials, meta)
    return Tables(meta, summary, trials, steps)


def report_settings(meta: dict[str, Any]) -> ReportSettings:
    """The sweep's report settings: its experiment's defaults, then its spec's."""
    spec = meta.get("spec") or {}
    return family_defaults(meta).merged(ReportSettings(**(spec.get("report") or {})))


def best_goal(
    tables: Tables, settings: ReportSettings, metric: str | None, mode: str | None
) -> SearchGoal | None:
    """What the best configs are chosen by: `metric` and `mode` as given, else as `sweep
    confirm` chooses them (orchestrator/objective.goal), else the first numeric final
    metric; min where nothing says which way is better. The searcher's own goal (its
    aggregate over seeds) when it is the same metric and mode; None before any metric."""
    spec = tables.meta.get("spec") or {}
    chosen = _named_goal(spec, settings, metric, mode)
    if chosen is None:
        numeric = _numeric_metrics(tables)
        if not numeric:
            return None
        chosen = (numeric[0], mode or "min")
    searcher = search_goal(spec)
    if searcher is not None and (searcher.metric, searcher.mode) == chosen:
        return searcher
    return SearchGoal(*chosen, how="mean", seeds=None)


def _named_goal(
    spec: dict[str, Any], settings: ReportSettings, metric: str | None, mode: str | None
) -> tuple[str, str] | None:
    """`goal`, with min where nothing says which way is better; None when nothing names
    a metric."""
    for each in dict.fromkeys((mode, mode or "min")):
        with contextlib.suppress(InputError):
            return goal(spec, settings, metric, each)
    return None


def _numeric_metrics(tables: Tables) -> list[str]:
    trials = tables.trials
    columns = metric_columns(trials, tables.meta.get("config_columns") or [])
    return [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(trials[c])
        and not pd.api.types.is_bool_dtype(trials[c])
        and trials[c].notna().any()
    ]


def header(tables: Tables, now: datetime) -> str:
    """The first line: the time, the sweep, its newest run's state, elapsed time and ETA."""
    s, run = tables.summary, tables.run
    what = f"run {run['run_id']} {tables.state}" if run else "no run yet"
    line = f"[{now.astimezone():%H:%M:%S}] sweep {s.name}: {what}"
    if not run or tables.ended:
        return line
    elapsed = (now - datetime.fromisoformat(run["started_at"])).total_seconds()
    return f"{line} | elapsed {clock(elapsed)} | {_eta(tables, elapsed)}"


def _eta(tables: Tables, elapsed: float) -> str:
    """From the rate at which this run's trials ended so far (successful or not)."""
    trials = tables.trials
    if "run_id" not in trials:
        return "ETA unknown"
    ended = trials.loc[trials["run_id"] == tables.run["run_id"], "trial_id"].nunique()
    if not ended:
        return "ETA unknown"
    return f"ETA {clock(elapsed / ended * tables.summary.pending)}"


def body(tables: Tables, best: SearchGoal | None) -> list[str]:
    """The rest of the view: counts, running attempts, newest failures, best configs."""
    s = tables.summary
    running = _running(tables)
    pending = max(s.pending - len(running), 0)
    return [
        f"  {s.ok} done | {len(running)} running | {s.failed} failed | {pending} pending"
        f"  ({s.total} trials)",
        *_running_lines(running),
        *_failure_lines(tables),
        *_best_lines(tables, best),
    ]


def _running(tables: Tables) -> pd.DataFrame:
    """The last step of each attempt of the newest run that reported one and has no row."""
    steps = tables.steps
    if tables.state != RunStatus.RUNNING or steps.empty:
        return steps.iloc[:0]
    last = steps.sort_values("time").groupby(["trial_id", "attempt"]).tail(1)
    if tables.trials.empty:
        return last
    ended = tables.trials[["trial_id", "attempt"]].drop_duplicates()
    found = last.merge(ended, on=["trial_id", "attempt"], how="left", indicator=True)
    return found[found["_merge"] == "left_only"].drop(columns="_merge")


def _running_lines(running: pd.DataFrame) -> list[str]:
    if running.empty:
        return []
    shown = running.sort_values("trial_id").head(SHOWN["running"])
    lines = ["running (last reported step):"]
    for _, row in shown.iterrows():
        values = " ".join(
            f"{k}={_number(v)}" for k, v in row.items() if k not in STEP_COLUMNS and pd.notna(v)
        )
        lines.append(f"  {row['trial_id']} attempt {row['attempt']}  step {row['step']}  {values}")
    return lines + _more(len(running) - len(shown))


def _failure_lines(tables: Tables) -> list[str]:
    failed = failed_attempts(tables.trials) if len(tables.trials) else tables.trials
    if failed.empty:
        return []
    newest = failed.sort_values("finished_at", ascending=False).head(SHOWN["failed"])
    keys = _varying(tables)
    lines = ["failed (newest first; sweep status shows all):"]
    for _, row in newest.iterrows():
        which = [row["trial_id"], f"attempt {row['attempt']}", *(f"{k}={row[k]}" for k in keys)]
        lines.append(f"  {' '.join(which)}: {error_line(row['error'])}")
    return lines + _more(len(failed) - len(newest))


def _varying(tables: Tables) -> list[str]:
    """The config keys whose values differ between the sweep's trials."""
    trials = tables.trials
    keys = [c for c in tables.meta.get("config_columns") or [] if c in trials]
    return [k for k in keys if trials[k].nunique(dropna=False) > 1]


def _best_lines(tables: Tables, best: SearchGoal | None) -> list[str]:
    if best is None:
        return ["best: no final metric yet"]
    found = rank_search(tables.trials, tables.meta, best)
    if found is None:
        return [f"best: no trial has ended yet ({best.metric}, {best.mode} is better)"]
    return ranking_lines(*found, SHOWN["best"], "so far: ")


def _more(count: int) -> list[str]:
    return [f"  ... {count} more"] if count > 0 else []


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Screen:
    """Where views go: redrawn in place on a terminal; elsewhere appended, each view only
    when its body changed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0  # lines on the terminal to draw over
        self.body: list[str] | None = None

    def show(self, head: str, body: list[str]) -> None:
        if self.tty:
            self._redraw("\n".join([head, *body]).splitlines())
        elif body != self.body:
            self.out.write("\n".join([head, *body]) + "\n")
        self.body = body
        self.out.flush()

    def _redraw(self, lines: list[str]) -> None:
        width, height = shutil.get_terminal_size()
        lines = [line[:width] for line in lines[: max(height - 1, 1)]]
        up = f"\033[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "\033[J" + "\n".join(lines) + "\n")
        self.drawn = len(lines)


def watch(
    sweep_dir: str,
    every: float,
    metric: str | None = None,
    mode: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Show the sweep in `sweep_dir` every `every` seconds until it ends, on `out` (default:
    stdout); Ctrl-C stops it quietly."""
    out = out or sys.stdout
    screen = Screen(out)
    uri = store_at(sweep_dir).uri
    with contextlib.suppress(KeyboardInterrupt):
        tables = read_tables(uri)
        settings = report_settings(tables.meta)
        ended_before = False
        while True:
            best = best_goal(tables, settings, metric, mode)
            screen.show(header(tables, datetime.now(timezone.utc)), body(tables, best))
            if tables.ended and ended_before:
                break
            ended_before = tables.ended
            time.sleep(every)
            tables = read_tables(uri)
        out.write(f"sweep {tables.summary.name} ended: run {tables.run['run_id']} {tables.state}\n")
