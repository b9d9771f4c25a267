"""The `sweep` command: bad input, dry runs, ls/status, and drivers that are killed,
interrupted, or run side by side. Calls run in this process (`cli`) unless the process is
what is tested: exit codes of the installed entry point, signals, kills, two drivers."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import (
    SWEEP,
    assert_exactly_once,
    cli,
    cli_env,
    cut_off,
    start_and_kill,
    sweep,
    write_sweep,
)

from analysis.tables import UnreadableFileWarning
from orchestrator.faults.failures import LEFT_BEHIND
from orchestrator.spec import load_spec
from orchestrator.trials import expand, trial_id

SLOW_MODULE = """
    import os
    import time
    from pathlib import Path

    HOLD = Path(__file__).with_name("hold")  # while it exists, trials with x >= 5 never end
    HELD = Path(__file__).with_name("held")  # ... and the others wait until one has reported
    HOLDERS = Path(__file__).with_name("holders")  # a file per process that holds a trial

    def experiment(config, trial):
        meet()
        held = config["x"] >= 5 and HOLD.exists()
        if held:
            HOLDERS.mkdir(exist_ok=True)
            (HOLDERS / str(os.getpid())).touch()
        while HOLD.exists() and not held and not HELD.exists():
            time.sleep(0.02)
        for step in range(2):
            time.sleep(config["sleep"])
            trial.report(step=step, loss=config["x"] / (step + 1))
            while held:  # the driver has this step (report returns then) until it is stopped
                HELD.touch()
                time.sleep(0.05)
        if config["x"] == 3:
            raise ValueError("x=3 is not allowed")
        return {"loss": float("nan") if config["x"] == 2 else config["x"] / 2}

    def meet():
        # SLOW_EXP_MEET=<folder>/<name> in two drivers' environments: each one's trials wait
        # until the other's have begun, so that the two sweeps surely run at the same time
        if marker := os.environ.get("SLOW_EXP_MEET"):
            Path(marker).touch()
            while len(os.listdir(Path(marker).parent)) < 2:
                time.sleep(0.02)
"""
# Four trials at once, none failing: what the kill, interrupt and concurrency tests run.
FIELDS = {"grid": {"x": [1, 4, 5, 6]}, "params": {"sleep": 0.05}, "resources": {"cpu": 0.5}}
VALUES = ["x", "seed", "loss"]


def write_spec(folder: Path, **fields) -> Path:
    spec = {
        "name": "cli",
        "experiment": "slow_exp:experiment",
        "grid": {"x": [1, 2, 3]},
        "seeds": 1,
        "params": {"sleep": 0.0},
    }
    return write_sweep(folder, "slow_exp", SLOW_MODULE, **{**spec, **fields})


def planned(spec: Path) -> set[str]:
    """The ids of the trials a run of `spec` must end with."""
    loaded = load_spec(spec)
    return {trial_id(loaded.experiment, config) for config in expand(loaded)}


def tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(folder / "trials"), pd.read_parquet(folder / "metrics")


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory, ray_instance) -> tuple:
    """(trials, metrics) of FIELDS run once, never disturbed: what every disturbed run of
    them must end with. Runs in this process are quiet (-q): Tune pickles its callbacks, and
    the progress line's stream here, click's capture, cannot be pickled."""
    folder = tmp_path_factory.mktemp("undisturbed")
    spec = write_spec(folder, **FIELDS)
    out = cli("run", str(spec), "-q", cwd=folder)
    assert out.returncode == 0, out.stderr
    trials, metrics = tables(folder / "results" / "cli")
    assert_exactly_once(trials, metrics, planned(spec))
    return trials, metrics


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
    ({}, ["--set", "params.sleep.s=1"], "params.sleep is not a mapping (it is 0.0)"),
    ({}, ["--set", "sedes=1"], 'did you mean "seeds"'),
    ({"storage": "/proc/raysweep"}, [], "cannot write under /proc"),
    ({}, ["--address", f"127.0.0.1:{free_port()}"], "nothing answers there"),
    ({"storage": "taken"}, [], "holds a sweep of experiment 'other:fn'"),
]
# Through the installed `sweep` in a process of its own: one case, and the address (in this
# process a sweep joins the Ray already running here, whatever --address says).
IN_A_SUBPROCESS = {'unknown experiment "no_such_experiment"', "nothing answers there"}


@pytest.mark.parametrize(("fields", "args", "message"), BAD_INPUTS)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_instance, fields, args, message
):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as the subprocess: no __pycache__
    spec = write_spec(tmp_path, **fields)
    (tmp_path / "taken" / "cli").mkdir(parents=True)  # a sweep of another experiment, same name
    (tmp_path / "taken" / "cli" / "sweep.json").write_text('{"experiment": "other:fn"}')
    before = sorted(tmp_path.rglob("*"))
    out = (sweep if message in IN_A_SUBPROCESS else cli)("run", str(spec), *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert sorted(tmp_path.rglob("*")) == before  # no results/ folder, nothing else


def test_malformed_yaml_exits_2(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("name: x\n  experiment: [trivial\n")
    out = cli("run", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "malformed YAML" in out.stderr and "line 2" in out.stderr


def test_more_gpus_than_the_cluster_has_exits_2(tmp_path: Path, ray_instance):
    spec = write_spec(tmp_path, resources={"gpu": 64})
    out = cli("run", str(spec), "-q", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "each trial asks for 64 GPU, but the Ray cluster has" in out.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_trials_and_runs_nothing(tmp_path: Path):
    out = cli("run", str(write_spec(tmp_path)), "--dry-run", "--set", "seeds=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "trials: 9 in all, 0 already done, 9 to run" in out.stdout
    assert "resources per trial: 1 CPU, 0 GPU" in out.stdout
    assert out.stdout.count("pending") == 9
    assert not (tmp_path / "results").exists()


def test_run_then_ls_and_status(tmp_path: Path):
    out = sweep("run", str(write_spec(tmp_path, seeds=2)), cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # some trials failed
    assert "6 trials: 0 already done, ran 6 attempts (4 ok, 2 failed" in out.stdout
    assert "2 trials failed; see sweep status" in out.stderr
    assert "[cli] 6/6 done" in out.stderr  # the progress line
    assert "Token authentication is" not in out.stderr  # Ray's warning at an embedded start

    listing = cli("ls", cwd=tmp_path)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.strip().startswith("cli"))
    assert row.split()[:5] == ["cli", "slow_exp:experiment", "4", "2", "6"]

    status = cli("status", "results/cli", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "6 total | 4 ok | 2 failed | 0 not run" in status.stdout
    assert "ValueError: x=3 is not allowed" in status.stdout
    assert "loss = nan" in status.stdout  # NaN flagged

    again = cli("run", str(write_spec(tmp_path, seeds=2)), "--dry-run", cwd=tmp_path)
    assert "6 in all, 4 already done, 2 to run" in again.stdout


def test_status_of_a_folder_that_is_no_sweep(tmp_path: Path):
    out = cli("status", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "not a sweep folder" in out.stderr


def test_every_command_has_help(tmp_path: Path):
    out = sweep("--help", cwd=tmp_path)  # the installed entry point
    assert out.returncode == 0 and "Usage: sweep" in out.stdout
    for command in ("run", "ls", "status", "compact", "experiments"):
        out = cli(command, "--help", cwd=tmp_path)
        assert out.returncode == 0 and f"Usage: sweep {command}" in out.stdout


def held(folder: Path) -> set[str]:
    """The ids of the trials that SLOW_MODULE holds while `hold` exists beside it."""
    spec = load_spec(folder / "spec.yaml")
    return {trial_id(spec.experiment, c) for c in expand(spec) if c["x"] >= 5}


def hold(folder: Path) -> None:
    """From the next run of the spec in `folder` on: trials with x >= 5 report a step and
    never end; the others end once one of those has reported. A killed driver's Ray workers
    die a little after it: first wait until those that held trials are gone (one still
    alive would mark `held` for the next run before any of its trials reported)."""
    deadline = time.monotonic() + 60
    for pid in folder.glob("holders/*"):
        while _alive(pid.name):
            assert time.monotonic() < deadline, f"worker {pid.name} of a killed run lives on"
            time.sleep(0.1)
        pid.unlink()
    (folder / "hold").touch()
    (folder / "held").unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_driver_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, undisturbed: tuple, sig: signal.Signals
):
    """Ctrl-C or SIGTERM (`ray job stop`) when some trials have ended and others run:
    exit 130, what ended is kept, the cut-off attempts are failed rows saying why, and
    the next run ends like an undisturbed run. SIGKILL is the next test's."""
    spec = write_spec(tmp_path, **FIELDS)
    folder = tmp_path / "results" / "cli"
    hold(tmp_path)
    assert start_and_kill(tmp_path, spec, sig, folder / "trials") == 130
    partial = pd.read_parquet(folder / "trials")
    assert 0 < len(partial) < 4 and (partial["status"] == "ok").all()
    running = cut_off(folder)  # attempts with steps and no row: running at the signal
    assert {tid for tid, _ in running} & held(tmp_path), "no trial was running"
    assert "interrupted" in cli("status", "results/cli", cwd=tmp_path).stdout

    (tmp_path / "hold").unlink()
    out = cli("run", str(spec), "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"4 trials: {len(partial)} already done" in out.stdout
    final, metrics = tables(folder)
    assert_exactly_once(final, metrics, planned(spec), undisturbed, VALUES)
    ok = final[final["status"] == "ok"]
    before = set(zip(partial["trial_id"], partial["attempt"], strict=True))
    assert before <= set(zip(ok["trial_id"], ok["attempt"], strict=True))  # not run again
    failed = final[final["status"] != "ok"]
    assert set(zip(failed["trial_id"], failed["attempt"], strict=True)) == running
    assert (failed["error"] == LEFT_BEHIND).all()


def test_a_driver_killed_mid_trial_again_and_again_ends_like_an_undisturbed_run(
    tmp_path: Path, undisturbed: tuple
):
    """SIGKILL twice, each while trials run (their steps flushed, their rows not yet),
    then run to the end. No key twice in either table; every attempt with steps has its row;
    the cut-off attempts are failed rows saying why, their numbers never reused; a cut-off
    write's temporary file is removed; no file is unreadable (none set aside to corrupt/);
    and the successful rows and their steps equal those of a run never interrupted."""
    rng = random.Random(7)
    spec = write_spec(tmp_path, **FIELDS)
    folder = tmp_path / "results" / "cli"
    killed: set[tuple[str, int]] = set()
    for kill in range(2):
        hold(tmp_path)
        code = start_and_kill(
            tmp_path, spec, signal.SIGKILL, folder / "metrics", rng.uniform(0, 0.3)
        )
        assert code == -signal.SIGKILL
        new = {tid for tid, _ in cut_off(folder) - killed}
        assert new & held(tmp_path), f"kill {kill + 1} landed when no trial was running"
        killed |= cut_off(folder)
        if kill == 0:
            assert "died" in cli("status", "results/cli", cwd=tmp_path).stdout
    (folder / "trials" / ".tmp-cut-off-write").write_bytes(b"PAR1 half a file")

    (tmp_path / "hold").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli("run", str(spec), "-q", cwd=tmp_path).returncode == 0
    assert not [w for w in caught if issubclass(w.category, UnreadableFileWarning)]
    assert not (folder / "corrupt").exists()
    for file in folder.glob("*/*.parquet"):
        pq.read_table(file)  # every file whole
    assert not list((folder / "trials").glob(".tmp-*"))
    trials, metrics = tables(folder)
    assert_exactly_once(trials, metrics, planned(spec), undisturbed, VALUES)
    rows = trials.set_index(["trial_id", "attempt"])
    assert (rows.loc[sorted(killed), "status"] == "failed").all()
    assert (trials.loc[trials["status"] != "ok", "error"] == LEFT_BEHIND).all()


def test_two_sweeps_into_one_results_folder_at_once_keep_to_their_own(
    tmp_path: Path, undisturbed: tuple
):
    """Two drivers, each with its own Ray, write two sweeps into one results folder while
    the other's trials run: each sweep holds its own trials, equal to an undisturbed run."""
    (tmp_path / "meet").mkdir()
    runs = {}
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        spec = write_spec(tmp_path / name, name=name, storage=str(tmp_path / "results"), **FIELDS)
        env = {**cli_env(), "SLOW_EXP_MEET": str(tmp_path / "meet" / name)}
        runs[name] = subprocess.Popen(
            [SWEEP, "run", str(spec)], cwd=spec.parent, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    for run in runs.values():
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    first, second = (tables(tmp_path / "results" / name) for name in runs)
    assert any(
        a.started_at < b.finished_at and b.started_at < a.finished_at
        for a in first[0].itertuples()
        for b in second[0].itertuples()
    ), "the two sweeps never ran trials at the same time"
    for name, (trials, metrics) in zip(runs, (first, second), strict=True):
        assert (trials["sweep"] == name).all()
        assert_exactly_once(
            trials, metrics, planned(tmp_path / name / "spec.yaml"), undisturbed, VALUES
        )
    assert not (tmp_path / "results" / "first" / "corrupt").exists()
    assert not (tmp_path / "results" / "second" / "corrupt").exists()
