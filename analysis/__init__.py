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
from typing import Any

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
    "analyse": "analysis.results",
    "write_report": "analysis.report",
    "plot_metric": "analysis.report",
    "ReportSettings": "analysis.settings",
    "AnalysisError": "analysis.errors",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
