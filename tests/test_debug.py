"""`sweep debug`: one trial of a spec in this process, without Ray, as a user types it (a
subprocess): the same final metrics as that trial in a real sweep, nothing written to the
sweep's tables, reports printed as they come, artifacts in a scratch folder it names, an
exception as a traceback and exit 1, bad input as exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli_env, write_sweep

from orchestrator import run_sweep

EXPERIMENT = """
    import numpy as np
    from orchestrator import experiment

    @experiment()
    def noisy(config, trial):
        if config["x"] == 3:
            raise ValueError("x = 3 is not allowed here")
        if config["x"] == 4:
            breakpoint()
        draws = np.random.default_rng(config["seed"]).normal(size=4)
        for step, value in enumerate(draws):
            trial.report(step=step, value=float(value) * config["x"])
        trial.save_artifact("draws.npy", draws)
        return {"total": float(draws.sum()) * config["x"] + np.random.rand()}
"""
# np.random.rand() draws from the global generator: equal only if seeded as a worker seeds it


def debug(folder: Path, *args: str, typed: str = "") -> subprocess.CompletedProcess:
    """`sweep debug` in a subprocess that says at its exit whether Ray was ever started."""
    probe = (
        "import atexit, ray, sys; "
        "atexit.register(lambda: print('ray started:', ray.is_initialized())); "
        "from orchestrator.cli import main; sys.argv[0] = 'sweep'; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, "debug", "spec.yaml", *args],
        cwd=folder, env={**cli_env(), "PYTHONBREAKPOINT": ""}, input=typed,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_sweep(tmp_path, "noisy", EXPERIMENT, name="noisy", experiment="noisy:noisy",
                grid={"x": [1, 2, 3, 4]}, seeds=2, storage=str(tmp_path / "results"))  # fmt: skip
    return tmp_path


def printed(out: str) -> dict[str, float]:
    return {
        k: float(v) for k, v in (line.split(" = ") for line in out.splitlines() if " = " in line)
    }


@pytest.mark.usefixtures("ray_instance")
def test_a_trial_debugged_in_process_gives_the_metrics_of_the_same_trial_in_a_sweep(folder):
    done = debug(folder, "--where", "x=2", "--where", "seed=1")
    assert done.returncode == 0, done.stderr
    assert "ray started: False" in done.stdout
    assert not (folder / "results").exists()  # nothing written to the sweep's tables
    reports = [line for line in done.stdout.splitlines() if line.startswith("report: step=")]
    assert len(reports) == 4
    scratch = Path(done.stdout.split("artifacts go to ")[1].split()[0])
    assert (scratch / "draws.npy").is_file()

    result = run_sweep(folder / "spec.yaml", progress=None)
    trials = pd.read_parquet(Path(result.path) / "trials").set_index(["x", "seed"])
    assert printed(done.stdout)["total"] == trials.loc[(2, 1), "total"]  # to the last bit
    trial_id = trials.loc[(2, 1), "trial_id"]
    assert f"trial {trial_id} on cpu" in done.stdout
    by_id = debug(folder, "--trial", trial_id)
    assert printed(by_id.stdout)["total"] == trials.loc[(2, 1), "total"]


def test_an_exception_prints_its_traceback_and_exits_1(folder):
    failed = debug(folder, "--where", "x=3")
    assert failed.returncode == 1
    assert "Traceback (most recent call last)" in failed.stderr
    assert "ValueError: x = 3 is not allowed here" in failed.stderr
    assert "ray started: False" in failed.stdout


def test_breakpoint_stops_in_the_terminal_and_pdb_opens_where_it_raised(folder):
    # the debugger reads what the user types: `p config["x"]`, then continue / quit
    stopped = debug(folder, "--where", "x=4", typed='p config["x"]\nc\n')
    assert stopped.returncode == 0, stopped.stderr
    assert "(Pdb) 4" in stopped.stdout and "total = " in stopped.stdout
    post_mortem = debug(folder, "--where", "x=3", "--pdb", typed='p config["x"]\nq\n')
    assert post_mortem.returncode == 1
    assert "(Pdb) 3" in post_mortem.stdout and "ValueError" in post_mortem.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "sed=1"], '--where sed=...: no such key (did you mean "seed"?)'),
        (["--where", "x=9"], "--where x=9: no trial of the spec matches"),
        (["--trial", "nope"], "--trial nope: no such trial in the spec"),
        (["--where", "x"], "--where 'x': give KEY=VALUE"),
    ],
)
def test_bad_selections_exit_2_with_what_to_do(folder, args, message):
    bad = debug(folder, *args)
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr
