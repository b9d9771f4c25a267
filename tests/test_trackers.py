"""Trackers (spec `log:`, `sweep run --log`): each trial of a real sweep, fused members
included, is one run in TensorBoard, MLflow and W&B (offline, files only), holding the
same config, steps and final metrics as the sweep's own tables; a tracker that fails is
said once and the tables come out the same."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, write_sweep

from orchestrator.trackers import absolute_uri

# Fused by seed in bundles of two; x = -1 fails, the whole bundle with it. With MLflow on
# files, each step also reports `logged`: how many of its steps MLflow held as it ran.
TRACKED = """
import os

from pydantic import BaseModel

from orchestrator import experiment


def logged(trial):
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith("file:"):
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.search_runs(
        [client.get_experiment_by_name("tracked").experiment_id],
        f"tags.`raysweep.trial_id` = '{trial.id}'",
    )
    return {"logged": len(client.get_metric_history(found[0].info.run_id, "value"))}


class Params(BaseModel):
    x: float = 1.0
    steps: int = 4


def together(configs, trials):
    for step in range(configs[0]["steps"]):
        for config, trial in zip(configs, trials):
            value = config["x"] * step + config["seed"]
            trial.report(step=step, value=value, label="text", **logged(trial))
    if configs[0]["x"] < 0:
        raise ValueError("x must not be negative")
    return [{"final": config["x"] * 10 + config["seed"]} for config in configs]


@experiment(params=Params, fused=together, varies=["seed"])
def tracked(config, trial):
    return together([config], [trial])[0]
"""

SPEC = dict(
    name="tracked",
    experiment="tracked:tracked",
    grid={"x": [1.0, 2.0, -1.0]},
    seeds=2,
    bundle={"size": 2, "by": ["seed"]},
)
ENV = {  # relative paths: the driver's folder holds them, not the trial's
    "MLFLOW_TRACKING_URI": "file:mlruns",
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "MLFLOW_EXPERIMENT_NAME": None,
    "WANDB_MODE": "offline",
    "WANDB_DIR": "wandb-runs",
    "WANDB_PROJECT": "lab",
}


def run(folder: Path, *args: str, env: dict | None = None):
    spec = write_sweep(folder, "tracked", TRACKED, **SPEC)
    out = cli("run", str(spec), "-q", *args, cwd=folder, env={**ENV, **(env or {})})
    sweep = folder / "results" / "tracked"
    trials = pd.read_parquet(sweep / "trials").set_index("trial_id")
    steps = pd.read_parquet(sweep / "metrics").sort_values(["trial_id", "step"])
    return out, trials, steps


@pytest.fixture(scope="module")
def logged(tmp_path_factory, ray_instance):
    folder = tmp_path_factory.mktemp("logged")
    out, trials, steps = run(folder, "--log", "tensorboard", "--log", "mlflow", "--log", "wandb")
    assert out.returncode == 1, out.stderr  # the x = -1 bundle failed
    assert "Traceback" not in out.stderr and "failed (" not in out.stderr, out.stderr
    return folder, trials, steps


def test_trackers_hold_each_step_as_the_trial_runs(logged):
    _, _, steps = logged
    assert list(steps.logged) == list(steps.step)  # at step s, MLflow held steps 0..s-1


def expected_steps(steps: pd.DataFrame, trial: str) -> list[tuple[int, float]]:
    mine = steps[steps.trial_id == trial]
    return list(zip(mine.step.astype(int), mine.value.astype(float), strict=True))


def test_tensorboard_has_one_event_folder_per_trial_with_every_step(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, trials, steps = logged
    runs = folder / "results" / "tracked" / "tensorboard"
    assert sorted(p.name for p in runs.iterdir()) == sorted(trials.index)
    for trial, row in trials.iterrows():
        assert len(list((runs / trial).iterdir())) == 1  # one event file: one attempt
        events = EventAccumulator(str(runs / trial))
        events.Reload()
        got = [(e.step, e.value) for e in events.Scalars("value")]
        assert got == expected_steps(steps, trial)
        assert "label" not in events.Tags()["scalars"]  # text is no scalar
        if row.status == "ok":
            assert [e.value for e in events.Scalars("final/final")] == [row.final]
        else:
            assert "final/final" not in events.Tags()["scalars"]


def test_mlflow_has_a_run_per_trial_with_params_metric_histories_and_status(logged):
    from mlflow.tracking import MlflowClient

    folder, trials, steps = logged
    client = MlflowClient((folder / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["raysweep.trial_id"] for r in runs) == sorted(trials.index)
    for r in runs:
        trial = trials.loc[r.data.tags["raysweep.trial_id"]]
        assert r.data.tags["raysweep.sweep"] == "tracked"
        assert r.data.tags["raysweep.config_id"] == trial.config_id
        assert r.info.run_name == f"x={trial.x} seed={trial.seed}"
        assert r.data.params == {"x": str(trial.x), "steps": "4", "seed": str(trial.seed)}
        history = client.get_metric_history(r.info.run_id, "value")
        assert [(m.step, m.value) for m in history] == expected_steps(steps, trial.name)
        if trial.status == "ok":
            assert r.info.status == "FINISHED" and r.data.metrics["final"] == trial.final
        else:
            assert r.info.status == "FAILED" and "final" not in r.data.metrics
            assert r.data.tags["raysweep.error"] == "ValueError: x must not be negative"


def test_wandb_offline_has_a_run_per_trial_with_config_and_summary(logged):
    folder, trials, steps = logged
    runs = sorted((folder / "wandb-runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == len(trials)
    seen = set()
    for path in runs:
        run = wandb_run(path)
        trial = trials.loc[run["config"]["raysweep"]["trial_id"]]
        seen.add(trial.name)
        assert (run["project"], run["group"], run["job_type"]) == (
            "lab",
            "tracked",
            trial.config_id,
        )
        assert {k: run["config"][k] for k in ("x", "seed", "steps")} == {
            "x": trial.x,
            "seed": trial.seed,
            "steps": 4,
        }
        assert run["history"] == expected_steps(steps, trial.name)
        assert run["summary"]["status"] == trial.status
        assert run["exit"] == (0 if trial.status == "ok" else 1)
        if trial.status == "ok":
            assert run["summary"]["final"] == trial.final
    assert seen == set(trials.index)


def test_a_tracker_that_fails_is_said_once_and_the_tables_are_the_same(logged, tmp_path):
    # MLflow's server does not answer (found on the driver); TensorBoard cannot make its
    # folders (found on every worker, for every trial).
    (tmp_path / "results" / "tracked").mkdir(parents=True)
    (tmp_path / "results" / "tracked" / "tensorboard").write_text("a file, not a folder")
    down = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    out, trials, steps = run(tmp_path, "--log", "tensorboard", "--log", "mlflow", env=down)
    assert out.returncode == 1
    assert out.stderr.count("warning: log: mlflow failed") == 1, out.stderr
    assert out.stderr.count("warning: log: tensorboard failed") == 1, out.stderr
    _, expected_trials, expected_steps_ = logged
    columns = ["status", "x", "seed", "final", "config_id", "attempt"]
    pd.testing.assert_frame_equal(
        trials[columns].sort_index(), expected_trials[columns].sort_index()
    )
    values = ["trial_id", "step", "value", "label"]
    pd.testing.assert_frame_equal(
        steps[values].reset_index(drop=True), expected_steps_[values].reset_index(drop=True)
    )


def test_a_tracker_not_installed_or_unknown_is_bad_input(tmp_path, monkeypatch):
    spec = write_sweep(tmp_path, "tracked", TRACKED, **SPEC, log=["wandb"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    out = cli("run", str(spec), cwd=tmp_path)
    assert out.returncode == 2
    assert "log: wandb needs its package; install it with pip install 'raysweep[wandb]'" in (
        out.stderr
    )
    unknown = cli("run", str(spec), "--set", "log=[neptune]", cwd=tmp_path)
    assert unknown.returncode == 2 and "log.0" in unknown.stderr, unknown.stderr
    assert not (tmp_path / "results").exists()


def test_relative_tracking_uris_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    assert absolute_uri("file:mlruns") == (tmp_path / "mlruns").as_uri()
    assert absolute_uri("sqlite:///m.db") == f"sqlite:///{tmp_path}/m.db"
    for kept in ("sqlite:////abs/m.db", "file:///abs/mlruns", "http://host:5000", "databricks"):
        assert absolute_uri(kept) == kept


def wandb_run(path: Path) -> dict:
    """What an offline W&B run holds: its run record, history and summary, read from its
    transaction log (LevelDB's log format: 32 KiB blocks of records with a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, found = path.read_bytes(), {"history": [], "summary": {}}
    pos, chunks = 7, b""  # after the file header ":W&B", magic, version
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record, chunks = pb.Record.FromString(chunks), b""
            _read_record(record, found)
    return found


def _read_record(record, found: dict) -> None:
    import json

    kind = record.WhichOneof("record_type")
    if kind == "run":
        found.update(project=record.run.project, group=record.run.run_group)
        found.update(job_type=record.run.job_type)
        found["config"] = {_key(u): json.loads(u.value_json) for u in record.run.config.update}
    elif kind == "history":
        items = {_key(i): json.loads(i.value_json) for i in record.history.item}
        if "value" in items:
            found["history"].append((record.history.step.num, items["value"]))
    elif kind == "summary":
        found["summary"].update({_key(u): json.loads(u.value_json) for u in record.summary.update})
    elif kind == "exit":
        found["exit"] = record.exit.exit_code


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)
