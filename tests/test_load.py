"""analysis.load and analysis.checks on sweep folders written by the real store:
attempts, unified columns across files and sweeps, factors, and the checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_sweep, steps, trial

from analysis import checks
from analysis.errors import AnalysisError
from analysis.settings import ReportSettings
from analysis.sweep import load
from orchestrator.store.folder import SweepStore


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rows = [
        trial("t1", "a", 0, loss=1.0),
        trial("t2", "a", 1, loss=2.0, acc=0.5),  # a metric only later trials report
        trial("t3", "b", 0, status="failed", error="Traceback\nValueError: boom"),
        trial("t3", "b", 0, attempt=1, loss=np.nan),  # retried: NaN, but ok
        trial("t4", "b", 1, status="failed", error="RuntimeError: out of memory"),
    ]
    curve = steps("t1", [3.0, 2.0, 1.0]) + steps("t2", [1.0, 1.5, 2.0])
    curve += steps("t3", [np.inf, 1]) + steps("t3", [2.0, 1.0, np.nan], attempt=1)
    return make_sweep(tmp_path, "s1", rows, curve)


def test_load_keeps_every_attempt_and_every_column(folder: Path):
    sweep = load(folder)
    assert len(sweep.trials) == 5 and "acc" in sweep.trials
    assert sweep.trials.loc[sweep.trials["trial_id"] == "t1", "acc"].isna().all()
    assert sorted(sweep.ok["trial_id"]) == ["t1", "t2", "t3"]  # t4 never succeeded
    assert sweep.ok.set_index("trial_id").loc["t3", "attempt"] == 1
    assert sweep.final_metrics == ["loss", "acc"]
    assert sweep.step_metrics == ["loss"]
    assert sweep.factors == ["act"]  # steps is a constant param, seed is not a factor
    assert sweep.label(sweep.ok).tolist() == sweep.ok["act"].tolist()
    assert sweep.seeds_asked() == {"s1": 2}
    assert len(sweep.steps) == 9 and set(sweep.steps["group"]) == {"a", "b"}


def test_load_a_results_root_unifies_columns_and_makes_the_sweep_a_factor(folder: Path):
    other = make_sweep(folder.parent, "s2", [trial("t1", "a", 0, loss=5.0, bleu=30.0)], [])
    sweep = load(folder.parent)
    assert sweep.names == ["s1", "s2"] and {"acc", "bleu"} <= set(sweep.trials.columns)
    assert sweep.factors[0] == "sweep"
    # the same trial id in two sweeps stays two trials
    assert len(sweep.ok[sweep.ok["trial_id"] == "t1"]) == 2
    assert "sweep=s2 act=a" in set(sweep.label(sweep.ok))
    assert load([folder, other]).names == ["s1", "s2"]


def test_load_says_what_is_wrong(tmp_path: Path):
    with pytest.raises(AnalysisError, match="does not exist"):
        load(tmp_path / "nothing")
    with pytest.raises(AnalysisError, match="holds no sweep.json"):
        load(tmp_path)
    SweepStore(str(tmp_path), "empty").write_meta({"name": "empty"})
    with pytest.raises(AnalysisError, match="no trial has finished yet"):
        load(tmp_path / "empty")


def test_checks_find_failures_nan_stuck_losses_and_missing_seeds(folder: Path):
    sweep = load(folder)
    failed = checks.failed(sweep)
    assert failed[["trial_id", "group", "attempts", "error"]].values.tolist() == [
        ["t4", "b", 1, "RuntimeError: out of memory"]
    ]
    bad = checks.non_finite(sweep)
    # the missing acc of t1 is not a NaN; the inf of t3's failed attempt does not count
    assert bad.values.tolist() == [["final", "loss", 1, 0, 1], ["per step", "loss", 1, 0, 1]]
    stuck = checks.not_converged(sweep, ReportSettings())
    assert stuck[["trial_id", "first", "last"]].values.tolist() == [["t2", 1.0, 2.0]]
    short = checks.short_groups(sweep)
    assert short[["group", "n", "asked"]].values.tolist() == [["b", 1, 2]]


def test_declared_directions_choose_which_losses_must_fall(folder: Path):
    sweep = load(folder)
    assert checks.loss_metrics(sweep, ReportSettings()) == ["loss"]  # by name
    higher = ReportSettings(directions={"loss": "higher"})
    assert checks.loss_metrics(sweep, higher) == ["loss"]  # none declared lower: by name
    assert checks.not_converged(sweep, ReportSettings(directions={"loss": "lower"})).shape[0] == 1
