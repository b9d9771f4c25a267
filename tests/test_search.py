"""Search over seeds on a real local Ray: every config a searcher samples runs with every
seed, as one Tune trial; the searcher is told the aggregate over its seeds; ASHA stops a
config whole; a killed search resumes where it was."""

from __future__ import annotations

import json
import math
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import SWEEP, cli, cli_env, write_sweep

from orchestrator import run_sweep
from orchestrator.errors import InputError

pytestmark = pytest.mark.usefixtures("ray_instance")

NOISY = """
    import os
    import random
    import signal
    import time
    from pathlib import Path


    def quadratic(config, trial):
        if trial.seed == config.get("cursed_seed"):
            raise RuntimeError(f"seed {trial.seed} is cursed")
        if config.get("runs"):
            runs = Path(config["runs"])
            (runs / f"{trial.id}-{time.time_ns()}").touch()
            if len(list(runs.glob("*-*"))) == config.get("kill_at"):
                time.sleep(1)
                trial.report(step=0, loss=0.0)  # sends the trials before (in a batch)
                time.sleep(2)  # their rows are written
                driver = int((runs / "driver").read_text())
                os.killpg(driver, signal.SIGKILL)  # the driver and the Ray it started
        noise = random.Random(f"{trial.seed}-{config['x']}").gauss(0, 1)
        for step in range(3):
            trial.report(step=step, loss=(config["x"] - 0.3) ** 2 + 0.1 * noise + 1 / (step + 1))
        return {"final_noise": noise}


    def one(config, trial):
        raise AssertionError("a fused experiment ran its seeds one by one")


    def together(configs, trials):
        x = configs[0]["x"]
        for step in range(8):
            for trial in trials:
                trial.report(step=step, loss=(x - 0.3) ** 2 + 1 / (step + 1) + 0.01 * trial.seed)
        return [{"fused": 1.0} for _ in trials]


    one.fused = together
    one.fused.varies = ["seed"]
"""


def _spec(folder: Path, **fields) -> Path:
    spec = {
        "name": "s",
        "experiment": "noisy:quadratic",
        "grid": {"x": {"uniform": [0, 1]}},
        "seeds": 3,
        "search": {"algorithm": "optuna", "num_samples": 4, "metric": "loss", "mode": "min"},
        "storage": str(folder / "results"),
    }
    return write_sweep(folder, "noisy", NOISY, **{**spec, **fields})


def _trials(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results" / "s" / "trials")


def _seeds_per_config(trials: pd.DataFrame) -> list[list[int]]:
    return sorted(trials.groupby("config_id")["seed"].agg(sorted).tolist())


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_every_sampled_config_runs_every_seed_and_the_searcher_gets_their_mean(tmp_path, algorithm):
    search = {"algorithm": algorithm, "num_samples": 4, "metric": "loss", "mode": "min"}
    result = run_sweep(_spec(tmp_path, search=search), progress=None)
    trials = _trials(tmp_path)
    assert result.count("ok") == 12 and (trials["status"] == "ok").all()
    assert trials["config_id"].nunique() == 4
    assert _seeds_per_config(trials) == [[0, 1, 2]] * 4
    assert trials.groupby("config_id")["x"].nunique().eq(1).all()  # one config, three seeds
    assert (trials["bundle"] == trials["config_id"]).all()  # each config one Tune trial
    means = trials.groupby("config_id")["loss"].mean()
    assert result.told.keys() == set(means.index)
    for config, told in result.told.items():
        assert told == pytest.approx(means[config], abs=1e-12)
    # the seeds' own values differ: the searcher was told their mean, not one seed's
    assert trials.groupby("config_id")["loss"].nunique().eq(3).all()


@pytest.mark.parametrize("how", ["median", "worst"])
def test_the_searcher_gets_the_aggregate_the_spec_asks_for(tmp_path, how):
    search = {"algorithm": "random", "num_samples": 2, "metric": "loss", "mode": "min"}
    result = run_sweep(_spec(tmp_path, search={**search, "aggregate": how}), progress=None)
    trials = _trials(tmp_path)
    expected = trials.groupby("config_id")["loss"].agg("median" if how == "median" else "max")
    assert result.told == pytest.approx(expected.to_dict(), abs=1e-12)


def test_a_seed_that_raises_makes_its_config_failed_for_the_searcher(tmp_path):
    result = run_sweep(_spec(tmp_path, params={"cursed_seed": 1}), progress=None)
    trials = _trials(tmp_path)
    assert trials.groupby("seed")["status"].agg(set).to_dict() == {
        0: {"ok"},
        1: {"failed"},
        2: {"ok"},
    }
    assert trials.loc[trials["seed"] == 1, "error"].str.contains("seed 1 is cursed").all()
    assert len(result.told) == 4 and all(math.isnan(v) for v in result.told.values())
    assert trials.loc[trials["seed"] != 1, "loss"].notna().all()  # its siblings' rows stay


def test_asha_stops_a_config_whole_at_one_step_and_fused_seeds_run_fused(tmp_path):
    """x near 0.3 is best; with one config at a time, ASHA stops some configs after the
    grace period. A stopped config's three seeds all stop at the same step; the fused
    implementation ran (the plain function raises)."""
    scheduler = {"max_t": 8, "grace_period": 2, "reduction_factor": 2}
    search = {"algorithm": "random", "num_samples": 8, "metric": "loss", "mode": "min"}
    spec = _spec(
        tmp_path, experiment="noisy:one", search=search, scheduler=scheduler, max_concurrent=1
    )
    result = run_sweep(spec, progress=None)
    trials = _trials(tmp_path)
    steps = pd.read_parquet(tmp_path / "results" / "s" / "metrics")
    trials["last"] = trials["trial_id"].map(steps.groupby("trial_id")["step"].max())
    assert set(trials["status"]) <= {"ok", "stopped"} and "stopped" in set(trials["status"])
    per_config = trials.groupby("config_id").agg(
        statuses=("status", set), last=("last", set), seeds=("seed", sorted)
    )
    assert per_config["statuses"].map(len).eq(1).all()  # stopped whole, or not at all
    assert per_config["last"].map(len).eq(1).all()  # every seed at the same step
    stopped = per_config[per_config["statuses"] == {"stopped"}]
    assert stopped["last"].map(min).lt(7).all()
    assert per_config["seeds"].tolist() == [[0, 1, 2]] * 8
    assert (trials.loc[trials["status"] == "ok", "fused"] == 1.0).all()
    for config, told in result.told.items():  # ASHA's and the searcher's: the mean at a step
        rows = trials[trials["config_id"] == config]
        last = rows["last"].iloc[0]
        at = steps[steps["trial_id"].isin(rows["trial_id"]) & (steps["step"] == last)]
        assert told == pytest.approx(at["loss"].mean(), abs=1e-12)


def test_asha_over_seeds_that_cannot_train_together_is_refused_before_anything_runs(tmp_path):
    spec = _spec(tmp_path, scheduler={"max_t": 3})
    with pytest.raises(InputError, match="its seeds must train together, step by step"):
        run_sweep(spec, progress=None)
    assert not (tmp_path / "results").exists()


def test_a_killed_search_resumes_with_no_trial_twice_and_its_finished_configs_known(tmp_path):
    """The fifth trial (the second config's second seed) kills the driver and its Ray as it
    runs: one config is finished, one lacks two seeds, and one attempt was cut off."""
    runs = tmp_path / "runs"
    runs.mkdir()
    spec = _spec(tmp_path, params={"runs": str(runs), "kill_at": 5}, max_concurrent=1)
    folder = tmp_path / "results" / "s"
    driver = subprocess.Popen(
        [SWEEP, "run", str(spec)], cwd=tmp_path, env=cli_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (runs / "driver").write_text(str(driver.pid))
    assert driver.wait(timeout=180) == -signal.SIGKILL
    before = _trials(tmp_path)
    ok_before = set(before.loc[before["status"] == "ok", "trial_id"])
    assert before["status"].eq("ok").all() and len(ok_before) == 4
    assert pd.read_parquet(folder / "metrics")["trial_id"].nunique() == 5

    result = run_sweep(spec, progress=None)
    trials = _trials(tmp_path)
    ok = trials[trials["status"] == "ok"]
    assert ok["trial_id"].is_unique and len(ok) == 12
    means = ok.groupby("config_id")["loss"].mean()  # a resumed config's: over all its seeds
    assert len(result.told) == 3
    assert result.told == pytest.approx(means[list(result.told)].to_dict(), abs=1e-12)
    assert _seeds_per_config(ok) == [[0, 1, 2]] * 4  # num_samples counts configs
    ran = pd.Series([p.name.split("-")[0] for p in runs.glob("*-*")]).value_counts()
    assert not set(ran[ran > 1].index) & ok_before  # what succeeded before did not run again
    meta = json.loads((folder / "sweep.json").read_text())
    assert meta["runs"][-1]["search"] == {"configs": 3, "lacking_seeds": 1, "known": 1}
    assert ok.groupby("config_id")["x"].nunique().eq(1).all()  # a config's seeds share x


def test_optuna_knows_the_finished_configs_before_it_samples():
    """The searcher of a resumed sweep, as Tune sets it up: its study holds the finished
    configs with their values; a config whose value is NaN (a seed failed) is a failure."""
    from ray import tune

    from orchestrator.run.tuner import FinalMetricOptuna

    finished = [({"x": 0.25}, 0.5), ({"x": 0.75}, 0.25)]
    searcher = FinalMetricOptuna(metric="loss", mode="min", finished=finished)
    searcher.set_search_properties(None, None, {"x": tune.uniform(0, 1), "steps": 3})
    study = searcher._ot_study
    assert [(t.params, t.value, t.state.name) for t in study.trials] == [
        ({"x": 0.25}, 0.5, "COMPLETE"),
        ({"x": 0.75}, 0.25, "COMPLETE"),
    ]
    assert "x" in searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"loss": math.nan})
    assert study.trials[-1].state.name == "FAIL"


def test_dry_run_says_configs_and_trials_before_and_after_a_run(tmp_path):
    spec = _spec(tmp_path)
    first = cli("run", str(spec), "--dry-run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "optuna, 4 configs in all, each with 3 seeds [0, 1, 2] (12 trials)" in first.stdout
    assert "this run: 4 configs (0 sampled before that lack seeds, run first; 4 new)" in (
        first.stdout
    )
    assert "= 12 trials; 0 finished configs known to the searcher" in first.stdout
    assert "each config's seeds run as one Ray Tune trial, one after another" in first.stdout
    assert not (tmp_path / "results").exists()

    run_sweep(spec, overrides=["search.num_samples=2"], progress=None)
    later = cli("run", str(spec), "--dry-run", cwd=tmp_path)
    assert "trials: 12 in all, 6 already done, 6 to run" in later.stdout
    assert "this run: 2 configs (0 sampled before that lack seeds, run first; 2 new)" in (
        later.stdout
    )
    assert "= 6 trials; 2 finished configs known to the searcher" in later.stdout


def test_a_finished_config_sampled_again_runs_nothing_and_the_searcher_gets_its_mean(tmp_path):
    """One config in the space: the second run samples it again, with every seed done."""
    search = {"algorithm": "random", "num_samples": 1, "metric": "loss", "mode": "min"}
    spec = _spec(tmp_path, grid={"x": [0.5]}, search=search)
    run_sweep(spec, progress=None)
    again = run_sweep(spec, overrides=["search.num_samples=2"], progress=None)
    trials = _trials(tmp_path)
    assert len(trials) == 3 and again.rows == [] and not again.interrupted
    assert again.told == {trials["config_id"][0]: pytest.approx(trials["loss"].mean())}


def test_the_state_of_a_search_from_its_tables():
    """Finished configs (for Optuna), configs lacking seeds, rows left without a config
    by a killed driver, and trials done without the metric."""
    from orchestrator.objective import Objective
    from orchestrator.searched import searched
    from orchestrator.spec import load_spec
    from orchestrator.trials import TrialIndex, config_id, trial_id

    raw = {"name": "s", "experiment": "e", "grid": {"x": {"uniform": [0, 1]}}, "seeds": 2}
    spec = load_spec({**raw, "search": {"algorithm": "optuna", "num_samples": 5, "metric": "m",
                                        "mode": "min"}})  # fmt: skip
    rows = [(0.25, 0, "ok", 1.0), (0.25, 1, "ok", 3.0), (0.5, 0, "ok", None), (0.5, 1, "ok", 2.0),
            (0.75, 0, "ok", 1.0), (0.75, 1, "failed", None)]  # fmt: skip
    previous = pd.DataFrame(
        [{"trial_id": trial_id("e", {"x": x, "seed": s}), "config_id": config_id("e", {"x": x}),
          "x": x, "seed": s, "status": st, "m": m} for x, s, st, m in rows]
        + [{"trial_id": "left", "config_id": None, "x": None, "seed": None, "status": "failed"}]
    )  # fmt: skip
    done = frozenset(previous.loc[previous["status"] == "ok", "trial_id"])
    index = TrialIndex("e", seeds=(0, 1), done=done)
    state = searched(spec, previous, index, Objective("m", "min"))
    assert state.finished == [({"x": 0.25}, 2.0)]  # 0.5 has a seed without the metric: NaN
    assert state.unfinished == [{"x": 0.75}]  # the row left behind is no config
    assert state.samples == 5 - 2 and state.trials == 1 + 2 * 2
    assert math.isnan(state.values[trial_id("e", {"x": 0.5, "seed": 0})])
    random = load_spec({**raw, "search": {"algorithm": "random", "num_samples": 5}})
    assert searched(random, previous, index, None).finished == []  # random learns nothing
