"""Trial bundles (spec `bundle:`): members are ordinary trials in the results, run one after
another in one worker, fail and retry alone, and a killed driver or worker costs only the
members that had not ended."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_exactly_once, cli, run_directly, start_and_kill, sweep, write_sweep

from orchestrator import run_sweep, trial_id
from orchestrator.errors import InputError
from orchestrator.faults.failures import UNCERTAIN

# Seeded draws in every step and in the result: a member that ran with another's seed or
# generator state, or reported to another's row, changes the numbers. Each execution
# appends a line to runs/<x>-<seed> (with `runs`), so a test counts what ran, not only what
# was recorded; pid, began, ended and cpus say where, when and with what it ran.
NOISY = """
import os
import random
import time
from pathlib import Path

import ray


def executions(config, seed):
    return Path(config["runs"]) / f"{config['x']}-{seed}" if "runs" in config else None


def cpus():  # the CPUs Ray gave this worker; 0 when run directly, outside a Ray worker
    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return 0.0
    return ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)


def noisy(config, trial):
    began, log, me = time.time(), executions(config, trial.seed), [config["x"], trial.seed]
    earlier = log.read_text().count("\\n") if log and log.exists() else 0
    if log:
        with log.open("a") as out:
            out.write(f"{os.getpid()}\\n")
    time.sleep(config.get("sleep", 0))
    for step in range(3):
        trial.report(step=step, draw=random.random() * config["x"])
    if config.get("fail") == me:
        raise ValueError(f"member x={config['x']} seed={trial.seed} fails")
    if config.get("flaky") == me and not earlier:
        raise RuntimeError("fails on its first execution only")
    if config.get("die") == me:
        os._exit(3)
    final = random.random() + config["x"]
    return {"final": final, "pid": os.getpid(), "began": began, "ended": time.time(),
            "cpus": cpus()}
"""
CELLS = [(x, seed) for x in (1, 2) for seed in range(3)]  # the grid of _spec: x by seed
UNDISTURBED = ("fail", "flaky", "die", "sleep", "runs")  # config keys that change no value


def _spec(folder: Path, **fields) -> Path:
    """The noisy sweep `b` in `folder`, results in folder/results/b; `fields` add to it."""
    fields = {"grid": {"x": [1, 2]}, "seeds": 3, **fields}
    return write_sweep(folder, "noisy", NOISY, name="b", experiment="noisy:noisy",
                       storage=str(folder / "results"), **fields)  # fmt: skip


def _ids(params: dict | None = None) -> dict[str, tuple[int, int]]:
    """The trial ids of _spec's sweep with `params`, each with its (x, seed): computed from
    the configs, not read from what ran."""
    return {
        trial_id("noisy:noisy", {**(params or {}), "x": x, "seed": seed}): (x, seed)
        for x, seed in CELLS
    }


def _results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.read_parquet(folder / "trials").sort_values(["trial_id", "attempt"])
    steps = pd.read_parquet(folder / "metrics").sort_values(["trial_id", "attempt", "step"])
    return trials.reset_index(drop=True), steps.reset_index(drop=True)


def _executions(runs: Path) -> dict[tuple[int, int], int]:
    """How often each (x, seed) ran, counted by the experiment itself."""
    counts = {cell: 0 for cell in CELLS}
    for log in runs.iterdir():
        x, seed = map(int, log.name.split("-"))
        counts[(x, seed)] = len(log.read_text().splitlines())
    return counts


def _alone(ids: dict[str, tuple[int, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The undisturbed run: each trial of `ids` run directly, outside Ray, seeded as the
    attempt seeds it (the experiment is deterministic given its seed)."""
    namespace: dict = {}
    exec(textwrap.dedent(NOISY), namespace)  # the experiment the sweeps run
    rows, steps = [], []
    for tid, (x, seed) in ids.items():
        final, reports, _ = run_directly(namespace["noisy"], {"x": x, "seed": seed})
        last = {name: value for name, value in reports[-1].items() if name != "step"}
        rows.append({"trial_id": tid, "status": "ok", "attempt": 1, **last, **final})
        steps += [{"trial_id": tid, "attempt": 1, **report} for report in reports]
    return pd.DataFrame(rows), pd.DataFrame(steps)


def _exactly_once(folder: Path, params: dict, failing: set[tuple[int, int]] = frozenset()):
    """Every trial of the sweep but the `failing` cells succeeded exactly once, with the
    values and steps of an undisturbed run; returns (trials, steps) of all of them."""
    trials, steps = _results(folder)
    ids = _ids(params)
    expected = {tid for tid, cell in ids.items() if cell not in failing}
    mine = trials[trials["trial_id"].isin(expected)], steps[steps["trial_id"].isin(expected)]
    assert_exactly_once(*mine, expected, _alone({t: ids[t] for t in expected}), ("draw", "final"))
    return trials, steps


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory, ray_instance) -> tuple[Path, Path]:
    """The same 6 trials run alone and in bundles of 2 (each bundle asking for both of the
    2 CPUs): their two sweep folders."""
    root = tmp_path_factory.mktemp("side_by_side")
    params = {"sleep": 0.05}  # members long enough to overlap, were they run at once
    for kind, bundle in (("solo", {}), ("bundled", {"bundle": {"size": 2}})):
        resources = {"resources": {"cpu": 2}} if bundle else {}
        (root / kind).mkdir()
        run_sweep(_spec(root / kind, params=params, **bundle, **resources), progress=None)
    return root / "solo" / "results" / "b", root / "bundled" / "results" / "b"


def test_a_bundled_run_records_the_same_trials_as_an_unbundled_one(side_by_side):
    solo, solo_steps = _results(side_by_side[0])
    bundled, bundled_steps = _results(side_by_side[1])
    assert set(solo["trial_id"]) == set(_ids({"sleep": 0.05})) and (solo["status"] == "ok").all()
    same = ["trial_id", "status", "attempt", "x", "seed", "draw", "final"]
    pd.testing.assert_frame_equal(solo[same], bundled[same])
    steps = ["trial_id", "attempt", "step", "draw"]
    pd.testing.assert_frame_equal(solo_steps[steps], bundled_steps[steps])
    assert solo["bundle"].isna().all()
    # x=1 and x=2 in bundles of at most 2 seeds each: 2 + 1 per x
    assert bundled.groupby("x")["bundle"].nunique().tolist() == [2, 2]
    assert (bundled.groupby("bundle").size().sort_values().tolist()) == [1, 1, 2, 2]
    assert bundled.groupby("bundle")["x"].nunique().eq(1).all()


def test_a_bundles_members_run_one_after_another_in_one_worker(side_by_side):
    bundled, _ = _results(side_by_side[1])
    for _, members in bundled.sort_values("seed").groupby("bundle"):
        assert members["pid"].nunique() == 1, "members ran in different processes"
        began, ended = members["began"].tolist(), members["ended"].tolist()
        assert all(b < e for b, e in zip(began, ended, strict=True))
        assert all(e <= b for e, b in zip(ended, began[1:], strict=False)), "members overlap"


def test_resources_are_asked_for_once_per_bundle(side_by_side):
    """Bundles of 2 asking for cpu: 2 ran on a Ray of 2 CPUs, each member's worker holding 2:
    the spec's resources once per bundle (per member, a bundle would need 4 and never start)."""
    bundled, _ = _results(side_by_side[1])
    assert bundled["cpus"].eq(2.0).all() and bundled.groupby("bundle").size().max() == 2
    solo, _ = _results(side_by_side[0])
    assert solo["cpus"].eq(1.0).all()  # the default, per trial


def test_dry_run_lists_each_trials_bundle_and_status_the_members(side_by_side, tmp_path):
    bundled, _ = _results(side_by_side[1])
    ran = bundled.groupby("bundle")["trial_id"].agg(frozenset)
    spec = side_by_side[1].parent.parent / "spec.yaml"
    plan = cli("run", str(spec), "--dry-run", "--set", f"storage={tmp_path}", cwd=tmp_path)
    assert plan.returncode == 0 and not any(tmp_path.iterdir())  # nothing written
    assert "bundles: 4 (up to 2 trials differing only in seed)" in plan.stdout
    assert "resources per bundle: 2 CPU, 0 GPU  (all at once: 8 CPU, 0 GPU)" in plan.stdout
    planned = _listed(plan.stdout, set(bundled["trial_id"]), column=2)  # trial_id state bundle
    assert set(planned.values()) == set(ran)  # the members of each bundle, as they ran

    status = cli("status", str(side_by_side[1]), cwd=tmp_path)
    assert status.returncode == 0
    assert "bundles  4 bundles ran 6 trials (spec bundle: {'size': 2, 'by': ['seed']})" in (
        status.stdout
    )
    listed = _listed(status.stdout, set(bundled["trial_id"]), column=3)  # id status attempt b.
    assert listed == {b: members for b, members in ran.items()}


def _listed(text: str, ids: set[str], column: int) -> dict[str, frozenset[str]]:
    """The trials of a listing's rows, by the value of their bundle `column`."""
    rows = [line.split() for line in text.splitlines()]
    members: dict[str, set[str]] = {}
    for row in rows:
        if row and row[0] in ids:
            members.setdefault(row[column], set()).add(row[0])
    assert set().union(*members.values()) == ids, "trials missing from the listing"
    return {bundle: frozenset(m) for bundle, m in members.items()}


def test_a_member_that_raises_fails_alone_and_its_retry_runs_only_it(tmp_path, ray_instance):
    runs = tmp_path / "runs"
    runs.mkdir()
    params = {"fail": [2, 1], "flaky": [1, 0], "runs": str(runs)}
    spec = _spec(tmp_path, params=params, retries=1, bundle={"size": 3})
    result = run_sweep(spec, progress=None)
    # a retry runs only its bundle's failed members: the others ran once
    assert _executions(runs) == {(1, 0): 2, (1, 1): 1, (1, 2): 1, (2, 0): 1, (2, 1): 2, (2, 2): 1}
    trials, _ = _exactly_once(tmp_path / "results" / "b", params, failing={(2, 1)})
    attempts = trials.groupby(["x", "seed"])["status"].agg(list).to_dict()
    assert attempts == {
        (1, 0): ["failed", "ok"],  # retried once, alone
        (1, 1): ["ok"],
        (1, 2): ["ok"],
        (2, 0): ["ok"],
        (2, 1): ["failed", "failed"],  # out of retries
        (2, 2): ["ok"],
    }
    failed = trials[trials["status"] == "failed"]
    assert failed["error"].str.contains("Traceback").all()
    assert failed.loc[failed["x"] == 2, "error"].str.contains("member x=2 seed=1 fails").all()
    assert failed.loc[failed["x"] == 1, "error"].str.contains("first execution only").all()
    assert result.failed_trials == set(
        trials.loc[trials["x"].eq(2) & trials["seed"].eq(1)].trial_id
    )
    # a retry runs in the bundle it belonged to
    assert trials.groupby("trial_id")["bundle"].nunique().eq(1).all()


def test_a_member_that_kills_its_worker_is_found_one_at_a_time_and_charged(tmp_path, ray_instance):
    """The worker dies in member (1, 1), after the driver saw it begin (members wait 0.6 s
    before their first report, past the 0.5 s batching, so that report goes at once). Its
    last reports died with it: the driver cannot know whether (1, 1) or (1, 2) ran, so (1, 1)
    gets an "unsure" row, which costs no retry, and the bundle runs again one member at a
    time: (1, 1) dies again, now known, and is charged; (1, 2) runs after it."""
    runs = tmp_path / "runs"
    runs.mkdir()
    params = {"die": [1, 1], "sleep": 0.6, "runs": str(runs)}
    result = run_sweep(_spec(tmp_path, params=params, bundle={"size": 3}), progress=None)
    assert _executions(runs) == {(1, 0): 1, (1, 1): 2, (1, 2): 1, (2, 0): 1, (2, 1): 1, (2, 2): 1}
    trials, _ = _exactly_once(tmp_path / "results" / "b", params, failing={(1, 1)})
    dead = trials[trials["x"].eq(1) & trials["seed"].eq(1)]
    assert dead["status"].tolist() == ["failed", "failed"] and dead["attempt"].tolist() == [1, 2]
    unsure, charged = dead["error"].tolist()
    assert unsure.startswith(UNCERTAIN)
    assert UNCERTAIN not in charged and ("died" in charged or "exit" in charged), charged
    others = trials[~trials.index.isin(dead.index)]
    assert others["error"].isna().all()  # no other trial got a row for the deaths
    assert trials["bundle"].notna().all() and trials.groupby("x")["bundle"].nunique().eq(1).all()
    assert result.count("ok") == 5 and result.failed_trials == set(dead["trial_id"])


def test_the_driver_killed_mid_bundle_then_rerun_runs_only_the_missing_members(
    tmp_path, ray_instance
):
    """1 s members in bundles of 3 (x=1 and x=2 at once), the driver SIGKILLed when the
    first rows are written, then run again: each trial has exactly one successful row, with
    an undisturbed run's values, and the members that had succeeded before the kill did not
    run again."""
    runs = tmp_path / "runs"
    runs.mkdir()
    params = {"sleep": 1.0, "runs": str(runs)}
    spec = _spec(tmp_path, params=params, bundle={"size": 3})
    folder = tmp_path / "results" / "b"
    start_and_kill(tmp_path, spec, signal.SIGKILL, folder / "trials")
    before = pd.read_parquet(folder / "trials")
    done = set(before.loc[before["status"] == "ok", "trial_id"])
    assert 0 < len(done) < 6
    ran_before = _executions(runs)

    run_sweep(spec, progress=None)
    ids = _ids(params)
    again = {cell: n - ran_before[cell] for cell, n in _executions(runs).items()}
    assert all(again[ids[tid]] == 0 for tid in done)  # succeeded before: not run again
    assert all(again[ids[tid]] == 1 for tid in set(ids) - done)
    _exactly_once(folder, params)


FUSED = """
def one(config, trial):
    raise AssertionError("a bundle of a fused experiment ran its members one by one")


def together(configs, trials):
    if configs[0]["mode"] == "raise":
        raise RuntimeError("the fused step broke")
    for trial in trials:
        trial.report(step=0, value=float(trial.seed) * 10)
    finals = [{"value": float(trial.seed)} for trial in trials]
    return finals[:1] if configs[0]["mode"] == "short" else finals


one.fused = together
"""


@pytest.fixture(scope="module")
def fused(tmp_path_factory, ray_instance) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One sweep of a fused experiment: a bundle of 3 seeds per mode, with one retry."""
    root = tmp_path_factory.mktemp("fused")
    spec = write_sweep(
        root, "fusing", FUSED, name="f", experiment="fusing:one", storage=str(root / "results"),
        grid={"mode": ["fine", "raise", "short"]}, seeds=3, bundle={"size": 3}, retries=1,
    )  # fmt: skip
    run_sweep(spec, progress=None)
    return _results(root / "results" / "f")


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("fine", None),
        ("raise", "RuntimeError: the fused step broke"),
        ("short", "return a list of 3 dicts of final metrics"),
    ],
)
def test_a_fused_bundle_reports_per_member_and_fails_whole(fused, mode, expected):
    all_trials, all_steps = fused
    trials = all_trials[all_trials["mode"] == mode]
    steps = all_steps[all_steps["trial_id"].isin(trials["trial_id"])]
    assert trials["bundle"].nunique() == 1 and trials["seed"].nunique() == 3
    if expected is None:
        assert len(trials) == 3 and (trials["status"] == "ok").all()
        assert trials.set_index("seed")["value"].to_dict() == {0: 0.0, 1: 1.0, 2: 2.0}
        assert steps.set_index("trial_id")["value"].to_dict() == dict(
            zip(trials["trial_id"], trials["seed"] * 10.0, strict=True)
        )
    else:  # each member: its attempt and its one retry, then nothing more runs
        assert trials.groupby("trial_id")["attempt"].agg(list).tolist() == [[1, 2]] * 3
        assert (trials["status"] == "failed").all()
        assert trials["error"].str.contains("Traceback").all()
        assert trials["error"].str.contains(expected).all()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"search": {"algorithm": "random", "num_samples": 4}}, "seeds already run as one"),
        ({"scheduler": {"metric": "final", "mode": "min"}}, "bundle and scheduler do not go"),
        ({"bundle": {"size": 2, "by": ["seeds"]}}, 'did you mean "seed"'),
        ({"bundle": {"size": 0}}, "bundle.size"),
    ],
)
def test_bundles_refuse_what_they_cannot_do(tmp_path, fields, message):
    """Through `sweep run`: exit 2, the message, nothing written. The first case through the
    installed console script, the others in this process."""
    _spec(tmp_path, **{"bundle": {"size": 2}, **fields})
    run = sweep if "search" in fields else cli
    out = run("run", "spec.yaml", cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.py", "spec.yaml"]


def test_bundle_settings_can_be_set_from_the_command_line():
    from orchestrator.spec import load_spec

    raw = {"name": "b", "experiment": "toy", "grid": {"x": [1, 2]}}
    spec = load_spec(raw, ["bundle.size=8", "bundle.by=*"])
    assert (spec.bundle.size, spec.bundle.by) == (8, "*")


def test_bundles_a_fused_experiment_cannot_train_together_are_refused_before_a_run(tmp_path):
    spec = {"name": "q", "experiment": "reproducibility", "seeds": 2,
            "grid": {"activation": ["relu", "gelu"]}, "bundle": {"size": 4, "by": "*"},
            "storage": str(tmp_path)}  # fmt: skip
    with pytest.raises(InputError, match="may differ only in seed.*differ in activation"):
        run_sweep(spec, dry_run=True)
    assert not (tmp_path / "q").exists()
    assert run_sweep({**spec, "bundle": {"size": 4}}, dry_run=True).bundles  # by seed: fine
