"""`bundle: {size: auto}`: the rule that picks a size from measurements and a memory budget,
the probe that measures a fused implementation, and a sweep that probes once, records its
choice in sweep.json, reuses it, and gets the trials a fixed size gets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
from conftest import cli, cli_env, write_sweep

from orchestrator import run_sweep
from orchestrator.autobundle import choose as choose_for
from orchestrator.autobundle import floor_size
from orchestrator.registry import resolve
from orchestrator.worker.probe import Measured, choose, sizes

MIB = 2**20

# A step takes as long at any size (a launch-bound GPU): throughput grows with the members.
# Each member holds `mib` MiB while it trains. Each call logs its first trial's id (a probe's
# trials are probe-0, probe-1, ...) and its size to `log`, when given.
FUSED = """
import time

import numpy as np

from orchestrator import experiment


def together(configs, trials):
    if configs[0].get("broken"):
        raise ValueError("the fused code is broken")
    held = np.ones((len(trials), configs[0]["mib"] * 2**17))
    if configs[0].get("log"):
        with open(configs[0]["log"], "a") as out:
            out.write(f"{trials[0].id} {len(trials)}\\n")
    for step in range(configs[0]["steps"]):
        time.sleep(0.02)
        for trial in trials:
            trial.report(step=step, value=float(trial.seed * 10 + step) + held.size * 0)
    return [{"final": trial.seed + 0.5 * config["x"]} for trial, config in zip(trials, configs)]


@experiment(fused=together, varies=["seed"])
def one(config, trial):
    raise AssertionError("a bundle of a fused experiment ran its members one by one")
"""


def _m(size: int, rate: float | None, peak: int | None = None) -> Measured:
    return Measured(size, rate, peak)


def test_the_rule_stops_where_doubling_stops_paying_and_within_the_budget():
    flat = [_m(1, 100), _m(2, 190), _m(4, 200), _m(8, 205)]
    assert choose(flat, floor=1, budget=None) == 2  # 4 adds 5%: past the knee
    assert choose(flat, floor=4, budget=None) == 4  # up to the floor, gains do not matter
    assert choose([*flat[:3], _m(8, 400)], floor=1, budget=None) == 2  # a knee is final
    growing = [_m(1, 100, 10 * MIB), _m(2, 200, 20 * MIB), _m(4, 400, 40 * MIB)]
    assert choose(growing, floor=1, budget=None) == 4
    assert choose(growing, floor=1, budget=30 * MIB) == 2  # 4 members: over the budget
    assert choose(growing, floor=4, budget=15 * MIB) == 1  # the floor does not lift the budget
    assert choose([_m(1, 100), _m(2, None)], floor=4, budget=None) == 1  # 2: out of memory
    assert choose([_m(1, 100, 99 * MIB)], floor=1, budget=MIB) == 1  # never fewer than one


def test_sizes_and_the_floor():
    assert sizes(1) == [1] and sizes(3) == [1, 2, 3] and sizes(8) == [1, 2, 4, 8]
    assert sizes(12) == [1, 2, 4, 8, 12]
    # the largest power of two up to trials / (4 x slots), between 1 and 32
    assert [floor_size(t, 2) for t in (6, 8, 48, 100, 10_000)] == [1, 1, 4, 8, 32]


# The probe in a fresh process: on a CPU it counts how far resident memory grows, and a
# long-lived process (a test worker that ran other files) may hand the call memory it freed
# earlier and still holds, or free some of its own meanwhile.
PROBED = """
    import json, sys, textwrap
    from orchestrator.worker.probe import probe

    namespace = {}
    exec(textwrap.dedent(sys.argv[1]), namespace)
    configs = [{"x": 1, "seed": s, "steps": 5, "mib": 16} for s in range(4)]
    for budget in (None, 40 * 2**20):
        chosen = probe(namespace["together"], configs, "cpu", floor=1, budget=budget)
        print(json.dumps([chosen.size, [[m.size, m.rate, m.peak] for m in chosen.measured]]))
"""


def test_the_probe_refuses_the_sizes_over_its_memory_budget():
    """The probe itself on the CPU: 16 MiB per member, 4 members at most."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBED), FUSED],
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (size, free), (capped_size, capped) = (json.loads(line) for line in out.stdout.splitlines())
    free, capped = [Measured(*m) for m in free], [Measured(*m) for m in capped]
    assert size == 4 and [m.size for m in free] == [1, 2, 4]
    assert [m.rate for m in free] == sorted(m.rate for m in free)
    assert all(m.peak > 0.9 * m.size * 16 * MIB for m in free), free

    assert capped_size == 2 and [m.size for m in capped] == [1, 2, 4]
    assert [m.fits(40 * MIB) for m in capped] == [True, True, False]


def test_without_a_fused_implementation_auto_sizes_bundles_to_amortise_tunes_cost(
    tmp_path, ray_instance
):
    """48 trials in groups of 12 seeds, 2 bundles at once on 2 CPUs: 48 / (4 x 2) = 6, so
    bundles of 4; nothing is measured."""
    spec = {"name": "s", "experiment": "trivial", "grid": {"x": [1.0, 2.0, 3.0, 4.0]},
            "seeds": 12, "bundle": {"size": "auto"}, "storage": str(tmp_path)}  # fmt: skip
    plan = run_sweep(spec, dry_run=True)
    assert plan.bundle_size is None and [len(b) for b in plan.bundles] == [12] * 4
    record = choose_for(plan, resolve("trivial"), {})
    assert (record["size"], record["rule"], record["slots"]) == (4, "sequential", 2)
    assert "measured" not in record


def _results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.read_parquet(folder / "trials", columns=["trial_id", "x", "seed", "final"])
    steps = pd.read_parquet(folder / "metrics", columns=["trial_id", "step", "value"])
    return (
        trials.sort_values("trial_id", ignore_index=True),
        steps.sort_values(["trial_id", "step"], ignore_index=True),
    )


def test_auto_records_its_choice_reuses_it_until_reprobe_or_new_resources_and_matches_fixed(
    tmp_path, ray_instance
):
    log = tmp_path / "calls.txt"
    params = {"steps": 5, "mib": 0, "log": str(log)}
    spec = write_sweep(
        tmp_path, "fusing", FUSED, name="a", experiment="fusing:one", grid={"x": [1, 2]},
        seeds=3, params=params, bundle={"size": "auto"}, storage=str(tmp_path / "auto"),
    )  # fmt: skip
    first = cli("run", str(spec), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # 6 trials on 2 CPUs: a floor of 1; a step costs the same at any size: the whole group
    assert "bundle size: auto -> 3 (fused probe on cpu" in first.stderr.splitlines()[0]
    record = json.loads((tmp_path / "auto" / "a" / "sweep.json").read_text())["auto_bundle"]
    assert record["size"] == 3 and record["rule"] == "fused" and record["floor"] == 1
    assert [m["size"] for m in record["measured"]] == [1, 2, 3]
    calls = log.read_text().split("\n")[:-1]
    assert calls[:3] == ["probe-0 1", "probe-0 2", "probe-0 3"]
    assert sorted(int(c.split()[1]) for c in calls[3:]) == [3, 3]  # the bundles: 3 members

    fixed = cli("run", str(spec), "--set", "bundle.size=2", "--set", f"storage={tmp_path}/fixed",
                cwd=tmp_path)  # fmt: skip
    assert fixed.returncode == 0 and "bundle size" not in fixed.stderr
    auto_trials, auto_steps = _results(tmp_path / "auto" / "a")
    fixed_trials, fixed_steps = _results(tmp_path / "fixed" / "a")
    assert len(auto_trials) == 6 and auto_trials["final"].notna().all()
    pd.testing.assert_frame_equal(auto_trials, fixed_trials)  # ids and values, one by one
    pd.testing.assert_frame_equal(auto_steps, fixed_steps)

    again = cli("run", str(spec), "--set", "seeds=4", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "bundle size: auto -> 3 (as chosen at" in again.stderr.splitlines()[0]
    assert log.read_text().count("probe-") == 3  # no second probe

    asked = cli("run", str(spec), "--set", "seeds=6", "--reprobe", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert "bundle size: auto -> 2 (fused probe on cpu" in asked.stderr.splitlines()[0]
    assert log.read_text().count("probe-") == 5  # 2 seeds of each config to run: 1 and 2
    moved = cli("run", str(spec), "--set", "seeds=7", "--set", "resources.cpu=2", cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "(fused probe on cpu" in moved.stderr.splitlines()[0]  # a trial's resources changed
    assert log.read_text().count("probe-") == 6  # 1 seed of each config to run: 1
    record = json.loads((tmp_path / "auto" / "a" / "sweep.json").read_text())["auto_bundle"]
    assert record["resources"]["cpu"] == 2


def test_a_probe_that_raises_leaves_the_floor_and_the_trials_record_the_error(
    tmp_path, ray_instance
):
    params = {"steps": 5, "mib": 0, "broken": True}
    spec = write_sweep(
        tmp_path, "fusing", FUSED, name="a", experiment="fusing:one", grid={"x": [1, 2]},
        seeds=3, params=params, bundle={"size": "auto"}, storage=str(tmp_path),
    )  # fmt: skip
    out = cli("run", str(spec), cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith("bundle size: auto -> 1 (the fused probe failed, ValueError: the "
                            "fused code is broken; 6 trials, 2 bundles at once")  # fmt: skip
    trials = pd.read_parquet(tmp_path / "a" / "trials")
    assert len(trials) == 6 and (trials["status"] == "failed").all()
    assert trials["error"].str.contains("ValueError: the fused code is broken").all()
