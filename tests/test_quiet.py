"""A run that went well ends quietly: Ray's stopping of its workers prints nothing to the
terminal, while what a trial prints and a trial's failure still show.

Ray's SIGTERM handler raises SystemExit in whatever a worker's main thread runs; when that
is a weak reference's callback, Python prints the exception as unraisable, and Ray forwards
it to the driver's terminal (orchestrator/worker/shutdown.py). That moment is rare in a
real run, so it is made here on purpose in a real Ray worker: SIGTERM from inside such a
callback. The sweeps through the `sweep` command check the whole path, repeated."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
from conftest import SWEEP, cli_env, write_sweep

from orchestrator.run import connection
from orchestrator.worker.shutdown import quiet_exits

NOISE = ("Traceback", "SystemExit", "sigterm", "Exception ignored")


class Thing:
    pass


def _stderr_of(action) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # the default unraisablehook writes to sys.stderr
        action()
    return err.getvalue()


def _callback_gets_sigterm() -> None:
    """A weak reference whose callback runs as its object goes, and gets SIGTERM in it, as a
    worker's WeakSet drops an entry while Ray stops the worker."""

    def callback(_ref: weakref.ref) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here, inside the callback

    thing = Thing()
    ref = weakref.ref(thing, callback)  # noqa: F841 - kept alive until the object goes
    del thing


def _callback_fails() -> None:
    def callback(_ref: weakref.ref) -> None:
        raise ValueError("a trial's own mistake")

    thing = Thing()
    ref = weakref.ref(thing, callback)  # noqa: F841
    del thing


@pytest.fixture(scope="module")
def worker(ray_instance):
    """A real Ray worker process, with Ray's SIGTERM handler, running what it is sent; Python's
    own unraisable hook unless told to be quiet (this Ray's workers start quiet)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests

    @ray_instance.remote(num_cpus=0)
    class Worker:
        def stderr_of(self, action, quiet: bool) -> str:
            if quiet:
                quiet_exits()
            else:
                sys.unraisablehook = sys.__unraisablehook__
            return _stderr_of(action)

    actor = Worker.remote()
    yield actor
    ray_instance.kill(actor)


def test_a_worker_that_ray_stops_in_a_callback_prints_nothing(worker, ray_instance):
    loud = ray_instance.get(worker.stderr_of.remote(_callback_gets_sigterm, False))
    assert "sigterm_handler" in loud and "SystemExit: 1" in loud  # what reached terminals
    quiet = ray_instance.get(worker.stderr_of.remote(_callback_gets_sigterm, True))
    assert quiet == ""
    mistake = ray_instance.get(worker.stderr_of.remote(_callback_fails, True))
    assert "Traceback" in mistake and "ValueError: a trial's own mistake" in mistake


MODULE = """
    import sys

    from orchestrator import experiment

    @experiment()
    def run(config, trial):
        if config["x"] == 0:
            print("x=0 goes wrong next")
            raise ValueError("x=0 is not allowed")
        trial.report(step=0, value=config["x"])
        return {"quiet": float(getattr(sys.unraisablehook, "raysweep_quiet_exits", False))}
"""
GOING_WELL = 2  # 24 trials each, the size of run that showed a worker's traceback


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """`sweep run` as a user types it, all at once (a loaded machine, where the moment
    came): GOING_WELL sweeps whose trials all succeed, and `loud`, one of whose two fails."""
    folder = tmp_path_factory.mktemp("quiet")
    spec = write_sweep(folder, "quiet_exp", MODULE, name="quiet", experiment="quiet_exp:run",
                       grid={"x": list(range(1, 13))}, seeds=2)  # fmt: skip
    sets = {f"well{n}": [f"name=well{n}"] for n in range(GOING_WELL)}
    sets["loud"] = ["name=loud", "grid.x=[0, 1]", "seeds=1"]
    drivers = {
        name: subprocess.Popen(
            [SWEEP, "run", str(spec), *[a for s in assignments for a in ("--set", s)]],
            cwd=folder,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, assignments in sets.items()
    }
    outputs = {name: d.communicate(timeout=300) for name, d in drivers.items()}
    return {
        name: subprocess.CompletedProcess(d.args, d.returncode, *outputs[name])
        for name, d in drivers.items()
    }


def test_runs_that_go_well_end_without_a_traceback(runs: dict[str, subprocess.CompletedProcess]):
    for number in range(GOING_WELL):
        out = runs[f"well{number}"]
        text = out.stdout + out.stderr
        assert out.returncode == 0, text
        assert "24 ok, 0 failed" in text
        assert not [word for word in NOISE if word.lower() in text.lower()], text
        folder = Path(out.args[2]).parent / "results" / f"well{number}"
        trials = pd.read_parquet(folder / "trials")
        assert (trials["quiet"] == 1.0).all()  # every worker had it (Ray's setup hook)


def test_a_failing_trial_still_shows(runs: dict[str, subprocess.CompletedProcess]):
    out = runs["loud"]
    assert out.returncode == 1, out.stderr
    assert "x=0 goes wrong next" in out.stdout  # what the trial printed
    assert "failed; its traceback is in the trials table (sweep status)" in out.stderr
    assert "1 trials failed; see sweep status" in out.stderr


def test_a_job_with_a_setup_hook_of_its_own_keeps_it(monkeypatch: pytest.MonkeyPatch):
    """Ray takes one hook: a job's own (`ray job submit --runtime-env-json`) goes first,
    where adding ours would make `ray.init` refuse to start."""
    job = {"runtime_env": {"worker_process_setup_hook": "theirs.setup", "working_dir": "."}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    assert connection._runtime_env() == {}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}}))
    module, name = connection._runtime_env()["worker_process_setup_hook"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is quiet_exits
