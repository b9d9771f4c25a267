"""Reports of awkward sweeps, written by the real store: findings in either order, a
random search, a metric that is NaN everywhere, compare with pairs on one side only,
and an --out that would destroy another folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sweep, steps, trial

from analysis import AnalysisError, load, write_report


def report_text(folder: Path, **kwargs) -> str:
    return (write_report(folder, **kwargs) / "report.md").read_text()


def test_a_finding_names_the_lower_group_first_with_its_own_numbers(tmp_path: Path):
    # group a is the HIGH one, so A - B > 0 and the sentence must swap names and numbers
    rows = [trial(f"a{i}", "a", i, loss=10.0 + d) for i, d in enumerate([0.1, -0.1, 0.0])]
    rows += [trial(f"b{i}", "b", i, loss=1.0 + d) for i, d in enumerate([0.1, -0.1, 0.0])]
    md = report_text(make_sweep(tmp_path, "s", rows, [], seeds=3))
    line = next(x for x in md.splitlines() if "has lower loss than" in x)
    assert line.startswith("- **b** has lower loss than **a**: 1 vs 10 (difference -9, ")
    assert "Hedges' g = -" in line and "n = 3/3" in line


def test_a_random_search_reports_without_asking_for_seeds(tmp_path: Path):
    rows = [trial(f"t{i}", "a" if i % 2 else "b", i, loss=float(i)) for i in range(6)]
    folder = make_sweep(tmp_path, "s", rows, [], search="random")
    md = report_text(folder)
    assert "- Groups with fewer successful seeds than asked: 0." in md


def test_a_metric_that_is_nan_everywhere_is_reported_not_dropped(tmp_path: Path):
    rows = [trial(f"t{i}", "ab"[i % 2], i, loss=float(i), diverged=np.nan) for i in range(4)]
    folder = make_sweep(tmp_path, "s", rows, [])
    assert "diverged" in load(folder).final_metrics
    md = report_text(folder)
    assert "- NaN or infinite values: 4." in md
    assert "| final | diverged | 4 | 0 | 4 |" in md


def test_compare_with_pairs_on_one_side_and_different_factors(tmp_path: Path):
    pair = {"seed_a": 0, "seed_b": 1, "trial_a": "t0", "trial_b": "t1", "steps": 3, "pd": 0.2}
    one = make_sweep(tmp_path, "one", [trial(f"t{i}", "ab"[i // 2], i % 2, loss=1.0 + i)
                                       for i in range(4)], [],
                     pairs=[{**pair, "act": "a"}, {**pair, "act": "b", "pd": 0.3}])  # fmt: skip
    rows = [{"trial_id": f"w{i}", "width": w, "seed": i, "status": "ok", "attempt": 1,
             "loss": 5.0 + i} for i, w in enumerate([8, 8, 16, 16])]  # fmt: skip
    other = make_sweep(tmp_path, "other", rows, [], grid={"width": [8, 16]})
    sweep = load([one, other])
    out = write_report(sweep, tmp_path / "compared")
    factors = pd.read_csv(out / "factors.csv").set_index(["factor", "metric"])
    assert factors.loc[("act", "loss"), "levels"] == 2  # the other sweep is not a level of act
    assert factors.loc[("width", "loss"), "levels"] == 2
    assert factors.loc[("sweep", "loss"), "levels"] == 2
    summary = pd.read_csv(out / "summary.csv")
    pd_rows = summary[summary["metric"] == "pd"].set_index("group")["mean"]
    assert pd_rows.to_dict() == {"sweep=one act=a": 0.2, "sweep=one act=b": 0.3}


def test_out_never_replaces_a_folder_that_is_not_a_report(tmp_path: Path):
    folder = make_sweep(tmp_path, "s", [trial("t1", "a", 0, loss=1.0)], [])
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(AnalysisError, match="holds files that are not a report"):
        write_report(folder, out=folder)
    assert sorted(p.name for p in folder.iterdir()) == before
    report = write_report(folder, out=tmp_path / "mine")
    assert write_report(folder, out=report) == report  # an old report is replaced


def test_no_successful_trial_is_said_plainly(tmp_path: Path):
    folder = make_sweep(tmp_path, "s", [trial("t1", "a", 0, status="failed")], [])
    with pytest.raises(AnalysisError, match="no trial succeeded"):
        write_report(folder)
    assert not (folder / "report").exists()


def test_one_group_one_trial_still_reports(tmp_path: Path):
    md = report_text(make_sweep(tmp_path, "s", [trial("t1", "a", 0, loss=1.0)], []))
    assert "1 group (sweep) with 1 successful seeds each" in md
    assert "One group only: there is nothing to compare." in md
    assert "Losses going down: not checked (no per-step loss reported)." in md


def test_steps_from_failed_attempts_only_do_not_break_the_curves(tmp_path: Path):
    rows = [trial("t1", "a", 0, status="failed"), trial("t2", "b", 0, loss=1.0)]
    md = report_text(make_sweep(tmp_path, "s", rows, steps("t1", [1.0, 2.0], attempt=0)))
    assert "## Curves" in md and "curve-loss" not in md


def test_a_family_default_metric_never_reported_is_skipped_a_spec_one_refused(tmp_path: Path):
    from analysis.settings import ReportSettings

    rows = [trial(f"t{i}", "ab"[i % 2], i, loss=float(i)) for i in range(4)]
    folder = make_sweep(tmp_path, "s", rows, [])
    # an experiment's defaults may name metrics a sweep lacks (an older version's sweep)
    family = ReportSettings(metrics=["loss", "diverged"], directions={"loss": "lower"})
    md = report_text(folder, defaults=family)
    assert "| group | loss |" in md and "diverged" not in md
    with pytest.raises(AnalysisError, match=r"names \['diverged'\], which no trial reported"):
        write_report(folder, settings=ReportSettings(metrics=["loss", "diverged"]))
