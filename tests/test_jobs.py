"""Sweeps submitted through the Ray Jobs API, as a team on a managed cluster launches work
from a laptop: `ray job submit --working-dir DIR -- sweep run spec.yaml` to a cluster
started by `ray start --head` with its dashboard on a loopback port, in its own process
group. The experiment lives only in the working directory (the cluster's Python path does
not hold it), the storage is shared, `sweep status` reads it from here while the job runs,
and `ray job stop` then a second submission ends with each trial once. And the KubeRay
RayJob manifest, checked for what KubeRay requires (no Kubernetes here to apply it)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO, assert_exactly_once, cli, cli_env, write_sweep
from test_clusters import free_port, head, node_of

from orchestrator import run_sweep
from orchestrator.spec import load_spec

EXPERIMENT = """
    import os
    import time
    from pathlib import Path

    def experiment(config, trial):
        trial.report(step=0, loss=config["x"])
        if config["x"] >= 2 and os.path.exists(config["hold"]):  # held by the test
            (Path(config["pids"]) / str(config["x"])).write_text(str(os.getpid()))
        while config["x"] >= 2 and os.path.exists(config["hold"]):
            time.sleep(0.1)
        return {"loss": config["x"] / 2}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head with its dashboard (the Jobs API) on a free loopback port and `sweep` on its
    PATH, in a Ray temp folder of its own (where the test reads Ray's job supervisor log).
    `ray job stop` waits 10 s (RAY_JOB_STOP_WAIT_TIME_S on the head; Ray's default is 3 s)
    before its SIGKILL: on this 2-core machine, with the rest of the suite running beside
    it, ending the run took longer than 3 s."""
    home = tmp_path_factory.mktemp("cluster-home")
    temp = Path(tempfile.mkdtemp(prefix="rs-"))  # short: Ray's socket paths live under it
    env = {**cli_env(), "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_TMPDIR": str(temp)}  # fmt: skip
    env.pop("RAY_AUTH_MODE", None)  # `ray start`'s own default
    env["RAY_JOB_STOP_WAIT_TIME_S"] = "10"
    port = free_port()
    try:
        with head(env, dashboard=port) as address:
            dashboard = f"http://127.0.0.1:{port}"
            yield {"address": address, "env": {**env, "RAY_ADDRESS": dashboard}, "home": home,
                   "logs": temp / "ray" / "session_latest" / "logs"}  # fmt: skip
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def job(cluster: dict, *args: str) -> subprocess.CompletedProcess:
    """`ray job ARGS` from the laptop (RAY_ADDRESS: the dashboard)."""
    return subprocess.run(
        [str(BIN / "ray"), "job", *args], env=cluster["env"], capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def submit(cluster: dict, folder: Path, *flags: str) -> subprocess.CompletedProcess:
    return job(cluster, "submit", *flags, "--working-dir", str(folder), "--",
               "sweep", "run", "spec.yaml")  # fmt: skip


def working_dir(tmp_path: Path) -> Path:
    """The job's working directory: the experiment module and a spec storing its results in
    `tmp_path/results` (shared: the laptop and the cluster see one file system here).
    Eight trials; those with x >= 2 write their worker's pid to `tmp_path/pids/<x>` and
    wait while the file `tmp_path/hold` exists."""
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (tmp_path / "pids").mkdir()
    params = {"hold": str(tmp_path / "hold"), "pids": str(tmp_path / "pids")}
    write_sweep(folder, "exp", EXPERIMENT, name="job", experiment="exp:experiment",
                grid={"x": list(range(8))}, params=params,
                storage=str(tmp_path / "results"))  # fmt: skip
    return folder


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        return "zombie" not in status.read_text()
    return False


def wait_until(ready: Callable[[], bool], what: Callable[[], str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)


def test_a_job_stopped_mid_sweep_then_submitted_again_runs_each_trial_once_on_the_cluster(
    cluster, tmp_path
):
    """`ray job stop` sends SIGTERM, and SIGKILL later: the driver ends the run as after
    Ctrl-C before that (Ray's supervisor says the job ended gracefully; the job's log
    and the sweep say interrupted), and the held trials' workers are gone although their
    hold remains. The next submission runs the rest, every trial once, on the cluster's
    node. Trials 0 and 1 end at once; the others report a step, then wait."""
    folder = working_dir(tmp_path)
    (tmp_path / "hold").touch()
    sweep_folder = tmp_path / "results" / "job"
    assert submit(cluster, folder, "--no-wait", "--submission-id", "first").returncode == 0
    logs = lambda: job(cluster, "logs", "first").stdout  # noqa: E731
    held = lambda: sorted((tmp_path / "pids").glob("*"))  # noqa: E731
    wait_until(lambda: len(held()) == 2 and any((sweep_folder / "trials").glob("*")), logs)
    running = cli("status", str(sweep_folder), cwd=tmp_path).stdout
    assert "8 total" in running and " running " in running, running
    pids = [int(p.read_text()) for p in held()]

    stopped = job(cluster, "stop", "first")
    assert stopped.returncode == 0 and "Job 'first' was stopped" in stopped.stdout, stopped
    supervisor = "".join(p.read_text() for p in cluster["logs"].glob("jobs/supervisor-*"))
    assert "has been terminated gracefully with SIGTERM" in supervisor, supervisor
    assert "force-killed" not in supervisor
    log = logs()
    assert log.index("joining the Ray cluster at ") < log.index("interrupted; run again to finish")
    # killed: their hold is still there
    wait_until(lambda: not any(map(alive, pids)), lambda: f"trials still running: {pids}", 30)
    partial = pd.read_parquet(sweep_folder / "trials")
    assert 0 < (partial["status"] == "ok").sum() < 8
    assert "interrupted" in cli("status", str(sweep_folder), cwd=tmp_path).stdout

    (tmp_path / "hold").unlink()
    again = submit(cluster, folder, "--submission-id", "second")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = pd.read_parquet(sweep_folder / "trials")
    expected = set(run_sweep(folder / "spec.yaml", dry_run=True).configs)
    assert_exactly_once(final, pd.read_parquet(sweep_folder / "metrics"), expected)
    assert set(partial.loc[partial["status"] == "ok", "trial_id"]) < expected
    ok = final[final["status"] == "ok"]
    assert set(ok["node"]) == {node_of(cluster, cluster["home"])}
    status = cli("status", str(sweep_folder), cwd=tmp_path).stdout
    assert "8 total | 8 ok" in status, status


# A Kubernetes quantity (resources.limits and requests), as the RayJob CRD's pattern has it.
QUANTITY = r"[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?(\d+(\.\d*)?|\.\d+))?"


def test_the_kuberay_manifest_has_what_kuberay_requires():
    """cluster-kuberay.yaml against KubeRay v1.7's RayJob: the CRD's required fields and
    types (openAPIV3Schema) and its controller's checks (ValidateRayJobSpec); and the
    entrypoint is a `sweep run` whose overrides our spec accepts."""
    manifest = yaml.safe_load((REPO / "cluster-kuberay.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    spec = manifest["spec"]
    command = shlex.split(spec["entrypoint"])
    assert command[:3] == ["sweep", "run", "spec.yaml"]
    overrides = [command[i + 1] for i, flag in enumerate(command[:-1]) if flag == "--set"]
    stored = load_spec({"name": "s", "experiment": "trivial"}, overrides).storage
    assert stored.startswith("s3://")  # results in the bucket: the laptop reads them there
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])  # a string of YAML in the CRD
    assert re.fullmatch(r"(s3|gs|https)://.+\.zip", runtime_env["working_dir"])  # not a path
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 0
    if spec.get("ttlSecondsAfterFinished", 0) > 0:
        assert spec["shutdownAfterJobFinishes"] is True  # the controller refuses it otherwise
    cluster = spec["rayClusterSpec"]
    assert re.fullmatch(r"2\.\d+\.\d+", cluster["rayVersion"])
    assert int(cluster["rayVersion"].split(".")[1]) >= 50  # pyproject's ray[tune]>=2.50
    workers = cluster["workerGroupSpecs"]
    for group in [cluster["headGroupSpec"], *workers]:
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
        containers = group["template"]["spec"]["containers"]
        assert containers
        for container in containers:
            assert isinstance(container["name"], str) and isinstance(container["image"], str)
            for amounts in container.get("resources", {}).values():
                for amount in amounts.values():
                    assert isinstance(amount, int) or re.fullmatch(QUANTITY, amount), amount
            for variable in container.get("env", []):
                assert isinstance(variable["name"], str) and isinstance(variable["value"], str)
    for group in workers:
        assert {"groupName", "minReplicas", "maxReplicas", "template"} <= set(group)
        replicas = group.get("replicas", group["minReplicas"])
        assert 0 <= group["minReplicas"] <= replicas <= group["maxReplicas"]
