"""Attempts that run too long, stay silent, or run out of memory, in real `sweep run`
subprocesses: each is stopped for real and recorded with its own status and reason."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import ray._private.utils as ray_utils
import yaml
from conftest import SWEEP, cli, cli_env, sweep, write_sweep

from orchestrator import run_sweep

# Imported by name on each worker (it is not beside the spec), slower than report_gap: the
from orchestrator.faults import oomkill

# silence limit counts from when the attempt starts, not from the worker's start.
HANGS = """
    import os
    import sys
    import time
    from pathlib import Path

    if any("default_worker" in arg for arg in sys.argv):
        time.sleep(4)  # a slow import, on workers only

    def experiment(config, trial):
        pids = Path(config["pids"]) / config["kind"]
        earlier = [int(p) for p in pids.read_text().split()] if pids.exists() else []
        alive = sum(_alive(pid) for pid in earlier)
        pids.write_text(" ".join(map(str, [*earlier, os.getpid()])))
        trial.report(step=0, earlier_alive=alive)
        if config["kind"] == "busy":  # reports forever: only trial_time stops it
            while True:
                time.sleep(0.5)
                trial.report(earlier_alive=alive)
        if config["kind"] == "silent":  # reported once, then waits forever: report_gap
            time.sleep(10**6)
        return {"earlier_alive": alive}

    def _alive(pid):
        status = Path(f"/proc/{pid}/status")
        return int(status.exists() and "zombie" not in status.read_text())
"""

HOARDS = """
    import time
    import numpy as np

    def experiment(config, trial):
        hoard = []
        for chunk in range(config["chunks"]):
            hoard.append(np.ones(2**25))  # 256 MiB, every page written
            trial.report(step=chunk, held_mib=256 * len(hoard))
            time.sleep(0.05)
        return {"held_mib": 256 * len(hoard)}
"""


# The first trial kills its own worker (a death that is not for memory), the second
# allocates until the kernel kills it.
DIES = """
    import os
    import signal
    import numpy as np

    def experiment(config, trial):
        trial.report(step=0)
        if config["kind"] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        hoard = []
        for chunk in range(32):
            hoard.append(np.ones(2**25))  # 256 MiB, every page written
        return {"held_mib": 256 * len(hoard)}
"""


@pytest.fixture
def memory_cgroup():
    """A memory cgroup limited to 2.5 GiB, under this process's own; a skip where none can
    be made (not root, or a cgroup v2 without the memory controller delegated)."""
    counter = oomkill.counter_file(Path("/proc/self/cgroup").read_text())
    if counter is None:
        pytest.skip("no memory cgroup with an OOM-kill count here")
    group = counter.parent / f"raysweep-test-{os.getpid()}"
    limit = "memory.limit_in_bytes" if counter.name == "memory.oom_control" else "memory.max"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here: {exc}")
    try:
        (group / limit).write_text(str(5 * 2**29))
    except OSError as exc:
        group.rmdir()
        pytest.skip(f"cannot limit a memory cgroup here: {exc}")
    yield group
    deadline = time.monotonic() + 30
    while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.5)  # the run's Ray processes are still exiting
    group.rmdir()


def test_attempts_past_their_limits_end_as_timeout_and_free_their_worker(tmp_path: Path):
    """A busy attempt ends for trial_time, a silent one for report_gap, each retried once
    on a new worker. The experiment's module lives outside the spec's folder, so each
    worker imports it, which takes longer than report_gap: no attempt is charged for it."""
    site, here = tmp_path / "site", tmp_path / "run"
    for folder in (site, here, tmp_path / "pids"):
        folder.mkdir()
    (site / "hangs.py").write_text(textwrap.dedent(HANGS))
    spec = here / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "limits", "experiment": "hangs:experiment",
        "grid": {"kind": ["busy", "silent", "fine"]}, "params": {"pids": str(tmp_path / "pids")},
        "retries": 1, "limits": {"trial_time": 5, "report_gap": "3s"},
    }))  # fmt: skip
    path = os.pathsep.join([str(site), cli_env()["PYTHONPATH"]])
    out = sweep("run", str(spec), "-q", cwd=here, env={"PYTHONPATH": path})
    assert out.returncode == 1, out.stderr  # two trials failed, every attempt timed out
    assert "(1 ok, 0 failed, 4 timeout" in out.stdout
    folder = here / "results" / "limits"
    trials = pd.read_parquet(folder / "trials").set_index(["kind", "attempt"]).sort_index()
    assert trials.loc["fine", "status"].tolist() == ["ok"]
    for kind, limit in (("busy", "limits.trial_time (5 s)"), ("silent", "limits.report_gap (3 s)")):
        attempts = trials.loc[kind]
        assert attempts.index.tolist() == [1, 2] and (attempts["status"] == "timeout").all()
        assert attempts["error"].str.contains(limit, regex=False).all()
    # Past report_gap, so trial_time ended it. The limit counts on the driver from Tune's
    # start of the attempt, a little before the worker's started_at, from which duration_s
    # counts: on a loaded machine 5 s of the one can be 4.9 of the other.
    assert (trials.loc["busy", "duration_s"] > 4).all()
    steps = pd.read_parquet(folder / "metrics")
    retried = steps[(steps["attempt"] == 2) & (steps["step"] == 0)]
    assert len(retried) == 2 and (retried["earlier_alive"] == 0).all()  # the first worker died
    assert "2 failed" in cli("status", "results/limits", cwd=here).stdout


def test_an_attempt_killed_for_memory_ends_as_oom(tmp_path: Path):
    """Ray's memory monitor, set to act once this machine uses 3 GiB more than now (Ray's
    own processes take about 1), kills a trial that allocates 256 MiB at a time (it would
    stop at 8 GiB if nothing killed it)."""
    total = ray_utils.get_system_memory()
    used = ray_utils.get_used_memory()
    threshold = min((used + 3 * 2**30) / total, 0.95)
    spec = write_sweep(
        tmp_path, "hoards", HOARDS, name="oom", experiment="hoards:experiment",
        params={"chunks": 32}, retries=0,
    )  # fmt: skip
    env = {"RAY_memory_usage_threshold": f"{threshold:.4f}", "RAY_memory_monitor_refresh_ms": "100"}
    out = sweep("run", str(spec), "-q", cwd=tmp_path, env=env)
    assert out.returncode == 1 and (tmp_path / "results" / "oom" / "trials").is_dir(), out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "oom" / "trials")
    assert trials["status"].tolist() == ["oom"], trials[["status", "error"]]
    assert "memory" in trials["error"].iloc[0]
    assert "1 oom" in out.stdout


def test_an_attempt_the_kernel_kills_for_memory_ends_as_oom(tmp_path: Path, memory_cgroup: Path):
    """The whole run (driver, embedded Ray, workers) in a 2.5 GiB memory cgroup with Ray's
    memory monitor off: the kernel's OOM killer ends the hoarding trial, which is `oom`
    with the kernel named; the worker that killed itself before it is plainly `failed`."""
    spec = write_sweep(
        tmp_path, "dies", DIES, name="kernel", experiment="dies:experiment",
        grid={"kind": ["sigkill", "hoard"]}, retries=0, max_concurrent=1,
    )  # fmt: skip
    env = {**cli_env(), "RAY_memory_monitor_refresh_ms": "0"}
    enter = str(memory_cgroup / "cgroup.procs")
    out = subprocess.run(
        [SWEEP, "run", str(spec), "-q"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300, preexec_fn=lambda: Path(enter).write_text(str(os.getpid())),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "1 oom" in out.stdout
    trials = pd.read_parquet(tmp_path / "results" / "kernel" / "trials").set_index("kind")
    assert trials["status"].to_dict() == {"sigkill": "failed", "hoard": "oom"}
    assert "the kernel's OOM killer killed" in trials.loc["hoard", "error"]
    assert "OOM killer killed" not in trials.loc["sigkill", "error"]


RAISES = """
    import torch

    def experiment(config, trial):
        trial.report(step=0)
        if config["kind"] == "python":
            raise MemoryError("cannot allocate the batch")
        if config["kind"] == "cuda":  # what torch raises when the GPU's memory runs out
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise RuntimeError("not about memory")
"""


def test_memory_errors_the_experiment_raises_end_as_oom(tmp_path: Path, ray_instance):
    """A Python MemoryError and torch's CUDA out-of-memory error are `oom`, with the
    message; any other exception is `failed`."""
    spec = write_sweep(
        tmp_path, "raises", RAISES, name="raises", experiment="raises:experiment",
        grid={"kind": ["python", "cuda", "other"]}, storage=str(tmp_path / "results"),
    )  # fmt: skip
    result = run_sweep(spec, progress=None)
    trials = result.trials().set_index("kind")
    assert trials["status"].to_dict() == {"python": "oom", "cuda": "oom", "other": "failed"}
    assert "cannot allocate the batch" in trials.loc["python", "error"]
    assert "CUDA out of memory" in trials.loc["cuda", "error"]


WAITS = """
    def experiment(config, trial):
        trial.report(step=0)
        return {"twice": 2 * config["x"]}
"""


def test_trials_waiting_for_a_busy_cluster_wait_past_start_time_then_run(
    tmp_path: Path, ray_instance
):
    """Another user's task holds 1 of the 2 CPUs for longer than limits.start_time (and the
    stuck-worker check's polls); this sweep's trials need both CPUs. They wait, not counted
    as trials whose workers never start, and run once the CPU is free."""
    # start_time is also what a freed trial's worker has to start in: 15 s, for a loaded
    # machine (6 s was too short for three test processes on 2 cores in CI).
    start_time, held = 15, 20
    spec = write_sweep(
        tmp_path, "waits", WAITS, name="waits", experiment="waits:experiment",
        grid={"x": [1, 2]}, resources={"cpu": 2}, limits={"start_time": start_time},
        storage=str(tmp_path / "results"),
    )  # fmt: skip
    holding = tmp_path / "holding"

    def hold(flag: str, seconds: float) -> None:  # nested: shipped by value, as a user's
        Path(flag).touch()
        time.sleep(seconds)

    holder = ray_instance.remote(num_cpus=1)(hold).remote(str(holding), held)
    while not holding.exists():
        if ray_instance.wait([holder], timeout=0.1)[0]:
            ray_instance.get(holder)  # it ended without holding: raises why
    began = time.time()
    result = run_sweep(spec, progress=None)
    ray_instance.get(holder)
    assert result.aborted is None and result.count("ok") == 2, result.rows
    trials = result.trials()
    assert (trials["started_at"].min().timestamp() - began) > start_time + 2  # they waited
