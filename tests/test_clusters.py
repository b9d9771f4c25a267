"""`sweep run --address` on clusters started with `ray start`, with and without token
authentication, from a machine whose ~/.ray/auth_token is a token of its own; and a
sweep whose trials cannot start on the cluster, which stops within seconds, saying why."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, cli_env, sweep, write_sweep

from orchestrator.abort import CHECKS

MODULE = """
    def experiment(config, trial):
        trial.report(step=0, loss=config["x"])
        return {"loss": config["x"] / 2}
"""
# An experiment that needs a package this machine has and the cluster's nodes lack.
NEEDS_PACKAGE = """
    import package_only_here

    def experiment(config, trial):
        return {"loss": package_only_here.LOSS}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home folder whose ~/.ray/auth_token is this machine's own token."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("a0" * 32)
    return home


@pytest.fixture(scope="module", params=["token", "disabled"])
def cluster(request, home, tmp_path_factory):
    """A one-node cluster by `ray start --head`, with (its own token) or without token auth."""
    mode = request.param
    cluster_home = tmp_path_factory.mktemp("cluster-home")
    env = {**cli_env(), "RAY_AUTH_MODE": mode, "HOME": str(cluster_home)}
    if mode == "token":
        (cluster_home / ".ray").mkdir()
        (cluster_home / ".ray" / "auth_token").write_text("c1" * 32)
    port = free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, "ray start failed"
                time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "mode": mode, "home": cluster_home}
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and every Ray process it started
        head.wait(timeout=60)


def run_on(cluster: dict, folder: Path, home: Path, module: str = MODULE, **env: str):
    spec = write_sweep(
        folder, "exp", module,
        name="joined", experiment="exp:experiment", grid={"x": [1, 2, 3, 4]}, retries=3,
    )  # fmt: skip
    env = {"HOME": str(home), "RAY_AUTH_MODE": None, **env}  # by default the user set no mode
    return sweep("run", str(spec), "--address", cluster["address"], cwd=folder, env=env)


def test_a_sweep_runs_on_a_cluster_with_or_without_token_auth(cluster, home, tmp_path):
    """This machine's token is not the cluster's: a cluster with tokens takes its own (the
    user copied it to ~/.ray/auth_token), one without takes none; a cluster with tokens
    joined from a machine with none says so."""
    if cluster["mode"] == "token":
        (tmp_path / "bare-home").mkdir()
        out = run_on(cluster, tmp_path, tmp_path / "bare-home")
        assert out.returncode == 2
        assert "uses token authentication and this machine has no token" in out.stderr
    user_home = cluster["home"] if cluster["mode"] == "token" else home
    out = run_on(cluster, tmp_path, user_home)
    assert out.returncode == 0, out.stderr
    assert "(4 ok, 0 failed" in out.stdout
    assert "Token authentication is" not in out.stderr


def test_trials_that_cannot_start_stop_the_sweep_at_once_saying_why(cluster, home, tmp_path):
    """On the token cluster the nodes cannot import the experiment; on the other the user
    forced token auth that the cluster does not use (every actor is cancelled). Either way
    the sweep stops after the first few attempts, not after 4 trials x 4 attempts."""
    if cluster["mode"] == "token":
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "package_only_here.py").write_text("LOSS = 0.5\n")
        path = os.pathsep.join([str(tmp_path / "site"), cli_env()["PYTHONPATH"]])
        out = run_on(cluster, tmp_path, cluster["home"], NEEDS_PACKAGE, PYTHONPATH=path)
        cause = "No module named 'package_only_here'"
    else:
        out = run_on(cluster, tmp_path, home, RAY_AUTH_MODE="token")
        cause = "cancelled"
    assert out.returncode == 1
    assert "died before the experiment ran" in out.stderr and CHECKS in out.stderr
    assert cause in out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "joined" / "trials")
    assert (trials["status"] == "failed").all() and len(trials) < 8
