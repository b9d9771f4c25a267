"""Sweeps submitted through the Ray Jobs API, as a team on a managed cluster launches work
from a laptop: `ray job submit --working-dir DIR -- sweep run spec.yaml` to a cluster
started by `ray start --head` with its dashboard on a loopback port, in its own process
group. The experiment lives only in the working directory (the cluster's Python path does
not hold it), the storage is shared, `sweep status` reads it from here while the job runs,
and `ray job stop` then a second submission ends with each trial once. And the KubeRay
RayJob manifest, checked for what KubeRay requires (no Kubernetes here to apply it)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO, assert_exactly_once, cli_env, sweep, write_sweep
from test_clusters import free_port, head, node_of

from orchestrator.spec import load_spec

EXPERIMENT = """
    import os
    import time

    def experiment(config, trial):
        trial.report(step=0, loss=config["x"])
        while config["x"] >= 2 and os.path.exists(config["hold"]):  # held by the test
            time.sleep(0.1)
        return {"loss": config["x"] / 2}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head with its dashboard (the Jobs API) on a free loopback port and `sweep` on its
    PATH. A stopped job's driver gets 10 s to end before Ray kills it (3 s by default; it
    takes about 1 s, this leaves room for a loaded machine)."""
    home = tmp_path_factory.mktemp("cluster-home")
    env = {**cli_env(), "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_JOB_STOP_WAIT_TIME_S": "10"}  # fmt: skip
    env.pop("RAY_AUTH_MODE", None)  # `ray start`'s own default
    port = free_port()
    with head(env, dashboard=port) as address:
        dashboard = f"http://127.0.0.1:{port}"
        yield {"address": address, "env": {**env, "RAY_ADDRESS": dashboard}, "home": home}


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
    Eight trials; those with x >= 2 wait while the file `tmp_path/hold` exists."""
    folder = tmp_path / "sweeps"
    folder.mkdir()
    hold, storage = str(tmp_path / "hold"), str(tmp_path / "results")
    write_sweep(folder, "exp", EXPERIMENT, name="job", experiment="exp:experiment",
                grid={"x": list(range(8))}, params={"hold": hold}, storage=storage)  # fmt: skip
    return folder


def test_a_job_stopped_mid_sweep_then_submitted_again_runs_each_trial_once_on_the_cluster(
    cluster, tmp_path
):
    """`ray job stop` sends SIGTERM: the driver ends the run as after Ctrl-C, saying so in
    the job's log; the next submission runs the rest, every trial once, on the cluster's
    node. Trials 0 and 1 end at once; the others report a step, then wait until the first
    job is stopped."""
    folder = working_dir(tmp_path)
    (tmp_path / "hold").touch()
    sweep_folder = tmp_path / "results" / "job"
    assert submit(cluster, folder, "--no-wait", "--submission-id", "first").returncode == 0
    deadline = time.monotonic() + 120
    while not list((sweep_folder / "trials").glob("*.parquet")):
        assert time.monotonic() < deadline, job(cluster, "logs", "first").stdout
        time.sleep(0.2)
    running = sweep("status", str(sweep_folder), cwd=tmp_path).stdout
    assert "8 total" in running and " running " in running, running

    stopped = job(cluster, "stop", "first")
    assert stopped.returncode == 0 and "Job 'first' was stopped" in stopped.stdout, stopped
    log = job(cluster, "logs", "first").stdout
    assert log.index("joining the Ray cluster at ") < log.index("interrupted; run again to finish")
    partial = pd.read_parquet(sweep_folder / "trials")
    assert 0 < (partial["status"] == "ok").sum() < 8
    assert "interrupted" in sweep("status", str(sweep_folder), cwd=tmp_path).stdout

    (tmp_path / "hold").unlink()
    again = submit(cluster, folder, "--submission-id", "second")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = pd.read_parquet(sweep_folder / "trials")
    ok = final[final["status"] == "ok"]
    assert ok["trial_id"].is_unique and len(ok) == 8
    assert set(partial["trial_id"]) <= set(ok["trial_id"])
    assert set(ok["node"]) == {node_of(cluster, cluster["home"])}
    assert_exactly_once(final, pd.read_parquet(sweep_folder / "metrics"))
    status = sweep("status", str(sweep_folder), cwd=tmp_path).stdout
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
