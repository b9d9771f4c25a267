"""The `sweep` command in real subprocesses: bad input, dry runs, ls/status, and
drivers that are killed or interrupted mid-sweep."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import SWEEP, assert_exactly_once, cli_env, start_and_kill, sweep, write_sweep

from orchestrator.leftovers import LEFT_BEHIND

SLOW_MODULE = """
    import time

    def experiment(config, trial):
        for step in range(2):
            time.sleep(config["sleep"])
            trial.report(step=step, loss=config["x"] / (step + 1))
        if config["x"] == 3:
            raise ValueError("x=3 is not allowed")
        return {"loss": float("nan") if config["x"] == 2 else config["x"] / 2}
"""


def write_spec(folder: Path, **fields) -> Path:
    spec = {
        "name": "cli",
        "experiment": "slow_exp:experiment",
        "grid": {"x": [1, 2, 3]},
        "seeds": 2,
        "params": {"sleep": 0.0},
    }
    return write_sweep(folder, "slow_exp", SLOW_MODULE, **{**spec, **fields})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_INPUTS = [
    ({"experiment": "no_such_experiment"}, [], 'unknown experiment "no_such_experiment"'),
    ({"experiment": "trival"}, [], 'did you mean "trivial"'),
    ({"experiment": "nowhere.mod:fn"}, [], 'cannot import module "nowhere"'),
    ({"experiment": "slow_exp:experimnt"}, [], 'did you mean "experiment"'),
    ({"sedes": 3}, [], 'unknown key (did you mean "seeds"?)'),
    ({"retries": "many"}, [], "retries"),
    ({"grid": {"x": []}}, [], "grid.x is an empty list"),
    ({"seeds": -2}, [], "seeds is a count"),
    ({"seeds": 1.5}, [], "seeds is a count"),
    ({}, ["--set", "params.slep=1"], "no key 'params.slep'"),
    ({}, ["--set", "sedes=1"], 'did you mean "seeds"'),
    ({"storage": "/proc/raysweep"}, [], "cannot write under /proc"),
    ({}, ["--address", f"127.0.0.1:{free_port()}"], "nothing answers there"),
    ({"storage": "taken"}, [], "holds a sweep of experiment 'other:fn'"),
]


@pytest.mark.parametrize(("fields", "args", "message"), BAD_INPUTS)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, fields, args, message):
    spec = write_spec(tmp_path, **fields)
    (tmp_path / "taken" / "cli").mkdir(parents=True)  # a sweep of another experiment, same name
    (tmp_path / "taken" / "cli" / "sweep.json").write_text('{"experiment": "other:fn"}')
    before = sorted(tmp_path.rglob("*"))
    out = sweep("run", str(spec), *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert sorted(tmp_path.rglob("*")) == before  # no results/ folder, nothing else


def test_malformed_yaml_exits_2(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("name: x\n  experiment: [trivial\n")
    out = sweep("run", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "malformed YAML" in out.stderr and "line 2" in out.stderr


def test_more_gpus_than_the_cluster_has_exits_2(tmp_path: Path):
    spec = write_spec(tmp_path, resources={"gpu": 4})
    out = sweep("run", str(spec), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "each trial asks for 4 GPU, but the Ray cluster has 0" in out.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_trials_and_runs_nothing(tmp_path: Path):
    out = sweep("run", str(write_spec(tmp_path)), "--dry-run", "--set", "seeds=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "trials: 9 in all, 0 already done, 9 to run" in out.stdout
    assert "resources per trial: 1 CPU, 0 GPU" in out.stdout
    assert out.stdout.count("pending") == 9
    assert not (tmp_path / "results").exists()


def test_run_then_ls_and_status(tmp_path: Path):
    out = sweep("run", str(write_spec(tmp_path)), cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # some trials failed
    assert "6 trials: 0 already done, ran 6 attempts (4 ok, 2 failed" in out.stdout
    assert "2 trials failed; see sweep status" in out.stderr
    assert "[cli] 6/6 done" in out.stderr  # the progress line
    assert "Token authentication is" not in out.stderr  # Ray's warning at an embedded start

    listing = sweep("ls", cwd=tmp_path)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.strip().startswith("cli"))
    assert row.split()[:5] == ["cli", "slow_exp:experiment", "4", "2", "6"]

    status = sweep("status", "results/cli", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "6 total | 4 ok | 2 failed | 0 not run" in status.stdout
    assert "ValueError: x=3 is not allowed" in status.stdout
    assert "loss = nan" in status.stdout  # NaN flagged

    again = sweep("run", str(write_spec(tmp_path)), "--dry-run", cwd=tmp_path)
    assert "6 in all, 4 already done, 2 to run" in again.stdout


def test_status_of_a_folder_that_is_no_sweep(tmp_path: Path):
    out = sweep("status", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "not a sweep folder" in out.stderr


def test_every_command_has_help(tmp_path: Path):
    for command in ([], ["run"], ["ls"], ["status"], ["compact"], ["experiments"]):
        out = sweep(*command, "--help", cwd=tmp_path)
        assert out.returncode == 0 and "Usage:" in out.stdout


def test_an_interrupted_driver_loses_nothing_and_duplicates_nothing(tmp_path: Path):
    """Ctrl-C; a SIGKILL is the next test's."""
    spec = write_spec(tmp_path, grid={"x": [1, 4, 5, 6, 7, 8]}, seeds=4, params={"sleep": 0.15})
    start_and_kill(tmp_path, spec, signal.SIGINT, tmp_path / "results" / "cli" / "trials")
    partial = pd.read_parquet(tmp_path / "results" / "cli" / "trials")
    assert 0 < len(partial) < 24
    assert "interrupted" in sweep("status", "results/cli", cwd=tmp_path).stdout

    out = sweep("run", str(spec), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    final = pd.read_parquet(tmp_path / "results" / "cli" / "trials")
    ok = final[final["status"] == "ok"]
    assert ok["trial_id"].is_unique and len(ok) == 24  # one successful row each
    assert (final.loc[final["status"] != "ok", "error"] == LEFT_BEHIND).all()
    assert set(partial["trial_id"]) <= set(final["trial_id"])
    metrics = pd.read_parquet(tmp_path / "results" / "cli" / "metrics")
    assert set(metrics["trial_id"]) == set(final["trial_id"])
    assert_exactly_once(final, metrics)


def cut_off(folder: Path) -> set[tuple[str, int]]:
    """Attempts with steps in metrics/ and no row in trials/: running when the driver died."""
    steps = pd.read_parquet(folder / "metrics", columns=["trial_id", "attempt"])
    rows = (
        pd.read_parquet(folder / "trials", columns=["trial_id", "attempt"])
        if any((folder / "trials").glob("*.parquet"))
        else steps.iloc[:0]
    )
    keys = {(t, a) for t, a in zip(rows["trial_id"], rows["attempt"], strict=True)}
    return set(zip(steps["trial_id"], steps["attempt"], strict=True)) - keys


def test_a_driver_killed_mid_trial_again_and_again_ends_like_an_undisturbed_run(tmp_path: Path):
    """SIGKILL three times, each while trials run (their steps flushed, their rows not yet),
    then run to the end. No key twice in either table; every attempt with steps has its row;
    the cut-off attempts are failed rows saying why, their numbers never reused; a cut-off
    write's temporary file is removed; and the successful rows and their steps equal those
    of a run never interrupted."""
    rng = random.Random(7)
    fields = {"grid": {"x": [1, 4, 5, 6]}, "seeds": 1, "params": {"sleep": 1.0}}  # 2 s trials
    spec = write_spec(tmp_path, **fields)
    folder = tmp_path / "results" / "cli"
    killed: set[tuple[str, int]] = set()
    for kill in range(3):
        start_and_kill(tmp_path, spec, signal.SIGKILL, folder / "metrics", rng.uniform(0, 0.5))
        assert cut_off(folder), f"kill {kill + 1} landed when no trial was running"
        killed |= cut_off(folder)
        if kill == 0:
            assert "died" in sweep("status", "results/cli", cwd=tmp_path).stdout
    (folder / "trials").mkdir(exist_ok=True)
    (folder / "trials" / ".tmp-cut-off-write").write_bytes(b"PAR1 half a file")

    assert sweep("run", str(spec), cwd=tmp_path).returncode == 0
    trials, metrics = pd.read_parquet(folder / "trials"), pd.read_parquet(folder / "metrics")
    assert_exactly_once(trials, metrics)
    assert not list((folder / "trials").glob(".tmp-*"))
    rows = trials.set_index(["trial_id", "attempt"])
    assert (rows.loc[sorted(killed), "status"] == "failed").all()
    assert (rows.loc[sorted(killed), "error"] == LEFT_BEHIND).all()
    assert (trials.loc[trials["status"] != "ok", "error"] == LEFT_BEHIND).all()

    clean = tmp_path / "clean"
    clean.mkdir()
    assert sweep("run", str(write_spec(clean, **fields)), cwd=clean).returncode == 0
    undisturbed = [pd.read_parquet(clean / "results" / "cli" / t) for t in ("trials", "metrics")]
    for file in [*folder.glob("*/*.parquet"), *(clean / "results").glob("*/*/*.parquet")]:
        assert pd.read_parquet(file) is not None, file  # every file whole

    def successful(trials: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
        ok = trials[trials["status"] == "ok"]
        assert ok["trial_id"].is_unique
        steps = metrics.merge(ok[["trial_id", "attempt"]])[["trial_id", "step", "loss"]]
        return (
            ok.set_index("trial_id")[["x", "seed", "loss"]].sort_index(),
            steps.sort_values(["trial_id", "step"], ignore_index=True),
        )

    for mine, theirs in zip(successful(trials, metrics), successful(*undisturbed), strict=True):
        pd.testing.assert_frame_equal(mine, theirs)


def test_two_sweeps_into_one_results_folder_at_once_keep_to_their_own(tmp_path: Path):
    specs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        specs.append(write_spec(tmp_path / name, name=name, grid={"x": [1, 2, 4]},
                                storage=str(tmp_path / "results")))  # fmt: skip
    runs = [
        subprocess.Popen([SWEEP, "run", str(spec)], cwd=spec.parent, env=cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for spec in specs
    ]  # fmt: skip
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    for name in ("first", "second"):
        trials = pd.read_parquet(tmp_path / "results" / name / "trials")
        assert len(trials) == 6 and (trials["sweep"] == name).all()
        assert (trials["status"] == "ok").all() and trials["trial_id"].is_unique
