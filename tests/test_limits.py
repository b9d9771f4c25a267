"""Attempts that run too long, stay silent, or run out of memory, in real `sweep run`
subprocesses: each is stopped for real and recorded with its own status and reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import ray._private.utils as ray_utils
from conftest import sweep, write_sweep

HANGS = """
    import os
    import time
    from pathlib import Path

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


def test_attempts_past_their_limits_end_as_timeout_and_free_their_worker(tmp_path: Path):
    (tmp_path / "pids").mkdir()
    spec = write_sweep(
        tmp_path, "hangs", HANGS, name="limits", experiment="hangs:experiment",
        grid={"kind": ["busy", "silent", "fine"]}, params={"pids": str(tmp_path / "pids")},
        retries=1, limits={"trial_time": 5, "report_gap": "3s"},
    )  # fmt: skip
    out = sweep("run", str(spec), "-q", cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # two trials failed, every attempt timed out
    assert "(1 ok, 0 failed, 4 timeout" in out.stdout
    folder = tmp_path / "results" / "limits"
    trials = pd.read_parquet(folder / "trials").set_index(["kind", "attempt"]).sort_index()
    assert trials.loc["fine", "status"].tolist() == ["ok"]
    for kind, limit in (("busy", "limits.trial_time (5 s)"), ("silent", "limits.report_gap (3 s)")):
        attempts = trials.loc[kind]
        assert attempts.index.tolist() == [1, 2] and (attempts["status"] == "timeout").all()
        assert attempts["error"].str.contains(limit, regex=False).all()
    assert (trials.loc["busy", "duration_s"] >= 5).all()
    steps = pd.read_parquet(folder / "metrics")
    retried = steps[(steps["attempt"] == 2) & (steps["step"] == 0)]
    assert len(retried) == 2 and (retried["earlier_alive"] == 0).all()  # the first worker died
    assert "2 failed" in sweep("status", "results/limits", cwd=tmp_path).stdout


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
