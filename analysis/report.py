"""Reports from Parquet: `write_report(path)` for a sweep (or several, compared) and
`plot_metric` for one figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import pandas as pd

from analysis import plots
from analysis.aggregates import curve
from analysis.document import Plot, Section, slug, write
from analysis.errors import AnalysisError
from analysis.painters import HELPERS, Painters
from analysis.results import Analysis, analyse
from analysis.sections import Hook, sections
from analysis.settings import ReportSettings
from analysis.sweep import Sweep, label_rows, load

# Successful trials from which a report's figures are drawn by helper processes too: a
# smaller sweep's figures take less time to draw than a helper takes to start.
PAINT_FROM = 200


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
    family = (defaults or ReportSettings()).within(sweep.final_metrics + sweep.pair_metrics)
    settings = family.merged(sweep.settings()).merged(settings)
    _say(progress, f"{sweep.name}: {len(sweep.ok)} successful trials, {len(sweep.metrics)} steps")
    # Helpers start now, so that their imports overlap the analysis.
    with Painters(HELPERS if len(sweep.ok) >= PAINT_FROM else 0) as painters:
        analysis = analyse(sweep, settings, weights)
        _say(progress, "figures and tables")
        built = _started(sections(analysis, hooks), painters)
        title = title or f"Sweep report: {sweep.name}"
        path = write(Path(out), title, built, _tables(analysis), painters)
    _say(progress, f"wrote {path / 'report.html'}")
    return path


def _started(built: Iterable[Section], painters: Painters) -> list[Section]:
    """The sections, each one's figures handed to the helpers as soon as it is computed:
    they are drawn while the next sections are."""
    done = []
    for section in built:
        painters.start([p.source for p in section.plots()])
        done.append(section)
    return done


def _tables(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """The report's CSV files, by name."""
    tables = {"summary": analysis.summary, "significance": analysis.tests}
    if not analysis.one_way.empty:
        tables["factors"] = analysis.one_way
    for name, table in analysis.rankings.items():
        tables[f"ranking-{slug(name)}"] = table.reset_index()
    return tables


def _say(progress: TextIO | None, text: str) -> None:
    if progress is not None:
        progress.write(f"report: {text}\n")
        progress.flush()


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
    for option, column, allowed in (("--x", x, ["step"]), ("--by", by, [])):
        if column is not None and column not in [*allowed, *sweep.config_columns]:
            raise AnalysisError(
                f"{option} {column}: not a parameter of {sweep.name}; "
                f"parameters: {[*allowed, *sweep.config_columns]}"
            )
    if x is None and metric in sweep.step_metrics:
        x = "step"
    per_step = x == "step"
    if per_step and metric not in sweep.step_metrics:
        raise AnalysisError(f"{metric!r} was not reported per step; plot it against --x PARAM")
    if not per_step and metric not in sweep.final_metrics:
        raise AnalysisError(f"{metric!r} was reported per step only; plot it per step (no --x)")
    frame = sweep.steps if per_step else sweep.ok
    others = [by] if by else [c for c in sweep.group_columns if c != x]
    unit = settings.unit(metric)
    if frame[metric].notna().sum() == 0:
        raise AnalysisError(f"{metric!r}: no successful trial has a value to plot")
    if x is None:
        groups = frame.assign(group=label_rows(frame, others)).groupby("group")
        values = {g: rows[metric].to_numpy(dtype=float) for g, rows in groups}
        return Plot(f"distribution-{slug(metric)}", plots.distribution(values, metric, unit))
    table = curve(frame, x, others, metric)
    figure = plots.band(table, x, metric, unit, settings.unit(x), by=others)
    return Plot(f"{slug(metric)}-vs-{slug(x)}", figure)
