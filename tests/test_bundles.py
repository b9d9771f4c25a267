"""Trial bundles (spec `bundle:`): members are ordinary trials in the results, fail and
retry alone, and a killed driver or worker costs only the members that had not ended."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_exactly_once, start_and_kill, write_sweep

from orchestrator import run_sweep
from orchestrator.errors import InputError
from orchestrator.spec import load_spec

# Seeded draws in every step and in the result: a member that ran with another's seed or
# generator state, or reported to another's row, changes the numbers.
NOISY = """
import os
import random
import time
from pathlib import Path


def noisy(config, trial):
    time.sleep(config.get("sleep", 0))
    for step in range(3):
        trial.report(step=step, draw=random.random() * config["x"])
    tries = Path(config.get("tries_dir", ".")) / f"{config['x']}-{trial.seed}"
    if config.get("fail") == [config["x"], trial.seed]:
        raise ValueError(f"member x={config['x']} seed={trial.seed} fails")
    if config.get("flaky") == [config["x"], trial.seed] and not tries.exists():
        tries.touch()
        raise RuntimeError("fails on its first attempt only")
    if config.get("die") == [config["x"], trial.seed]:
        os._exit(3)
    return {"final": random.random() + config["x"]}
"""


def _spec(tmp_path: Path, storage: str, **fields) -> Path:
    fields = {"grid": {"x": [1, 2]}, "seeds": 3, **fields}
    return write_sweep(
        tmp_path,
        "noisy",
        NOISY,
        name="b",
        experiment="noisy:noisy",
        storage=str(tmp_path / storage),
        **fields,
    )


def _results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.read_parquet(folder / "trials").sort_values(["trial_id", "attempt"])
    if not (folder / "metrics").exists():  # no trial reported a step
        return trials.reset_index(drop=True), pd.DataFrame()
    steps = pd.read_parquet(folder / "metrics").sort_values(["trial_id", "attempt", "step"])
    return trials.reset_index(drop=True), steps.reset_index(drop=True)


def test_a_bundled_run_records_the_same_trials_as_an_unbundled_one(tmp_path, ray_instance):
    alone = run_sweep(_spec(tmp_path, "solo"), progress=None)
    together = run_sweep(_spec(tmp_path, "bundled", bundle={"size": 2}), progress=None)
    assert alone.count("ok") == together.count("ok") == 6
    solo, solo_steps = _results(tmp_path / "solo" / "b")
    bundled, bundled_steps = _results(tmp_path / "bundled" / "b")
    same = ["trial_id", "status", "attempt", "x", "seed", "draw", "final"]
    pd.testing.assert_frame_equal(solo[same], bundled[same])
    steps = ["trial_id", "attempt", "step", "draw"]
    pd.testing.assert_frame_equal(solo_steps[steps], bundled_steps[steps])
    assert solo["bundle"].isna().all()
    # x=1 and x=2 in bundles of at most 2 seeds each: 2 + 1 per x
    assert bundled.groupby("x")["bundle"].nunique().tolist() == [2, 2]
    assert (bundled.groupby("bundle").size().sort_values().tolist()) == [1, 1, 2, 2]
    assert bundled.groupby("bundle")["x"].nunique().eq(1).all()


def test_a_member_that_raises_fails_alone_and_its_retry_holds_only_it(tmp_path, ray_instance):
    tries = tmp_path / "tries"
    tries.mkdir()
    params = {"fail": [2, 1], "flaky": [1, 0], "tries_dir": str(tries)}
    spec = _spec(tmp_path, "results", params=params, retries=1, bundle={"size": 3})
    result = run_sweep(spec, progress=None)
    trials, _ = _results(tmp_path / "results" / "b")
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
    assert result.failed_trials == set(
        trials.loc[trials["x"].eq(2) & trials["seed"].eq(1)].trial_id
    )
    # a retry runs in the bundle it belonged to, with only its failed members
    assert trials.groupby("trial_id")["bundle"].nunique().eq(1).all()


def test_a_member_that_kills_its_worker_is_charged_and_the_others_run(tmp_path, ray_instance):
    """The worker dies in member (1, 1): which member it ran is not known from the first
    death (reports travel in batches), so the bundle runs again one member at a time and the
    second death pins it down. Rows written in between say so and cost no retry."""
    spec = _spec(tmp_path, "results", params={"die": [1, 1]}, bundle={"size": 3})
    result = run_sweep(spec, progress=None)
    trials, steps = _results(tmp_path / "results" / "b")
    unsure = trials["error"].fillna("").str.contains("runs again one trial at a time")
    counted = trials[~unsure]
    assert counted.groupby("trial_id").size().eq(1).all()
    dead = counted[counted["status"] == "failed"]
    assert dead[["x", "seed"]].values.tolist() == [[1, 1]]
    assert "died" in dead["error"].iloc[0] or "exit" in dead["error"].iloc[0]
    assert trials["bundle"].notna().all()
    assert result.count("ok") == 5
    assert_exactly_once(trials, steps)


def test_the_driver_killed_mid_bundle_then_rerun_runs_only_the_missing_members(tmp_path):
    """1 s members in one bundle of 6, the driver SIGKILLed when the first rows are written,
    then run again: each trial has exactly one successful row, and the members that had
    succeeded before the kill did not run again."""
    spec = _spec(tmp_path, "results", params={"sleep": 1.0}, bundle={"size": 6})
    folder = tmp_path / "results" / "b"
    start_and_kill(tmp_path, spec, signal.SIGKILL, folder / "trials")
    before = pd.read_parquet(folder / "trials")
    assert 0 < (before["status"] == "ok").sum() < 6

    rerun = run_sweep(spec, progress=None)
    trials, steps = _results(folder)
    ok = trials[trials["status"] == "ok"]
    assert ok["trial_id"].is_unique and len(ok) == 6
    assert not set(before.loc[before.status == "ok", "trial_id"]) & {
        r["trial_id"] for r in rerun.rows
    }
    assert_exactly_once(trials, steps)


FUSED = """
def one(config, trial):
    return {"value": float(trial.seed)}


def together(configs, trials):
    if configs[0]["mode"] == "raise":
        raise RuntimeError("the fused step broke")
    for trial in trials:
        trial.report(step=0, value=float(trial.seed) * 10)
    finals = [{"value": float(trial.seed)} for trial in trials]
    return finals[:1] if configs[0]["mode"] == "short" else finals


one.fused = together
"""


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("fine", None),
        ("raise", "RuntimeError: the fused step broke"),
        ("short", "return a list of 3 dicts of final metrics"),
    ],
)
def test_a_fused_bundle_reports_per_member_and_fails_whole(tmp_path, ray_instance, mode, expected):
    spec = write_sweep(
        tmp_path, "fusing", FUSED, name="f", experiment="fusing:one",
        storage=str(tmp_path / "results"), params={"mode": mode}, seeds=3, bundle={"size": 3},
        retries=1,
    )  # fmt: skip
    run_sweep(spec, progress=None)
    trials, steps = _results(tmp_path / "results" / "f")
    assert trials["bundle"].nunique() == 1
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
        ({"search": {"algorithm": "random", "num_samples": 4}}, "search random"),
        ({"scheduler": {"metric": "final", "mode": "min"}}, "scheduler do not go together"),
        ({"bundle": {"size": 2, "by": ["seeds"]}}, 'did you mean "seed"'),
        ({"bundle": {"size": 0}}, "bundle.size"),
    ],
)
def test_bundles_refuse_what_they_cannot_do(fields, message):
    raw = {"name": "b", "experiment": "toy", "grid": {"x": [1, 2]}, "bundle": {"size": 2}}
    with pytest.raises(InputError, match=message):
        load_spec({**raw, **fields})


def test_bundle_settings_can_be_set_from_the_command_line():
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
