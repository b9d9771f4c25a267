"""A report's figures drawn by helper processes (analysis.painters): the same PNG bytes as
drawn in this process, a figure's own error raised here, warnings passed on, no helper
left running."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sweep, steps, trial
from matplotlib.figure import Figure

import analysis.report
from analysis import plots, write_report
from analysis.painters import Painters


def warning_figure() -> Figure:
    """A figure whose drawing warns (a helper imports it from this module)."""
    warnings.warn("drawn with a warning", UserWarning, stacklevel=1)
    return plots.scores(pd.DataFrame({"p": [0.5]}, index=["a"]), "warned")


def sketches() -> list[plots.Sketch]:
    values = {"a": np.array([1.0, 2.0, 2.5, 3.0]), "b": np.array([2.0, 4.0, 3.5])}
    curve = pd.DataFrame(
        {"group": ["a"] * 3, "step": [0, 1, 2], "n": 3, "mean": [3.0, 2.0, 1.5]}
    ).assign(ci_low=lambda t: t["mean"] - 0.2, ci_high=lambda t: t["mean"] + 0.2)
    return [
        plots.sketch(plots.distribution, values, "loss", "nats"),
        plots.sketch(plots.band, curve, "step", "loss"),
        plots.sketch(plots.scores, pd.DataFrame({"p": [0.2, 0.9]}, index=["a", "b"]), "t"),
    ]


def test_helpers_draw_the_bytes_this_process_draws():
    built = plots.scores(pd.DataFrame({"p": [0.7]}, index=["c"]), "built here")
    figures = [*sketches(), built]
    with Painters(2) as painters:
        painters.start(figures[:1])  # one handed over early, as write_report does
        assert painters._replies[figures[0]].result(timeout=60)[0] is not None  # a helper's
        drawn = painters.draw(figures)
    assert drawn == Painters(0).draw([*sketches(), built])
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in drawn)
    assert all(h.process.poll() is not None for h in painters._helpers)  # none left running


def test_a_figure_that_fails_in_a_helper_raises_its_own_error_here():
    broken = plots.sketch(plots.scores, "not a table", "t")
    with Painters(1) as painters, pytest.raises(AttributeError):
        painters.draw([broken])


def test_a_sketch_that_does_not_pickle_is_drawn_here():
    unpicklable = plots.Sketch(lambda: plots.scores(pd.DataFrame({"p": [1.0]}), "here"))
    with Painters(1) as painters:
        assert painters.draw([unpicklable])[0][:4] == b"\x89PNG"


def test_a_helpers_warnings_are_raised_here():
    with Painters(1) as painters, pytest.warns(UserWarning, match="drawn with a warning"):
        painters.draw([plots.sketch(warning_figure)])


def test_a_report_drawn_with_helpers_is_the_report_drawn_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rows = [trial(f"t{i}", "abc"[i % 3], i // 3, loss=1.0 + i % 3 + 0.1 * i) for i in range(9)]
    curves = [r for i in range(9) for r in steps(f"t{i}", [3.0, 2.0 - 0.1 * i, 1.0])]
    folder = make_sweep(tmp_path, "s", rows, curves, seeds=3)
    alone = write_report(folder, out=tmp_path / "alone")
    monkeypatch.setattr(analysis.report, "PAINT_FROM", 0)
    monkeypatch.setattr(analysis.report, "HELPERS", 2)
    helped = write_report(folder, out=tmp_path / "helped")
    pngs = sorted(p.name for p in alone.glob("*.png"))
    assert len(pngs) >= 4 and pngs == sorted(p.name for p in helped.glob("*.png"))
    assert all((alone / n).read_bytes() == (helped / n).read_bytes() for n in pngs)
    html = [(f / "report.html").read_text().split("<h2", 1)[1] for f in (alone, helped)]
    assert html[0].rsplit("Generated", 1)[0] == html[1].rsplit("Generated", 1)[0]
