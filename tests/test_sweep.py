"""Sweeps end to end on a real local Ray: a user's own function, the Parquet
contract, failures, retries, resume, extend, searchers and early stopping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_sweep

from orchestrator import run_sweep, trial_id

pytestmark = pytest.mark.usefixtures("ray_instance")

USER_MODULE = """
    from pathlib import Path
    import numpy as np

    def experiment(config, trial):
        if Path(config.get("fail_marker", "/nonexistent")).exists() and trial.seed == 1:
            raise RuntimeError(f"seed {trial.seed} is cursed")
        draw = float(np.random.rand())  # seeded by the orchestrator before this runs
        for step in range(config.get("steps", 3)):
            trial.report(step=step, loss=config["x"] + 1.0 / (step + 1))
        trial.save_artifact("preds.npy", np.full(3, float(config["x"])))
        odd = float("nan") if config["x"] == 2 else float("inf") if config["x"] == 3 else 1.0
        return {"score": config["x"] * 10 + trial.seed, "draw": draw, "odd": odd}
"""

TRIAL_COLUMNS = [
    "trial_id", "config_id", "sweep", "experiment", "status", "attempt", "error", "started_at",
    "finished_at", "duration_s", "node", "host", "gpu_ids", "run_id", "git_commit",
    "git_dirty", "version_python", "version_ray", "version_torch", "version_numpy",
    "device", "gpu_name", "gpu_memory_total", "gpu_memory_peak", "gpu_memory_reserved",
    "cuda_version", "gpu_driver",
]  # fmt: skip


def write_spec(folder: Path, **fields) -> Path:
    """A spec for the user module above, next to it in `folder`."""
    spec = {
        "name": "mine",
        "experiment": "user_exp:experiment",
        "grid": {"x": [1, 2, 3]},
        "seeds": 2,
        "storage": str(folder / "results"),
    }
    return write_sweep(folder, "user_exp", USER_MODULE, **{**spec, **fields})


def trials_of(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results" / "mine" / "trials")


def test_a_users_own_function_fills_the_parquet_contract(tmp_path: Path):
    result = run_sweep(write_spec(tmp_path), progress=None)
    assert (result.total, result.count("ok"), result.count("failed")) == (6, 6, 0)

    trials = trials_of(tmp_path)
    assert len(trials) == 6
    assert set(TRIAL_COLUMNS + ["x", "seed", "score", "draw", "odd"]) <= set(trials)
    assert (trials["status"] == "ok").all() and (trials["attempt"] == 1).all()
    assert list(trials["score"].sort_values()) == [10, 11, 20, 21, 30, 31]
    assert (trials["device"] == "cpu").all()  # where it ran; no GPU, so nothing of one
    gpu = [c for c in TRIAL_COLUMNS if c.startswith(("gpu_", "cuda")) and c != "gpu_ids"]
    assert trials[gpu].isna().all().all() and trials["gpu_ids"].eq("").all()
    assert trials["node"].notna().all() and (trials["duration_s"] > 0).all()
    for row in trials.itertuples():
        assert row.trial_id == trial_id("user_exp:experiment", {"x": row.x, "seed": row.seed})
        assert row.config_id == trial_id("user_exp:experiment", {"x": row.x})  # seed left out
        np.random.seed(row.seed)
        assert row.draw == np.random.rand()  # trial.seed reached NumPy
        preds = tmp_path / "results" / "mine" / "artifacts" / row.trial_id / "preds.npy"
        assert np.array_equal(np.load(preds), np.full(3, float(row.x)))

    seeds = trials.groupby("config_id").agg(x=("x", "unique"), seed=("seed", sorted))
    assert len(seeds) == 3 and seeds["x"].map(len).eq(1).all()  # one config each
    assert seeds["seed"].map(tuple).tolist() == [(0, 1)] * 3  # ... with all its seeds

    odd = trials.set_index("x")["odd"]
    assert math.isnan(odd[2].iloc[0]) and math.isinf(odd[3].iloc[0])  # stored as such

    metrics = pd.read_parquet(tmp_path / "results" / "mine" / "metrics")
    assert len(metrics) == 6 * 3
    assert sorted(metrics.groupby("trial_id")["step"].apply(list).iloc[0]) == [0, 1, 2]
    joined = metrics.merge(trials[["trial_id", "x"]], on="trial_id")
    assert np.allclose(joined["loss"], joined["x"] + 1.0 / (joined["step"] + 1))

    meta = json.loads((tmp_path / "results" / "mine" / "sweep.json").read_text())
    assert meta["spec"]["grid"] == {"x": [1, 2, 3]}
    assert meta["runs"][0]["status"] == "finished" and meta["runs"][0]["ok"] == 6


def test_failures_are_recorded_retried_and_resumed(tmp_path: Path):
    marker = tmp_path / "fail-now"
    marker.touch()
    spec = write_spec(tmp_path, retries=1, params={"fail_marker": str(marker)}, grid={"x": [1, 2]})

    first = run_sweep(spec, progress=None)
    assert (first.count("ok"), first.count("failed")) == (2, 4)  # seed 1: 2 trials x 2 attempts
    trials = trials_of(tmp_path)
    failed = trials[trials["status"] == "failed"]
    assert sorted(failed["attempt"]) == [1, 1, 2, 2] and (failed["seed"] == 1).all()
    assert failed["error"].str.contains("RuntimeError: seed 1 is cursed").all()
    assert failed["error"].str.contains("Traceback").all()

    marker.unlink()
    second = run_sweep(spec, progress=None)
    assert (second.skipped, second.count("ok"), second.count("failed")) == (2, 2, 0)
    assert {row["trial_id"] for row in second.rows} == set(failed["trial_id"])  # only those
    trials = trials_of(tmp_path)
    assert len(trials) == 6 + 2
    assert sorted(trials.loc[trials["status"] == "ok", "attempt"]) == [1, 1, 3, 3]
    assert trials.loc[trials["status"] == "ok", "trial_id"].is_unique

    third = run_sweep(spec, progress=None)
    assert third.rows == [] and third.skipped == 4  # nothing left to do


def test_extending_seeds_and_grid_runs_only_new_cells(tmp_path: Path):
    run_sweep(write_spec(tmp_path, grid={"x": [1, 2]}), progress=None)
    before = trials_of(tmp_path)
    extended = run_sweep(write_spec(tmp_path, seeds=3, grid={"x": [1, 2, 3]}), progress=None)
    assert (extended.total, extended.skipped, extended.count("ok")) == (9, 4, 5)
    after = trials_of(tmp_path)
    assert len(after) == 9 and after["trial_id"].is_unique
    assert set(before["trial_id"]) < set(after["trial_id"])
    new = after[~after["trial_id"].isin(before["trial_id"])]
    assert sorted(zip(new["x"], new["seed"], strict=True)) == [
        (1, 2),
        (2, 2),
        (3, 0),
        (3, 1),
        (3, 2),
    ]
    meta = json.loads((tmp_path / "results" / "mine" / "sweep.json").read_text())
    assert [r["to_run"] for r in meta["runs"]] == [4, 5]


def test_random_search_samples_from_distributions(tmp_path: Path):
    spec = write_spec(
        tmp_path,
        grid={"x": {"uniform": [5, 6]}},
        seeds=[7],
        search={"algorithm": "random", "num_samples": 4},
    )
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == 4
    trials = trials_of(tmp_path)
    assert trials["x"].between(5, 6).all() and trials["x"].nunique() == 4
    assert (trials["seed"] == 7).all()
    assert run_sweep(spec, progress=None).rows == []  # all samples done: resume runs nothing


def test_asha_stops_bad_trials_early(tmp_path: Path):
    spec = write_spec(
        tmp_path,
        grid={"x": [0, 10, 20, 30, 40, 50]},
        seeds=1,
        params={"steps": 20},
        max_concurrent=1,
        scheduler={"metric": "loss", "mode": "min", "max_t": 20, "grace_period": 2,
                   "reduction_factor": 2},
    )  # fmt: skip
    result = run_sweep(spec, progress=None)
    trials = trials_of(tmp_path).set_index("x")
    assert set(trials["status"]) == {"ok", "stopped"}
    assert trials.loc[0, "status"] == "ok"  # the best trial ran to the end
    steps = pd.read_parquet(tmp_path / "results" / "mine" / "metrics").groupby("trial_id").size()
    stopped = trials.loc[trials["status"] == "stopped", "trial_id"]
    assert (steps[stopped] < 20).all()
    assert result.count("stopped") == len(stopped)
    assert run_sweep(spec, progress=None).rows == []  # stopped early counts as done


def test_bad_metrics_fail_the_trial_with_a_clear_message(tmp_path: Path):
    source = "def experiment(config, trial):\n    trial.report(step=0, loss=[1, 2])\n"
    spec = {"name": "bad", "experiment": "bad_exp:experiment", "storage": str(tmp_path / "r")}
    write_sweep(tmp_path, "bad_exp", source, **spec)
    result = run_sweep(tmp_path / "spec.yaml", progress=None)
    assert result.count("failed") == 1
    assert (
        'metric "loss" is list; report numbers, strings or one-element tensors'
        in (result.rows[0]["error"])
    )


def test_the_artifact_writer_actor_writes_for_remote_nodes(tmp_path: Path, ray_instance):
    from orchestrator.store.artifacts import remote_writer, writer_name

    node = ray_instance.get_runtime_context().get_node_id()
    writer = remote_writer(str(tmp_path), "s", node)
    path = ray_instance.get(writer.write.remote("t1", "a.txt", b"from afar"))
    assert Path(path).read_bytes() == b"from afar"
    same = ray_instance.get_actor(writer_name(str(tmp_path), "s"), namespace="raysweep")
    assert same._actor_id == writer._actor_id  # one writer per sweep, found by name
    ray_instance.kill(same)


def test_progress_goes_to_any_stream_the_caller_gives(tmp_path: Path):
    """A notebook's or a log file's stream: Tune pickles its callbacks, and a file opened
    for writing does not pickle."""
    log = tmp_path / "progress.log"
    with log.open("w") as out:
        result = run_sweep(write_spec(tmp_path, seeds=1, grid={"x": [1]}), progress=out)
    assert result.count("ok") == 1
    assert "[mine] 1/1 done" in log.read_text()
