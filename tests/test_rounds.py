"""Seeds added until decided: the rule (known answers, and its error rate in simulation) and
sequential sweeps on a real local Ray (an effect that stops early, none that runs to the
most seeds, a driver killed mid-round)."""

from __future__ import annotations

import json
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import SWEEP, cli_env, write_sweep
from scipy import stats

from analysis.sequential import Rule, looks, simulate, verdict
from orchestrator import run_sweep
from orchestrator.errors import InputError


def test_looks_and_the_level_of_each_test():
    assert looks(3, 30, 3) == 10 and looks(3, 3, 3) == 1 and looks(2, 9, 3) == 4
    rule = Rule("m", "act", "min", alpha=0.05, looks=10)
    assert rule.level(2) == pytest.approx(0.005)
    assert rule.level(3) == pytest.approx(0.05 / 30)  # 3 pairs of levels


def test_a_verdict_is_welchs_test_of_the_best_against_each_other_level():
    a, b, c = np.array([1.0, 1.2, 0.9, 1.1]), np.array([2.0, 2.4, 1.9]), np.array([1.5, 1.7, 1.6])
    rule = Rule("m", "act", "min", alpha=0.05, looks=1)
    result = verdict({"a": a, "b": b, "c": c}, rule)
    welch = [stats.ttest_ind(a, other, equal_var=False).pvalue for other in (b, c)]
    assert result.best == "a" and result.n == 3
    assert result.p_max == pytest.approx(max(welch), rel=1e-12)
    assert result.decided == (max(welch) < 0.05 / 3)
    assert verdict({"a": a, "b": b}, Rule("m", "act", "max", looks=1)).best == "b"
    assert not verdict({"a": a[:1], "b": b}, rule).decided  # one seed: nothing to test


@pytest.mark.parametrize("levels", [2, 3])
def test_with_no_effect_the_rule_declares_a_winner_at_most_alpha_of_the_time(levels):
    """2,000 simulated strata, looked at after 3, 6, ..., 30 seeds: a plain 5% test at every
    look would declare a winner far more often than 5%."""
    rule = Rule("m", "by", "min", alpha=0.05, looks=looks(3, 30, 3))
    outcome = simulate(rule, [0.0] * levels, 3, 30, 3, sweeps=2000, seed=levels)
    assert outcome["declared"] <= 0.05
    naive = simulate(Rule("m", "by", "min", alpha=0.05, looks=1), [0.0, 0.0], 3, 30, 3, 2000)
    assert naive["declared"] > 0.1  # what looking without paying for it does


def test_with_a_large_effect_the_rule_stops_early_and_right():
    rule = Rule("m", "by", "min", alpha=0.05, looks=looks(3, 30, 3))
    outcome = simulate(rule, [0.0, 2.0], 3, 30, 3, sweeps=2000)
    assert outcome["declared_best"] >= 0.99 and outcome["mean_seeds"] < 12


EXPERIMENT = """
    import os
    import random
    import signal
    import time
    from pathlib import Path


    def two_levels(config, trial):
        runs = Path(config["runs"])
        (runs / f"{trial.id}-{time.time_ns()}").touch()
        if len(list(runs.glob("*-*"))) == config.get("kill_at"):
            time.sleep(2)  # the rows of the trials before are written
            os.killpg(int((runs / "driver").read_text()), signal.SIGKILL)
        noise = random.Random(f"{trial.seed}-{config['level']}").gauss(0, 1)
        return {"loss": (config["effect"] if config["level"] == "b" else 0.0) + noise}
"""


def _spec(folder, effect: float, kill_at: int = 0, **fields):
    runs = folder / "runs"
    runs.mkdir(exist_ok=True)
    until = {"metric": "loss", "by": "level", "mode": "min"}
    rounds = {"min": 3, "max": 9, "step": 3, "until": until}
    spec = {
        "name": "seq",
        "experiment": "two:two_levels",
        "grid": {"level": ["a", "b"], "part": [1, 2]},
        "params": {"effect": effect, "runs": str(runs), "kill_at": kill_at},
        "seeds": rounds,
        "storage": str(folder / "results"),
        **fields,
    }
    return write_sweep(folder, "two", EXPERIMENT, **spec)


def _trials(folder) -> pd.DataFrame:
    return pd.read_parquet(folder / "results" / "seq" / "trials")


@pytest.mark.usefixtures("ray_instance")
def test_a_large_effect_stops_after_the_first_round(tmp_path):
    result = run_sweep(_spec(tmp_path, effect=5.0), progress=None)
    trials = _trials(tmp_path)
    assert len(trials) == 2 * 2 * 3 and result.total == 2 * 2 * 9
    assert trials.groupby(["level", "part"])["seed"].agg(sorted).tolist() == [[0, 1, 2]] * 4
    assert result.decisions[0] == "stopped: every comparison is decided (2)"
    assert all("decided after 3 seeds: best level=a" in line for line in result.decisions[1:])
    assert run_sweep(_spec(tmp_path, effect=5.0), progress=None).rows == []  # nothing more


@pytest.mark.usefixtures("ray_instance")
@pytest.mark.parametrize("bundle", [None, {"size": 3}])
def test_no_effect_runs_every_comparison_to_the_most_seeds(tmp_path, bundle):
    """With bundles, each round's new seeds of a cell run as one bundle."""
    result = run_sweep(_spec(tmp_path, effect=0.0, bundle=bundle), progress=None)
    trials = _trials(tmp_path)
    assert len(trials) == 2 * 2 * 9 and result.count("ok") == 36
    if bundle:
        members = trials.groupby("bundle").agg(
            size=("trial_id", "size"),
            rounds=("seed", lambda seeds: len({seed // 3 for seed in seeds})),
            cells=("level", "nunique"),
        )
        assert len(members) == 12 and (members["size"] == 3).all()
        assert (members["rounds"] == 1).all() and (members["cells"] == 1).all()
    assert result.decisions[0] == "stopped: 2 of 2 comparisons undecided at the most seeds"
    meta = json.loads((tmp_path / "results" / "seq" / "sweep.json").read_text())
    assert [run["to_run"] for run in meta["runs"]] == [12, 12, 12]  # a run per round


def test_a_driver_killed_mid_round_continues_that_round(tmp_path, ray_instance):
    """No effect, rounds of 12 trials: the 17th trial (round 2) kills the driver; the rerun
    runs the rest of round 2, then round 3, each trial once."""
    spec = _spec(tmp_path, effect=0.0, kill_at=17, max_concurrent=1)  # one at a time: 17th
    driver = subprocess.Popen(
        [SWEEP, "run", str(spec)], cwd=tmp_path, env=cli_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (tmp_path / "runs" / "driver").write_text(str(driver.pid))
    assert driver.wait(timeout=300) == -signal.SIGKILL
    before = _trials(tmp_path)
    assert (before["status"] == "ok").all() and len(before) == 16

    result = run_sweep(spec, progress=None)
    trials = _trials(tmp_path)
    ok = trials[trials["status"] == "ok"]
    assert ok["trial_id"].is_unique and len(ok) == 36
    assert set(before["trial_id"]).isdisjoint(result_ids(result))  # not run again
    meta = json.loads((tmp_path / "results" / "seq" / "sweep.json").read_text())
    rounds = [run["to_run"] for run in meta["runs"]]  # the killed run's round 2 is one
    assert rounds == [12, 12, 8, 12]  # then the rest of round 2, and round 3
    assert result.decisions[0] == "stopped: 2 of 2 comparisons undecided at the most seeds"


def result_ids(result) -> set[str]:
    return {row["trial_id"] for row in result.rows if row["status"] == "ok"}


@pytest.mark.parametrize(
    "seeds, message",
    [
        ({"min": 1, "max": 5, "until": {"metric": "m", "by": "level", "mode": "min"}}, "seeds.min"),
        ({"min": 3, "max": 2, "until": {"metric": "m", "by": "level", "mode": "min"}}, "below"),
        ({"min": 3, "max": 9, "until": {"metric": "m", "by": "levels", "mode": "min"}},
         'did you mean "level"'),
        ({"min": 3, "max": 9, "until": {"metric": "m", "by": "level"}}, "seeds.until.mode"),
    ],
)  # fmt: skip
def test_bad_sequential_seeds_say_what_and_where(seeds, message):
    from orchestrator.spec import load_spec

    raw = {"name": "s", "experiment": "e", "grid": {"level": ["a", "b"]}, "seeds": seeds}
    with pytest.raises(InputError, match=message):
        load_spec(raw)


def test_sequential_seeds_need_a_grid_search():
    from orchestrator.spec import load_spec

    until = {"metric": "m", "by": "level", "mode": "min"}
    raw = {"name": "s", "experiment": "e", "grid": {"level": {"choice": ["a", "b"]}},
           "seeds": {"min": 3, "max": 9, "until": until},
           "search": {"algorithm": "random", "num_samples": 2}}  # fmt: skip
    with pytest.raises(InputError, match="need search: grid"):
        load_spec(raw)
