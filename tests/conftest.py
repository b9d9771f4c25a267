"""Shared fixtures and helpers. Tests that need Ray in this process use `ray_instance`:
one real local Ray for each test process (pytest-xdist runs three, each on whole files; a
module that needs a cluster of its own shuts it down; the next module that asks starts it
again). `sweep` runs the real console script in a subprocess, for what only a process
shows (exit codes of the installed entry point, signals, kills); `cli` runs the same
command in this process, for everything else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

# One thread for torch and BLAS in this process and the ones it starts, unless set: the
# suite's models are tiny, and a thread pool sized for the machine's cores competes with
# Ray's processes for them (a 40-token decode took 4.8 s with two threads on a loaded
# 2-core machine, 0.2 s with one). Ray gives its workers one thread per CPU anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SWEEP = str(BIN / "sweep")  # the installed console script

# The files that take longest, longest first (seconds of their tests together, `pytest
# --durations=0` on 2 cores): xdist hands files to its workers in collection order, so one
# of these collected late would run on while the other workers sit idle.
SLOWEST = ["test_cli.py", "test_limits.py", "test_clusters.py", "test_lmeval.py",
           "test_docs.py", "test_bundles.py", "test_rounds.py", "test_multinode.py",
           "test_search.py", "test_tridecoding.py"]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first, the rest in their order."""
    rank = {name: i for i, name in enumerate(SLOWEST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="module")
def ray_instance():
    """The session's local Ray, started if no Ray runs in this process, as
    orchestrator/worker/shutdown.py tells a program that starts Ray itself to start it: its
    workers print no traceback when Ray stops them (sweeps run through `cli` join this Ray,
    and tests check what they print)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
            runtime_env={"worker_process_setup_hook": "orchestrator.worker.shutdown.quiet_exits"},
        )  # fmt: skip
    return ray


@pytest.fixture(scope="session", autouse=True)
def _stop_ray_at_the_end():
    yield
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """An empty storage folder for one test."""
    return tmp_path / "results"


def write_sweep(folder: Path, module: str, source: str, **spec: object) -> Path:
    """A user's experiment module `<module>.py` and `spec.yaml` naming it, in `folder`."""
    import yaml

    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli_env() -> dict[str, str]:
    """Environment for `sweep` subprocesses: the repo importable (before what PYTHONPATH
    already holds, such as packages installed with --target), no .pyc files in tmp folders."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


def sweep(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess:
    """`sweep ARGS` in a subprocess, as a user types it; `env` adds to its environment
    (a None value removes that variable)."""
    full = {k: v for k, v in {**cli_env(), **(env or {})}.items() if v is not None}
    return subprocess.run(
        [SWEEP, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def cli(
    *args: str, cwd: Path, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess:
    """`sweep ARGS` run in this process by click's test runner, from `cwd`: what the
    subprocess of `sweep` gives (exit code, stdout, stderr) without a Python start and a
    Ray Tune import per call. A sweep it runs joins this process's Ray if one is running."""
    from click.testing import CliRunner

    from orchestrator.cli import main

    with contextlib.chdir(cwd):
        out = CliRunner(env=env).invoke(main, list(args), prog_name="sweep", catch_exceptions=False)
    return subprocess.CompletedProcess(["sweep", *args], out.exit_code, out.stdout, out.stderr)


def start_and_kill(
    cwd: Path, spec: Path, sig: signal.Signals, written: Path, later: float = 0.0
) -> int:
    """Start `sweep run SPEC`, wait until it writes a new file to the table folder `written`
    (trials/: some trials ended; metrics/: some are running or ended) and `later` seconds
    more, then send `sig` (SIGKILL: to the driver and the Ray it started). Returns the
    driver's exit code."""
    before = set(written.glob("*.parquet"))
    driver = subprocess.Popen(
        [SWEEP, "run", str(spec)], cwd=cwd, env=cli_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not set(written.glob("*.parquet")) - before:
        assert time.monotonic() < deadline and driver.poll() is None, f"no new file in {written}"
        time.sleep(0.1)
    time.sleep(later)
    if sig == signal.SIGKILL:
        os.killpg(driver.pid, signal.SIGKILL)
    else:
        driver.send_signal(sig)
    return driver.wait(timeout=120)


def cut_off(folder: Path) -> set[tuple[str, int]]:
    """Attempts with steps in metrics/ and no row in trials/: running when the driver
    ended (killed, or interrupted: their rows come with the next run)."""
    steps = pd.read_parquet(folder / "metrics", columns=["trial_id", "attempt"])
    rows = (
        pd.read_parquet(folder / "trials", columns=["trial_id", "attempt"])
        if any((folder / "trials").glob("*.parquet"))
        else steps.iloc[:0]
    )
    keys = {(t, a) for t, a in zip(rows["trial_id"], rows["attempt"], strict=True)}
    return set(zip(steps["trial_id"], steps["attempt"], strict=True)) - keys


def run_directly(
    fn, config: dict, device: str = "cpu", inputs: dict | None = None
) -> tuple[dict, list[dict], dict]:
    """An experiment function with the real Trial context, outside Ray, seeded as the
    attempt seeds it: (final metrics as numbers, reported steps, saved artifacts)."""
    from orchestrator.context import Trial, check_metrics, seed_everything
    from orchestrator.declaration import declaration
    from orchestrator.params import effective

    config = effective(declaration(fn).params, config)  # defaults filled in, as the runner does
    reports: list[dict] = []
    artifacts: dict = {}
    save = lambda name, obj: artifacts.setdefault(name, obj)  # noqa: E731
    trial = Trial("t", config, device, reports.append, save, inputs)
    seed_everything(config["seed"])
    return check_metrics(fn(config, trial), config), reports, artifacts


def run_together(fn, configs: list[dict], device: str = "cpu") -> list[tuple[dict, list, dict]]:
    """An experiment's fused implementation (its declared `fused`) on `configs` at once, with
    a real Trial context each, outside Ray: per member, what run_directly gives for it alone."""
    from orchestrator.context import Trial, check_metrics, seed_everything
    from orchestrator.declaration import declaration
    from orchestrator.params import effective

    declared = declaration(fn)
    configs = [effective(declared.params, config) for config in configs]
    members = [([], {}) for _ in configs]
    trials = [
        Trial(f"t{i}", config, device, reports.append, artifacts.setdefault)
        for i, (config, (reports, artifacts)) in enumerate(zip(configs, members, strict=True))
    ]
    seed_everything(configs[0]["seed"])
    finals = declared.fused(configs, trials)
    return [
        (check_metrics(final, config), reports, artifacts)
        for final, config, (reports, artifacts) in zip(finals, configs, members, strict=True)
    ]


def make_sweep(
    root: Path,
    name: str,
    rows: list[dict],
    steps: list[dict],
    seeds: int = 2,
    grid: dict | None = None,
    search: str = "grid",
    pairs: list[dict] = (),
) -> Path:
    """A sweep folder as the runner leaves it, written by the real store: trials (one file
    per row, as flushes would), metrics and pairs. Rows carry `act` unless `grid` says."""
    from orchestrator.store.folder import SweepStore

    grid = grid or {"act": ["a", "b"]}
    store = SweepStore(str(root), name)
    store.write_meta(
        {
            "name": name,
            "experiment": "exp",
            "config_columns": ["steps", *grid, "seed"],
            "spec": {
                "grid": grid,
                "params": {"steps": 3},
                "seeds": seeds,
                "search": {"algorithm": search},
                "report": {},
            },
        }
    )
    base = {"sweep": name, "experiment": "exp", "error": None, "steps": 3}
    for row in rows:  # one file per trial row, as flushes would
        store.append("trials", [{**base, **row}])
    store.append("metrics", steps)
    store.append("pairs", list(pairs))
    return root / name


def trial(tid: str, act: str, seed: int, status: str = "ok", attempt: int = 0, **metrics) -> dict:
    return {
        "trial_id": tid,
        "act": act,
        "seed": seed,
        "status": status,
        "attempt": attempt,
        **metrics,
    }


def steps(tid: str, losses: list[float], attempt: int = 0) -> list[dict]:
    return [
        {"trial_id": tid, "attempt": attempt, "step": i, "loss": v} for i, v in enumerate(losses)
    ]


def overlapping(trials) -> list[tuple]:
    """Pairs of trial rows that ran at the same time on the same node."""
    rows = list(trials.itertuples())
    return [
        (a, b)
        for a in rows
        for b in rows
        if a.trial_id < b.trial_id
        and a.node == b.node
        and a.started_at < b.finished_at
        and b.started_at < a.finished_at
    ]


def assert_exactly_once(
    trials, metrics, expected: set[str], undisturbed: tuple | None = None, values=()
) -> None:
    """Every trial of `expected` has exactly one successful row, and no other trial has
    a row; no key is twice in either table; every attempt with steps has its row. Given
    an undisturbed run's (trials, metrics) of an experiment that is deterministic given
    its seed: the successful rows' `values` columns, and their steps, equal that run's."""
    assert not trials.duplicated(["trial_id", "attempt"]).any()
    assert not metrics.duplicated(["trial_id", "attempt", "step"]).any()
    rows = set(zip(trials["trial_id"], trials["attempt"], strict=True))
    assert set(zip(metrics["trial_id"], metrics["attempt"], strict=True)) <= rows
    ok = trials[trials["status"] == "ok"]
    assert ok["trial_id"].is_unique, "a trial succeeded twice"
    assert set(ok["trial_id"]) == expected, "trials missing, or trials nobody asked for"
    assert set(trials["trial_id"]) == expected
    if undisturbed is not None:
        for mine, theirs in zip(
            successful(trials, metrics, values), successful(*undisturbed, values), strict=True
        ):
            pd.testing.assert_frame_equal(mine, theirs)


def successful(trials, metrics, values=()) -> tuple:
    """The successful rows' `values` by trial id, and their steps (time and attempt left
    out), in a fixed order: what two runs of one sweep must agree on."""
    ok = trials[trials["status"] == "ok"]
    steps = metrics.merge(ok[["trial_id", "attempt"]]).drop(
        columns=["time", "attempt", "sweep"], errors="ignore"
    )
    return (
        ok.set_index("trial_id")[list(values)].sort_index(),
        steps[sorted(steps.columns)].sort_values(["trial_id", "step"], ignore_index=True),
    )
