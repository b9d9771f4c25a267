"""Configs over their seeds (analysis/configs.py): `over_seeds`, what a searcher is told of
a config, and `rank_configs`, a search sweep's configs ranked by it, in `sweep status` and
the report. Every expected number is worked out by hand in the comments."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis import write_report
from analysis.configs import over_seeds, rank_configs, ranked_lines
from orchestrator.store.folder import SweepStore
from orchestrator.summary import status_text

# t(0.975, df=2) = 4.302653; the interval of [1, 2, 3]: mean 2, sd 1, half-width
# 4.302653 * 1 / sqrt(3) = 2.484138
HALF_123 = 2.484138


@pytest.mark.parametrize(
    ("how", "mode", "expected"),
    [
        ("mean", "min", 3.0),  # (1 + 2 + 6) / 3
        ("mean", "max", 3.0),
        ("median", "min", 2.0),
        ("median", "max", 2.0),
        ("worst", "min", 6.0),  # lower is better: the worst is the largest
        ("worst", "max", 1.0),  # higher is better: the worst is the smallest
    ],
)
def test_over_seeds_of_known_values(how: str, mode: str, expected: float):
    assert over_seeds([1.0, 2.0, 6.0], how, mode) == expected


def test_over_seeds_median_of_an_even_count_and_mean_without_mode():
    assert over_seeds([1.0, 2.0, 3.0, 10.0], "median") == 2.5  # (2 + 3) / 2
    assert over_seeds([0.5, 1.5]) == 1.0


@pytest.mark.parametrize("how", ["mean", "median", "worst"])
def test_a_seed_without_a_value_leaves_the_config_without_one(how: str):
    assert math.isnan(over_seeds([1.0, math.nan, 3.0], how, "min"))
    assert math.isnan(over_seeds([], how, "max"))


def test_over_seeds_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="needs mode"):
        over_seeds([1.0, 2.0], "worst")
    with pytest.raises(ValueError, match="one of mean, median, worst"):
        over_seeds([1.0, 2.0], "best", "min")


def row(tid: str, config: str, lr: float, seed: int, status: str = "ok", attempt: int = 1, **m):
    return {
        "trial_id": tid,
        "config_id": config,
        "status": status,
        "attempt": attempt,
        "lr": lr,
        "steps": 3,
        "seed": seed,
        **m,
    }


def search_trials() -> pd.DataFrame:
    """Four configs of three seeds each, minimising loss:
    A (lr 0.1): 1, 2, 3; seed 0 failed first and succeeded when retried -> value 2, n 3.
    B (lr 0.2): 0.5, 1.5, then an oom -> no value (though its mean, 1, is the lowest), n 2.
    C (lr 0.3): 3, 4, 8, one of them stopped early (a success) -> value 5, n 3.
    D (lr 0.4): 0.1, 0.2, and a seed that succeeded without reporting loss -> no value, n 2.
    """
    return pd.DataFrame(
        [
            row("a0", "A", 0.1, 0, "failed", 1),
            row("a0", "A", 0.1, 0, "ok", 2, loss=1.0),
            row("a1", "A", 0.1, 1, loss=2.0),
            row("a2", "A", 0.1, 2, loss=3.0),
            row("b0", "B", 0.2, 0, loss=0.5),
            row("b1", "B", 0.2, 1, loss=1.5),
            row("b2", "B", 0.2, 2, "oom", loss=0.1),  # a value from a failed attempt: not used
            row("c0", "C", 0.3, 0, loss=3.0),
            row("c1", "C", 0.3, 1, "stopped", loss=4.0),
            row("c2", "C", 0.3, 2, loss=8.0),
            row("d0", "D", 0.4, 0, loss=0.1),
            row("d1", "D", 0.4, 1, loss=0.2),
            row("d2", "D", 0.4, 2, other=1.0),
        ]
    )


def test_configs_ranked_by_what_the_searcher_saw():
    ranked = rank_configs(search_trials(), "loss", "min", "mean", ["lr", "steps", "seed"])
    assert list(ranked.columns) == [
        "config_id", "lr", "steps", "value", "n", "mean", "low", "high", "rank",
    ]  # fmt: skip
    assert list(ranked["config_id"]) == ["A", "C", "B", "D"]  # no value: last
    assert list(ranked["rank"].astype(object).where(ranked["rank"].notna(), None)) == [
        1, 2, None, None,
    ]  # fmt: skip
    a, c, b, d = (ranked.iloc[i] for i in range(4))
    assert (a["lr"], a["value"], a["n"], a["mean"]) == (0.1, 2.0, 3, 2.0)
    assert a["low"] == pytest.approx(2 - HALF_123, abs=1e-6)
    assert a["high"] == pytest.approx(2 + HALF_123, abs=1e-6)
    # C: mean 5, sd sqrt(((3-5)^2 + (4-5)^2 + (8-5)^2) / 2) = sqrt(7) = 2.645751,
    # half-width 4.302653 * 2.645751 / sqrt(3) = 4.302653 * 1.527525 = 6.572411
    assert (c["value"], c["n"]) == (5.0, 3)
    assert c["high"] - c["mean"] == pytest.approx(6.572411, abs=1e-6)
    assert math.isnan(b["value"]) and b["n"] == 2 and b["mean"] == 1.0
    # B's two values 0.5, 1.5: sd 0.707107, t(0.975, 1) = 12.706205, half 12.706205 * 0.5
    assert b["high"] - b["mean"] == pytest.approx(6.353102, abs=1e-6)
    assert math.isnan(d["value"]) and d["n"] == 2 and d["mean"] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("how", "mode", "order", "values"),
    [
        ("mean", "max", ["C", "A"], [5.0, 2.0]),
        ("median", "min", ["A", "C"], [2.0, 4.0]),
        ("worst", "min", ["A", "C"], [3.0, 8.0]),  # the largest loss of each
        ("worst", "max", ["C", "A"], [3.0, 1.0]),  # the smallest of each
    ],
)
def test_aggregate_and_mode_decide_the_order(how, mode, order, values):
    ranked = rank_configs(search_trials(), "loss", mode, how)
    assert list(ranked["config_id"][:2]) == order and list(ranked["value"][:2]) == values
    assert list(ranked["config_id"][2:]) == ["B", "D"] and ranked["value"][2:].isna().all()
    assert list(ranked.columns) == ["config_id", "value", "n", "mean", "low", "high", "rank"]


def test_a_config_short_of_seeds_has_no_value_when_the_seeds_are_known():
    trials = search_trials()
    trials = trials[trials["trial_id"] != "c2"]  # C has run two of its three seeds
    assert rank_configs(trials, "loss", "min", seeds=2)["config_id"][1] == "C"
    ranked = rank_configs(trials, "loss", "min", seeds=3).set_index("config_id")
    assert math.isnan(ranked.loc["C", "value"]) and ranked.loc["C", "n"] == 2


def test_ties_share_a_rank_and_nothing_ranks_nothing():
    trials = pd.DataFrame([row("x", "X", 0.1, 0, loss=1.0), row("y", "Y", 0.2, 0, loss=1.0)])
    trials.loc[len(trials)] = row("z", "Z", 0.3, 0, loss=0.5)
    assert list(rank_configs(trials, "loss", "max")["rank"]) == [1, 1, 3]
    empty = rank_configs(trials.iloc[:0], "loss", "min", config_columns=["lr"])
    assert empty.empty and "rank" in empty and "lr" in empty
    with pytest.raises(ValueError, match="min or max"):
        rank_configs(trials, "loss", "lower")


def test_ranked_lines_show_the_interval_and_dashes():
    ranked = rank_configs(search_trials(), "loss", "min", config_columns=["lr"])
    lines = ranked_lines(ranked, ["lr"], top=3)
    assert lines.to_dict("list") == {
        "rank": ["1", "2", "-"],
        "lr": ["0.1", "0.3", "0.2"],
        "value": ["2", "5", "-"],
        "n": [3, 3, 2],
        "95% interval": ["[-0.4841, 4.484]", "[-1.572, 11.57]", "[-5.353, 7.353]"],
    }


def write_search_sweep(root: Path, name: str, search: dict) -> Path:
    """A sweep folder written by the real store, as the runner leaves it, holding the
    trials of `search_trials`; `search` is its spec's search section."""
    store = SweepStore(str(root), name)
    store.write_meta(
        {
            "name": name,
            "experiment": "exp",
            "config_columns": ["lr", "steps", "seed"],
            "spec": {
                "params": {"lr": {"loguniform": [0.01, 1.0]}, "steps": 3},
                "grid": {},
                "seeds": 3,
                "search": search,
                "report": {"directions": {"loss": "lower"}},
            },
        }
    )
    base = {"sweep": name, "experiment": "exp", "error": None}
    for trial in search_trials().to_dict("records"):  # one file per row, as flushes would
        store.append("trials", [{**base, **{k: v for k, v in trial.items() if v == v}}])
    return root / name


SEARCH = {
    "algorithm": "random",
    "num_samples": 4,
    "metric": "loss",
    "mode": "min",
    "aggregate": "mean",
}


def test_status_of_a_search_sweep_ranks_its_configs(tmp_path: Path):
    write_search_sweep(tmp_path, "s", SEARCH)
    text = status_text(SweepStore(str(tmp_path), "s"))
    head = "configs ranked by mean loss over seeds (what the searcher saw; 4 configs, 2 with a"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(head))
    table = [line.split() for line in lines[at + 1 : at + 6]]
    assert table[0] == ["rank", "lr", "value", "n", "95%", "interval"]  # steps: the same in all
    assert table[1] == ["1", "0.1", "2", "3", "[-0.4841,", "4.484]"]
    assert table[2][:4] == ["2", "0.3", "5", "3"]
    assert [t[:4] for t in table[3:]] == [["-", "0.2", "-", "2"], ["-", "0.4", "-", "2"]]
    assert lines[at + 6] == "trials:"


def test_status_of_a_grid_or_a_search_without_a_metric_ranks_nothing(tmp_path: Path):
    write_search_sweep(tmp_path, "grid", {"algorithm": "grid"})
    write_search_sweep(tmp_path, "aimless", {"algorithm": "random", "num_samples": 4})
    for name in ("grid", "aimless"):
        assert "configs ranked" not in status_text(SweepStore(str(tmp_path), name))


def test_the_report_of_a_search_sweep_ranks_its_configs(tmp_path: Path):
    folder = write_search_sweep(tmp_path, "s", {**SEARCH, "mode": "max"})
    md = (write_report(folder) / "report.md").read_text()
    section = md.split("## Search: configs ranked over seeds\n", 1)[1].split("\n## ", 1)[0]
    assert "the mean over the seeds of **loss** (max is better)" in section
    assert "best-of-2 pick" in section and "same data that chose it" in section
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0] == "| rank | lr | value | n | 95% interval |"
    assert table[2].startswith("| 1 | 0.3 | 5 | 3 | [-1.572, 11.57] |")  # max: C first
    assert table[3].startswith("| 2 | 0.1 | 2 | 3 |")
    assert len(table) == 2 + 4


def test_the_report_of_a_grid_sweep_has_no_search_section(tmp_path: Path):
    folder = write_search_sweep(tmp_path, "g", {"algorithm": "grid"})
    md = (write_report(folder) / "report.md").read_text()
    assert "## Results per group" in md and "Search: configs ranked" not in md
