"""raysweep's analysis: reads a sweep's Parquet tables and artifacts; imports
neither Ray nor the experiments.

    from analysis import load, aggregate, write_report
    sweep = load("results/my-sweep")        # .trials .metrics .pairs .ok .factors
    aggregate(sweep.ok, sweep.group_columns, ["val_loss"])
    write_report("results/my-sweep")        # results/my-sweep/report/report.html

The names below are imported on first use, so `import analysis.settings` (which
the spec validation needs) does not pull in scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.aggregates import aggregate
    from analysis.distributions import fit_normal, normal_fits, normality
    from analysis.errors import AnalysisError
    from analysis.ranking import composite
    from analysis.report import plot_metric, write_report
    from analysis.results import analyse
    from analysis.robust import improvements, iqm, robust_aggregate
    from analysis.settings import ReportSettings
    from analysis.significance import hedges_g, holm, one_way, pairwise
    from analysis.sweep import Sweep, load

_PUBLIC = {
    "load": "analysis.sweep",
    "Sweep": "analysis.sweep",
    "aggregate": "analysis.aggregates",
    "fit_normal": "analysis.distributions",
    "normality": "analysis.distributions",
    "normal_fits": "analysis.distributions",
    "pairwise": "analysis.significance",
    "one_way": "analysis.significance",
    "holm": "analysis.significance",
    "hedges_g": "analysis.significance",
    "composite": "analysis.ranking",
    "iqm": "analysis.robust",
    "robust_aggregate": "analysis.robust",
    "improvements": "analysis.robust",
    "analyse": "analysis.results",
    "write_report": "analysis.report",
    "plot_metric": "analysis.report",
    "ReportSettings": "analysis.settings",
    "AnalysisError": "analysis.errors",
}
__all__ = [
    "aggregate",
    "analyse",
    "AnalysisError",
    "composite",
    "fit_normal",
    "hedges_g",
    "holm",
    "improvements",
    "iqm",
    "load",
    "normal_fits",
    "normality",
    "one_way",
    "pairwise",
    "plot_metric",
    "ReportSettings",
    "robust_aggregate",
    "Sweep",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
