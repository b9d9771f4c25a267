"""`sweep confirm`: the best configs of a sweep run again on fresh seeds as a linked sweep,
and the report of the first sweep showing both estimates. The ranking, the linked spec,
the seeds and the defaults from sweep folders written without Ray; one real run on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli, make_sweep, trial, write_sweep
from scipy import stats

from analysis.document import fmt
from analysis.settings import ReportSettings
from orchestrator.confirm import confirmation, fresh_seeds, goal, used_seeds
from orchestrator.errors import InputError
from orchestrator.spec import load_spec

# (act, width) -> score per seed 0, 1: means a1 1.05, a2 1.55, b1 0.55, b2 3.05
SCORES = {("a", 1): (1.0, 1.1), ("a", 2): (1.5, 1.6), ("b", 1): (0.5, 0.6), ("b", 2): (3.0, 3.1)}


def grid_sweep(root: Path, name: str = "base", **spec: object) -> Path:
    """A grid sweep of act x width x seeds 0, 1, written without Ray; one more trial with
    seed 7 failed with a score that would win (failed trials do not count)."""
    rows = [
        {**trial(f"{act}{width}-{seed}", act, seed, score=v), "width": width}
        for (act, width), values in SCORES.items()
        for seed, v in enumerate(values)
    ]
    rows.append({**trial("a2-7", "a", 7, status="failed", score=-100.0), "width": 2})
    for row in rows:
        row["config_id"] = f"{row['act']}{row['width']}"
    folder = make_sweep(root, name, rows, [], grid={"act": ["a", "b"], "width": [1, 2]})
    meta = json.loads((folder / "sweep.json").read_text())
    meta["spec"].update(spec)
    (folder / "sweep.json").write_text(json.dumps(meta))
    return folder


def test_configs_are_ranked_by_their_mean_over_the_successful_seeds(tmp_path: Path):
    linked = confirmation(str(grid_sweep(tmp_path / "results")), 3, 2, "score", "min")
    ranked = linked.ranked
    assert list(ranked["config_id"]) == ["b1", "a1", "a2", "b2"]
    assert list(ranked["mean"]) == pytest.approx([0.55, 1.05, 1.55, 3.05])  # a2-7 left out
    assert list(ranked["n"]) == [2, 2, 2, 2] and list(ranked["rank"]) == [1, 2, 3, 4]
    assert linked.keys == ["steps", "act", "width"]  # config_columns without the seed
    high = confirmation(str(tmp_path / "results" / "base"), 1, 2, "score", "max")
    assert list(high.ranked["config_id"]) == ["b2", "a2", "a1", "b1"]


def test_the_linked_spec_shares_what_the_configs_share_and_grids_the_rest(tmp_path: Path):
    folder = grid_sweep(
        tmp_path / "results",
        resources={"cpu": 0.5, "gpu": 0.0},
        retries=2,
        limits={"trial_time": 60.0, "report_gap": None, "start_time": 300.0},
        bundle={"size": 4, "by": ["seed"]},
        report={"directions": {"score": "lower"}},
    )
    linked = confirmation(str(folder), 3, 2, "score", "min")
    spec = linked.spec
    assert spec["name"] == "base-confirm" and spec["experiment"] == "exp"
    assert spec["params"] == {"steps": 3}
    assert spec["grid"] == {
        "confirmed": [{"act": "b", "width": 1}, {"act": "a", "width": 1}, {"act": "a", "width": 2}]
    }
    assert spec["seeds"] == [8, 9]  # after the failed trial's seed 7, too
    assert spec["storage"] == str((tmp_path / "results").resolve())
    assert spec["resources"] == {"cpu": 0.5, "gpu": 0.0} and spec["retries"] == 2
    assert spec["limits"]["trial_time"] == 60.0 and spec["bundle"] == {"size": 4, "by": ["seed"]}
    assert spec["confirms"] == {"sweep": "base", "metric": "score", "mode": "min", "top": 3}
    checked = load_spec(spec)  # a valid spec, `confirms` and all, for sweep.json
    assert checked.confirms is not None and checked.confirms.top == 3
    assert checked.config_keys == ["steps", "act", "width", "seed"]
    # the two best by max share width: it goes to params, act stays in the grid
    two = confirmation(str(folder), 2, 3, "score", "max").spec
    assert two["params"] == {"steps": 3, "width": 2}
    assert two["grid"] == {"confirmed": [{"act": "b"}, {"act": "a"}]}
    one = confirmation(str(folder), 1, 3, "score", "min").spec
    assert one["params"] == {"steps": 3, "act": "b", "width": 1} and "grid" not in one


def test_fresh_seeds_exclude_every_seed_used():
    assert used_seeds({"seeds": 3}, [0, 1, 2]) == {0, 1, 2}
    assert used_seeds({"seeds": [4, 11]}, [4, 11, 30]) == {4, 11, 30}  # a seed run earlier
    assert used_seeds({"seeds": {"min": 3, "max": 20}}, [0, 1, 2]) == set(range(20))
    for used in ({0, 1, 2}, {4, 11, 30}, set(range(20)), set()):
        fresh = fresh_seeds(used, 5)
        assert len(fresh) == len(set(fresh)) == 5 and not set(fresh) & used
        assert fresh_seeds(used, 8)[:5] == fresh  # more seeds extend the same list
    assert fresh_seeds(set(), 2) == [0, 1]


def test_metric_and_mode_default_to_the_specs_search_then_report_settings():
    search = {"search": {"algorithm": "random", "metric": "acc", "mode": "max"}}
    assert goal(search, ReportSettings()) == ("acc", "max")
    assert goal(search, ReportSettings(), "loss", "min") == ("loss", "min")  # given wins
    settings = ReportSettings(metrics=["loss", "acc"], directions={"loss": "lower"})
    assert goal({}, settings) == ("loss", "min")
    assert goal({}, ReportSettings(directions={"acc": "higher"})) == ("acc", "max")
    assert goal({}, settings, "acc", "max") == ("acc", "max")
    with pytest.raises(InputError, match="no metric to rank its configs by.*--metric METRIC"):
        goal({}, ReportSettings(directions={"a": "lower", "b": "higher"}), where="results/x")
    with pytest.raises(InputError, match="is acc better low or high.*--mode min"):
        goal({}, settings, "acc")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "results/base: no metric to rank its configs by"),
        (["--metric", "score"], "is score better low or high"),
        (["--metric", "scor", "--mode", "min"], "no final metric 'scor' (did you mean"),
        (["--metric", "score", "--mode", "min", "--top", "5"], "--top 5: results/base has 4"),
        (["--metric", "score", "--mode", "up"], "'up' is not one of 'min', 'max'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args, message):
    grid_sweep(tmp_path / "results")
    before = sorted(tmp_path.rglob("*"))
    top = [] if "--top" in args else ["--top", "2"]
    done = cli("confirm", "results/base", *top, "--seeds", "2", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_the_report_shows_the_confirmation_beside_the_original(tmp_path: Path):
    """Without Ray: a confirming sweep written beside the first; the section's numbers."""
    root = tmp_path / "results"
    base = grid_sweep(root, report={"directions": {"score": "lower"}})
    fresh = {("b", 1): [0.9, 1.0, 1.4], ("a", 1): [1.0, 1.05, 1.1]}
    rows = [
        {**trial(f"f{act}{w}-{s}", act, s, score=v), "width": w}  # no config_id: by values
        for (act, w), values in fresh.items()
        for s, v in zip((8, 9, 10), values, strict=True)
    ]
    folder = make_sweep(root, "base-confirm", rows, [], grid={"act": [], "width": []})
    meta = json.loads((folder / "sweep.json").read_text())
    meta["spec"]["confirms"] = {"sweep": "base", "metric": "score", "mode": "min", "top": 2}
    (folder / "sweep.json").write_text(json.dumps(meta))
    make_sweep(root, "unrelated", rows, [], grid={"act": [], "width": []})

    from analysis.confirm import TITLE
    from analysis.report import write_report

    md = (write_report(base) / "report.md").read_text()
    assert md.count(f"## {TITLE}") == 1
    section = md.split(f"## {TITLE}")[1].split("\n## ")[0]
    assert "the 2 best of the 4 configs of base by mean **score**" in section
    assert "unbiased by the selection" in section and "(8, 9, 10" in section
    assert "On the fresh seeds the best of them is **act=a width=1**" in section
    lines = [line.strip("| ").split(" | ") for line in section.splitlines()]
    rows = [cells for cells in lines if cells[0].startswith("act=")]
    assert [cells[0] for cells in rows] == ["act=b width=1", "act=a width=1"]  # by rank
    assert "selected: best 2 of 4" in section
    for cells, rank, key in zip(rows, "12", [("b", 1), ("a", 1)], strict=True):
        new, old = fresh[key], SCORES[key]
        difference = fmt(np.mean(new) - np.mean(old))
        assert cells[1:] == [rank, interval(old), "2", interval(new), "3", difference]
    # the confirming sweep's own report has no such section; an unconfirmed sweep neither
    assert TITLE not in (write_report(folder) / "report.md").read_text()


def interval(values) -> str:
    values = np.asarray(values, dtype=float)
    low, high = stats.t.interval(0.95, len(values) - 1, values.mean(), stats.sem(values))
    return f"{fmt(values.mean())} [{fmt(low)}, {fmt(high)}]"


EXPERIMENT = """
    def experiment(config, trial):
        return {"score": config["x"] * 10.0 + trial.seed}
"""


def test_confirm_runs_the_best_configs_on_fresh_seeds_on_ray(ray_instance, tmp_path: Path):
    """3 configs x 2 seeds on a real Ray; the 2 best again on 3 fresh seeds; the report."""
    spec = write_sweep(
        tmp_path,
        "tiny_exp",
        EXPERIMENT,
        name="tiny",
        experiment="tiny_exp:experiment",
        grid={"x": [3, 1, 2]},
        seeds=2,
        storage="results",
        report={"directions": {"score": "lower"}},  # the metric and mode confirm ranks by
    )
    assert cli("run", str(spec), "-q", cwd=tmp_path).returncode == 0
    base = tmp_path / "results" / "tiny"

    dry = cli("confirm", "results/tiny", "--top", "2", "--seeds", "3", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "results" / "tiny-confirm").exists()  # nothing run, nothing written
    shown = yaml.safe_load(dry.stdout)  # the comments aside, the spec it would run
    assert shown["grid"] == {"confirmed": [{"x": 1}, {"x": 2}]} and shown["seeds"] == [2, 3, 4]
    assert "# trials: 6 in all, 0 already done, 6 to run" in dry.stdout

    done = cli("confirm", "results/tiny", "--top", "2", "--seeds", "3", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the 2 best of 3 configs of tiny by mean score" in done.stdout
    assert "6 trials: 0 already done, ran 6 attempts (6 ok" in done.stdout
    linked = tmp_path / "results" / "tiny-confirm"  # in the same storage
    trials = pd.read_parquet(linked / "trials")
    assert (trials["status"] == "ok").all()
    assert sorted(zip(trials["x"], trials["seed"], strict=True)) == [
        (x, s) for x in (1, 2) for s in (2, 3, 4)
    ]
    assert list(trials["score"].sort_values()) == [12, 13, 14, 22, 23, 24]
    original = pd.read_parquet(base / "trials")
    assert set(trials["config_id"]) == set(original.loc[original["x"] < 3, "config_id"])
    meta = json.loads((linked / "sweep.json").read_text())
    assert meta["spec"]["confirms"] == {"sweep": "tiny", "metric": "score", "mode": "min", "top": 2}
    again = cli("confirm", "results/tiny", "--top", "2", "--seeds", "3", "-q", cwd=tmp_path)
    assert "6 trials: 6 already done" in again.stdout  # the same linked sweep: resumed

    report = cli("report", "results/tiny", "-q", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    md = (base / "report" / "report.md").read_text()
    section = md.split("## Confirmation on fresh seeds")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| x=")]
    assert rows == [
        ["| x=1", "1", interval([10, 11]), "2", interval([12, 13, 14]), "3", "2.5 |"],
        ["| x=2", "2", interval([20, 21]), "2", interval([22, 23, 24]), "3", "2.5 |"],
    ]
    assert "selected: best 2 of 3" in section
    assert "On the fresh seeds the best of them is **x=1** (mean 13)." in section
