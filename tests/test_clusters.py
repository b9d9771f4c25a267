"""`sweep run --address` on clusters started with `ray start`, with and without token
authentication, from a machine whose ~/.ray/auth_token is a token of its own; the
cluster RAY_ADDRESS names, joined without --address (as inside `ray job submit`); and a
sweep whose trials cannot start on the cluster, which stops within seconds, saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, cli, cli_env, sweep, write_sweep

from orchestrator.faults.abort import CHECKS

MODULE = """
    def experiment(config, trial):
        trial.report(step=0, loss=config["x"])
        return {"loss": config["x"] / 2}
"""
# Every Ray worker process of a node with this on its path exits before it runs anything.
BROKEN_WORKERS = """
import os
import sys

if any("default_worker" in arg for arg in sys.argv):
    os._exit(1)
"""
# Seconds a `sweep run` may take beyond its limits.start_time to start and end, on a loaded
# 2-core machine (about 5 here when idle).
STARTUP_S = 90
START_S = 5  # limits.start_time of the runs on a cluster whose workers never start
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


@contextlib.contextmanager
def head(env: dict[str, str], dashboard: int | None = None) -> Iterator[str]:
    """A one-node cluster by `ray start --head` in `env`, in its own process group, with
    its dashboard (the Jobs API) on loopback port `dashboard` if given; yields its address
    once it answers.
    Every port is a free one: with ray[default] a head serves the dashboard agent and Ray
    Client on fixed ports, which a second cluster on this machine could not bind."""
    port = free_port()
    ui = ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"] if dashboard else []
    process = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
         f"--include-dashboard={bool(dashboard)}", *ui,
         f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
         "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        wait_for(lambda: started(env, port), process, deadline)
        if dashboard:  # the Jobs API answers a little after the GCS
            api = f"http://127.0.0.1:{dashboard}/api/version"
            wait_for(lambda: urllib.request.urlopen(api, timeout=2).close(), process, deadline)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the head and every Ray process it started
        process.wait(timeout=60)


def started(env: dict[str, str], port: int) -> None:
    """Raise OSError until `ray start` has ended its start: it writes the cluster's address
    to its temp folder last, after the GCS answers. Until then `--address auto` does not
    find the cluster there and picks any other Ray on this machine."""
    written = Path(env.get("RAY_TMPDIR", "/tmp"), "ray", "ray_current_cluster").read_text()
    if not written.strip().endswith(f":{port}"):
        raise FileNotFoundError(f"ray start has not written its address yet ({written!r})")


def wait_for(ready: Callable[[], object], process: subprocess.Popen, deadline: float) -> None:
    """Call `ready` until it stops raising OSError; fail if `process` ends or time runs out."""
    while True:
        try:
            ready()
            return
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "ray start failed"
            time.sleep(0.5)


@pytest.fixture(scope="module", params=["token", "disabled"])
def cluster(request, home, tmp_path_factory):
    """A cluster with token auth (its own token) or without, in a Ray temp folder of its
    own (RAY_TMPDIR), where `--address auto` finds it and no other cluster on this machine."""
    mode = request.param
    cluster_home = tmp_path_factory.mktemp("cluster-home")
    temp = tempfile.mkdtemp(prefix="rs-")  # short: Ray's socket paths live under it
    env = {**cli_env(), "RAY_AUTH_MODE": mode, "HOME": str(cluster_home), "RAY_TMPDIR": temp}
    if mode == "token":
        (cluster_home / ".ray").mkdir()
        (cluster_home / ".ray" / "auth_token").write_text("c1" * 32)
    try:
        with head(env) as address:
            yield {"address": address, "mode": mode, "home": cluster_home, "temp": temp}
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def four_trials(folder: Path, module: str, name: str, limits: dict | None = None) -> Path:
    """The spec of a sweep `name` of 4 trials of `module`, written in `folder`."""
    return write_sweep(
        folder, "exp", module, name=name, experiment="exp:experiment",
        grid={"x": [1, 2, 3, 4]}, retries=3, limits=limits or {},
    )  # fmt: skip


def run_on(
    cluster: dict, folder: Path, home: Path, module: str = MODULE, limits: dict | None = None,
    flags: tuple[str, ...] | None = None, name: str = "joined", **env: str,
):  # fmt: skip
    """`sweep run` of 4 trials with `flags` (default: --address of the cluster)."""
    spec = four_trials(folder, module, name, limits)
    env = {"HOME": str(home), "RAY_AUTH_MODE": None, **env}  # by default the user set no mode
    flags = ("--address", cluster["address"]) if flags is None else flags
    return sweep("run", str(spec), *flags, cwd=folder, env=env)


def node_of(cluster: dict, home: Path) -> str:
    """The node id of the cluster's head, asked by a driver that joins it."""
    code = (
        "import ray; from orchestrator.run.connection import connect; "
        f"connect({cluster['address']!r}); print(ray.get_runtime_context().get_node_id())"
    )
    env = {**cli_env(), "HOME": str(home)}
    env.pop("RAY_AUTH_MODE", None)
    out = subprocess.run(
        [str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


def test_a_sweep_runs_on_a_cluster_with_or_without_token_auth(cluster, home, tmp_path):
    """This machine's token is not the cluster's: a cluster with tokens takes its own (the
    user copied it to ~/.ray/auth_token), one without takes none; a cluster with tokens
    joined from a machine with none says so. On the token cluster the sweep joins with
    `--address auto`, as on a node where the user ran `ray start --head`: every trial runs
    on that cluster's node."""
    user_home = cluster["home"] if cluster["mode"] == "token" else home
    flags, env = None, {}
    if cluster["mode"] == "token":
        (tmp_path / "bare-home").mkdir()
        out = run_on(cluster, tmp_path, tmp_path / "bare-home")
        assert out.returncode == 2
        assert "uses token authentication and this machine has no token" in out.stderr
        flags, env = ("--address", "auto"), {"RAY_TMPDIR": cluster["temp"]}
    out = run_on(cluster, tmp_path, user_home, flags=flags, **env)
    assert out.returncode == 0, out.stderr
    assert "(4 ok, 0 failed" in out.stdout
    assert "Token authentication is" not in out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "joined" / "trials")
    assert set(trials["node"]) == {node_of(cluster, user_home)}


def test_without_address_a_sweep_joins_the_cluster_ray_address_names(cluster, home, tmp_path):
    """As inside `ray job submit`: RAY_ADDRESS set, no --address. It says so first, and
    every trial runs on the cluster's node; --address local runs on an embedded Ray on
    this machine instead; a dashboard address there is refused, saying what to do."""
    user_home = cluster["home"] if cluster["mode"] == "token" else home
    env = {"RAY_ADDRESS": cluster["address"]}
    out = run_on(cluster, tmp_path, user_home, flags=(), **env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith(f"joining the Ray cluster at {cluster['address']} (RAY_ADDRESS")
    joined = pd.read_parquet(tmp_path / "results" / "joined" / "trials")
    assert (joined["status"] == "ok").all() and len(joined) == 4
    assert set(joined["node"]) == {node_of(cluster, user_home)}
    if cluster["mode"] == "token":
        return  # the rest does not depend on the cluster
    local = run_on(cluster, tmp_path, home, flags=("--address", "local"), name="local", **env)
    assert local.returncode == 0, local.stderr
    assert "joining" not in local.stderr
    trials = pd.read_parquet(tmp_path / "results" / "local" / "trials")
    assert len(trials) == 4 and not set(trials["node"]) & set(joined["node"])
    spec = four_trials(tmp_path, MODULE, "dashboard")
    dashboard = cli("run", str(spec), cwd=tmp_path, env={"RAY_ADDRESS": "http://127.0.0.1:8265"})
    assert dashboard.returncode == 2
    assert "that is a dashboard address, for `ray job submit`" in dashboard.stderr


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


def test_a_cluster_whose_workers_never_start_stops_the_sweep_saying_why(home, tmp_path):
    """The nodes' Python exits at once in every worker process (a sitecustomize). Ray keeps
    the first driver of a fresh cluster waiting for its first workers for ever: the run
    is killed after limits.start_time, saying why. A driver after it gets in, and its
    trials get their resources but no worker: that run stops after limits.start_time. Each
    ends within that limit and a driver's start and end (STARTUP_S, generous), not after
    every retry or never."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BROKEN_WORKERS)
    path = os.pathsep.join([str(tmp_path / "site"), cli_env()["PYTHONPATH"]])
    env = {**cli_env(), "PYTHONPATH": path, "RAY_AUTH_MODE": "disabled", "HOME": str(home)}
    with head(env) as address:
        for says, code in (("has not let this driver in after 5 s", -9), ("no worker came", 1)):
            began = time.monotonic()
            out = run_on({"address": address}, tmp_path, home, limits={"start_time": START_S})
            assert out.returncode == code, out.stderr
            assert says in out.stderr and "limits.start_time" in out.stderr
            assert time.monotonic() - began < START_S + STARTUP_S
    assert not (tmp_path / "results" / "joined" / "trials").exists()  # no attempt ever began
