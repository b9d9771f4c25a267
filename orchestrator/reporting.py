"""`sweep report | compare | plot`: the command line's settings, an experiment family's
report defaults and sections, and the analysis package that does the work.

A family declares them with its experiment: `@experiment(report=ReportSettings(...),
sections=[hook, ...])`, each hook `(sweep, settings) -> list[Section]` (see
analysis.reproducibility).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.errors import AnalysisError
from analysis.plots import save
from analysis.ranking import parse_weights
from analysis.report import plot_metric, write_report
from analysis.sections import Hook, compare_section
from analysis.settings import ReportSettings
from analysis.sweep import Sweep, load
from orchestrator.registry import resolve


def report(sweep_dir: str | Path, out: Path | None, **options: Any) -> Path:
    """The report of one sweep, into `out` (default: SWEEP_DIR/report; for a sweep in a
    bucket, ./<sweep>/report)."""
    sweep = load(sweep_dir)
    if len(sweep.meta) > 1:
        raise AnalysisError(
            f"{sweep_dir} holds several sweeps; use sweep compare --all {sweep_dir}"
        )
    title = f"Sweep report: {sweep.name}"
    return _write(sweep, out or _local(sweep_dir, sweep.name) / "report", title, [], **options)


def compare(paths: Sequence[str | Path], out: Path | None, **options: Any) -> Path:
    """One report over several sweeps, the sweep being a factor; default folder beside them."""
    sweep = load(paths)
    if len(sweep.meta) < 2:
        raise AnalysisError(f"{', '.join(map(str, paths))}: only one sweep; use sweep report")
    if out is None:
        first = Path(paths[0])
        base = Path() if "://" in str(paths[0]) else first if len(paths) == 1 else first.parent
        out = base / (
            "compare-all" if len(paths) == 1 else "compare-" + "+".join(sweep.names)[:100]
        )
    title = f"Comparison: {', '.join(sweep.names)}"
    return _write(sweep, out, title, [compare_section], **options)


def _write(
    sweep: Sweep,
    out: Path,
    title: str,
    sections: list[Hook],
    lower: Sequence[str] = (),
    higher: Sequence[str] = (),
    metrics: Sequence[str] = (),
    weights: str | None = None,
    quiet: bool = False,
) -> Path:
    defaults, hooks = family(sweep)
    return write_report(
        sweep,
        out,
        settings=command_line_settings(lower, higher, metrics),
        weights=parse_weights(weights) if weights else None,
        hooks=[*sections, *hooks],
        defaults=defaults,
        progress=None if quiet else sys.stderr,
        title=title,
    )


def plot(
    sweep_dir: str | Path, metric: str, x: str | None, by: str | None, out: Path | None
) -> Path:
    sweep = load(sweep_dir)
    defaults, _ = family(sweep)
    figure = plot_metric(sweep, metric, x, by, defaults)
    path = out or _local(sweep_dir, sweep.name) / "plots" / f"{figure.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(figure.figure, path)


def _local(where: str | Path, sweep_name: str) -> Path:
    """Where output about a sweep goes by default: its own folder, or for a sweep in a
    bucket (s3://...), ./<sweep name> on this machine."""
    return Path(sweep_name) if "://" in str(where) else Path(where)


def family(sweep: Sweep) -> tuple[ReportSettings, list[Hook]]:
    """The report defaults and sections the sweeps' experiments declare."""
    defaults, hooks = ReportSettings(), []
    for name, meta in sweep.meta.items():
        folders = [Path(p) for p in (meta.get("source_dir"), Path.cwd()) if p]
        try:
            declared = resolve(meta["experiment"], folders)
        except Exception as exc:  # the report goes on without the family's extras
            print(
                f"warning: {name}: experiment {meta['experiment']!r} not importable here, "
                f"so its own report sections are left out ({exc})",
                file=sys.stderr,
            )
            continue
        defaults = defaults.merged(declared.report)
        hooks += [h for h in declared.sections if h not in hooks]
    return defaults, hooks


def command_line_settings(
    lower: Sequence[str], higher: Sequence[str], metrics: Sequence[str]
) -> ReportSettings:
    both = set(lower) & set(higher)
    if both:
        raise AnalysisError(f"--lower and --higher both name {sorted(both)}")
    directions = {**dict.fromkeys(lower, "lower"), **dict.fromkeys(higher, "higher")}
    return ReportSettings(directions=directions, metrics=list(metrics))
