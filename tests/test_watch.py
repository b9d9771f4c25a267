"""`sweep status --watch`: a live view of a sweep from its tables, watched from another
process while a real sweep runs, and the view of a finished sweep's tables value by value."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import SWEEP, cli, cli_env, write_sweep

from analysis.configs import SearchGoal
from analysis.settings import ReportSettings
from orchestrator.spec import seconds
from orchestrator.store.folder import store_at
from orchestrator.summary import summarise
from orchestrator.watch import Tables, best_goal, body, header, read_tables

MODULE = """
    import time

    def experiment(config, trial):
        for step in range(3):
            time.sleep(config["sleep"])
            trial.report(step=step, loss=config["x"] / (step + 1))
        if config["x"] == 3:
            raise ValueError("x=3 is not allowed")
        return {"loss": config["x"] / 2, "acc": 1 - config["x"] / 10}
"""
SPEC = {
    "name": "watched",
    "experiment": "watch_exp:experiment",
    "grid": {"x": [1, 2, 3, 4, 5, 6]},
    "seeds": 1,
    "params": {"sleep": 0.4},
    "resources": {"cpu": 1},
}
COUNTS = re.compile(r"^  (\d+) done \| (\d+) running \| (\d+) failed \| (\d+) pending", re.M)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`sweep run` of SPEC in a subprocess, watched by `sweep status --watch --every 0.5` in
    another from when its sweep.json appears: the folder, and the watch's exit code (None:
    still running 30 s after the driver ended, then killed), stdout, stderr and wall-clock
    time it ended."""
    folder = tmp_path_factory.mktemp("watch")
    spec = write_sweep(folder, "watch_exp", MODULE, **SPEC)
    driver = subprocess.Popen(
        [SWEEP, "run", str(spec), "-q"], cwd=folder, env=cli_env(), text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sweep_dir = folder / "results" / "watched"
    deadline = time.monotonic() + 120
    while not (sweep_dir / "sweep.json").exists():
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
        time.sleep(0.05)
    watcher = subprocess.Popen(
        [SWEEP, "status", "results/watched", "--watch", "--every", "0.5"], cwd=folder,
        env=cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    ended: dict[str, float] = {}  # process -> when it ended (wall clock)
    deadline = time.monotonic() + 180
    while len(ended) < 2 and time.monotonic() < deadline:
        for name, process in (("driver", driver), ("watch", watcher)):
            if name not in ended and process.poll() is not None:
                ended[name] = time.time()
                deadline = min(deadline, time.monotonic() + 30)  # for the other to end
        time.sleep(0.05)
    for process in (driver, watcher):
        if process.poll() is None:
            process.kill()
    out, err = watcher.communicate(timeout=10)
    assert driver.wait() == 1, driver.stderr.read()  # x=3 fails
    rc = watcher.returncode if "watch" in ended else None
    return {"dir": sweep_dir, "rc": rc, "out": out, "err": err, "at": ended.get("watch")}


def test_watch_follows_a_running_sweep_and_ends_with_it(watched: dict):
    assert watched["rc"] == 0, "the watch did not end by itself: " + watched["err"]
    assert watched["err"] == ""
    out = watched["out"]
    done = [int(m[0]) for m in COUNTS.findall(out)]
    assert done == sorted(done) and done[0] < done[-1] == 5, out  # trials ended as it watched
    assert len(set(done)) >= 3, out  # a view printed for each change, not only the first and last
    assert re.search(r"^  [0-9a-f]{16} attempt 1  step [0-2]  loss=\d", out, re.M), out
    run = read_tables(str(watched["dir"])).run
    assert out.endswith(f"sweep watched ended: run {run['run_id']} finished\n")
    ended = datetime.fromisoformat(run["finished_at"]).timestamp()  # to the second
    assert watched["at"] - ended < 10, "the watch went on after the sweep ended"


def test_the_view_of_a_finished_sweep(watched: dict):
    tables = read_tables(str(watched["dir"]))
    trials = tables.trials
    failed = trials.loc[trials["x"] == 3, "trial_id"].item()
    best = best_goal(tables, ReportSettings(), None, None)  # no report settings: first metric
    assert best == SearchGoal("loss", "min", "mean", None)
    lines = body(tables, best)
    assert lines[:3] == [
        "  5 done | 0 running | 1 failed | 0 pending  (6 trials)",
        "failed (newest first; sweep status shows all):",
        f"  {failed} attempt 1 x=3: ValueError: x=3 is not allowed",
    ]
    assert lines[3] == (
        "configs ranked by mean loss over seeds (so far: the best 3 of 6 configs, "
        "5 with a value, min is better):"
    )
    assert _table(lines[4]) == [["1", "1", "0.5"], ["2", "2", "1"], ["3", "4", "2"]]
    by_acc = body(tables, best_goal(tables, ReportSettings(), "acc", "max"))
    assert _table(by_acc[-1]) == [["1", "1", "0.9"], ["2", "2", "0.8"], ["3", "4", "0.6"]]
    assert header(tables, datetime.now().astimezone()).endswith(
        f"sweep watched: run {tables.run['run_id']} finished"
    )


def test_the_view_midway_counts_running_attempts_and_the_eta(watched: dict):
    """The finished sweep's tables as they were when only x = 1, 2, 3 had ended: the other
    three attempts' steps are there without a row, so they run; three trials ended in the
    90 s since the run began and three are left: ETA 90 s."""
    tables = read_tables(str(watched["dir"]))
    here = {"status": "running", "host": socket.gethostname(), "pid": os.getpid()}
    run = {**tables.run, **here}
    meta = {**tables.meta, "runs": [run]}
    ended = tables.trials[tables.trials["x"] <= 3]
    midway = Tables(
        meta, summarise(store_at(str(watched["dir"])), ended, meta), ended, tables.steps
    )
    now = datetime.fromisoformat(run["started_at"]) + timedelta(seconds=90)
    assert header(midway, now).endswith(
        f"sweep watched: run {run['run_id']} running | elapsed 0:01:30 | ETA 0:01:30"
    )
    lines = body(midway, best_goal(midway, ReportSettings(), None, None))
    assert lines[0] == "  2 done | 3 running | 1 failed | 0 pending  (6 trials)"
    running = tables.trials[tables.trials["x"] > 3].sort_values("trial_id")
    assert lines[1:5] == [
        "running (last reported step):",
        *(f"  {r.trial_id} attempt 1  step 2  loss={r.x / 3:.4g}" for r in running.itertuples()),
    ]


def test_watch_through_the_cli(watched: dict, tmp_path: Path):
    folder = str(watched["dir"])
    out = cli("status", folder, "--every", "10ms", cwd=tmp_path)  # --every implies --watch
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("5 done | 0 running | 1 failed") == 1  # the same view once in a log
    assert out.stdout.endswith("finished\n")
    by_acc = cli("status", folder, "--every", "10ms", "--metric", "acc", "--mode", "max",
                 cwd=tmp_path)  # fmt: skip
    assert by_acc.returncode == 0, by_acc.stderr
    assert "configs ranked by mean acc over seeds (" in by_acc.stdout
    assert "max is better):" in by_acc.stdout
    bad = cli("status", folder, "--every", "5x", cwd=tmp_path)
    assert bad.returncode == 2 and "give seconds (1, 0.5) or a duration (500ms" in bad.stderr
    alone = cli("status", folder, "--metric", "loss", cwd=tmp_path)
    assert alone.returncode == 2 and "--metric and --mode go with --watch" in alone.stderr
    nowhere = cli("status", str(tmp_path), "--watch", cwd=tmp_path)
    assert nowhere.returncode == 2 and "not a sweep folder" in nowhere.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1.0), ("0.5", 0.5), ("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), (" 2h ", 7200.0)],
)
def test_durations(text: str, expected: float):
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["5x", "", "s", "0", "-1", "1 ms s"])
def test_bad_durations(text: str):
    with pytest.raises(ValueError, match="duration"):
        seconds(text)


def _table(text: str) -> list[list[str]]:
    """rank, the config key and value of each row of a ranking's table (under its header)."""
    rows = [line.split() for line in text.splitlines()[1:]]
    return [row[:3] for row in rows]
