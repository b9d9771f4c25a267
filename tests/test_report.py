"""`sweep report | compare | plot` on sweeps run for real (a user's own experiment on
a local Ray): `sweep report` through the installed command in a subprocess, the rest
through the same command in this process (`cli`). The experiment plants known answers:
arm c is 3.0 above arms a and b, which differ by 0.05; one trial fails, one reports
NaN, one loss goes up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli, sweep, write_sweep
from scipy import stats

from orchestrator import run_sweep

MODULE = """
    import random

    OFFSET = {"a": 0.0, "b": 0.05, "c": 3.0, "d": 1.0}

    def experiment(config, trial):
        arm = config["arm"]
        noise = random.Random(trial.seed * 100 + ord(arm)).gauss(0.0, 0.3)
        for step in range(4):
            up = arm == "b" and trial.seed == 5  # this one's loss goes up
            trial.report(step=step, loss=(step if up else 4 - step) + OFFSET[arm] + noise)
        if arm == "c" and trial.seed == 4:
            raise ValueError("arm c, seed 4 fails")
        aux = float("nan") if arm == "a" and trial.seed == 2 else 1.0
        return {"score": OFFSET[arm] + noise, "aux": aux}
"""


@pytest.fixture(scope="module")
def results(ray_instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sweeps of the same experiment: known (arms a, b, c x 6 seeds) and other (a, d x 2)."""
    folder = tmp_path_factory.mktemp("report")
    spec = write_sweep(
        folder,
        "known_exp",
        MODULE,
        name="known",
        experiment="known_exp:experiment",
        grid={"arm": ["a", "b", "c"]},
        seeds=6,
        storage=str(folder / "results"),
    )
    run_sweep(spec, progress=None)
    run_sweep(spec, overrides=["name=other", "grid.arm=[a,d]", "seeds=2"], progress=None)
    return folder / "results"


def test_report_states_what_the_data_support(results: Path):
    done = sweep(
        "report", str(results / "known"), "--lower", "score", "--lower", "loss", cwd=results
    )
    assert done.returncode == 0, done.stderr
    out = results / "known" / "report"
    assert "report: known: 17 successful trials" in done.stderr  # progress
    assert done.stdout.strip() == f"report: {out / 'report.html'}"
    md = (out / "report.md").read_text()
    # findings: c differs from a and from b; a and b (0.05 apart, noise 0.3) do not
    assert "**a** has lower score than **c**" in md and "**b** has lower score than **c**" in md
    assert "than **b**" not in md and "**arm** changes **score**" in md
    # checks: the failed trial, the NaN, the rising loss, the group short of a seed
    assert "- Failed trials (no successful attempt): 1." in md
    assert "ValueError: arm c, seed 4 fails" in md
    assert "- NaN or infinite values: 1." in md
    assert "Trials whose final loss is not below its first value: 1" in md
    assert "- Groups with fewer successful seeds than asked: 1." in md
    assert (
        "**equal weights**" in md
        and "- **Ranking, equal weights** (an order of means, not a test): 1. a" in md
    )


def test_summary_numbers_are_those_of_the_trials_table(results: Path):
    summary = pd.read_csv(results / "known" / "report" / "summary.csv")
    row = summary[(summary["group"] == "c") & (summary["metric"] == "score")].iloc[0]
    trials = pd.read_parquet(results / "known" / "trials")
    scores = trials.loc[(trials["arm"] == "c") & (trials["status"] == "ok"), "score"].to_numpy()
    assert row["n"] == len(scores) == 5
    assert row["mean"] == pytest.approx(scores.mean()) and row["std"] == pytest.approx(
        scores.std(ddof=1)
    )
    low, high = stats.t.interval(0.95, len(scores) - 1, scores.mean(), stats.sem(scores))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    tests = pd.read_csv(results / "known" / "report" / "significance.csv")
    ab = tests[(tests["metric"] == "score") & (tests["group_a"] == "a") & (tests["group_b"] == "b")]
    a = trials.loc[(trials["arm"] == "a") & (trials["status"] == "ok"), "score"]
    b = trials.loc[(trials["arm"] == "b") & (trials["status"] == "ok"), "score"]
    raw = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert ab["p_welch"].iloc[0] == pytest.approx(raw)
    assert raw > tests.loc[tests["metric"] == "score", "p_welch"].drop(ab.index).max()
    assert ab["p_welch_holm"].iloc[0] == pytest.approx(raw)  # the largest of 3: Holm's factor 1


def test_html_report_is_one_self_contained_file(results: Path):
    html = (results / "known" / "report" / "report.html").read_text()
    images = html.count('src="data:image/png;base64,')
    assert images >= 4 and html.count("src=") == images  # nothing loaded from elsewhere
    assert "<table>" in html and "<strong>a</strong> has lower score" in html
    pngs = sorted(p.name for p in (results / "known" / "report").glob("*.png"))
    assert {"overview.png", "distribution-score.png", "curve-loss.png"} <= set(pngs)
    assert all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for p in (results / "known" / "report").glob("*.png")
    )


def test_compare_puts_sweeps_side_by_side(results: Path):
    done = cli("compare", "--all", str(results), "--quiet", cwd=results)
    assert done.returncode == 0, done.stderr
    md = (results / "compare-all" / "report.md").read_text()
    assert "# Comparison: known, other" in md and "## Sweeps side by side" in md
    assert "sweep=other arm=d" in md
    summary = pd.read_csv(results / "compare-all" / "summary.csv")
    assert set(summary["group"]) >= {"sweep=known arm=a", "sweep=other arm=a", "sweep=other arm=d"}
    # the same config in two sweeps stays two groups, each with its own seeds
    n = summary[summary["metric"] == "score"].set_index("group")["n"]
    assert (n["sweep=known arm=a"], n["sweep=other arm=a"]) == (6, 2)
    two = cli("compare", str(results / "known"), str(results / "other"), "-q", cwd=results)
    assert two.returncode == 0 and (results / "compare-known+other" / "report.html").is_file()


def test_plot_draws_one_figure(results: Path):
    done = cli("plot", str(results / "known"), "--metric", "loss", cwd=results)
    assert done.returncode == 0, done.stderr
    png = results / "known" / "plots" / "loss-vs-step.png"
    assert done.stdout.strip() == f"plot: {png}" and png.read_bytes()[:4] == b"\x89PNG"
    out = results / "score.png"
    assert (
        cli(
            "plot", str(results / "known"), "--metric", "score", "--out", str(out), cwd=results
        ).returncode
        == 0
        and out.is_file()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "nowhere"], "nowhere: does not exist"),
        (["report", "known", "--weights", "bogus=1"], "cannot rank by 'bogus': no values"),
        (["report", "known", "--weights", "score"], "is not NAME=WEIGHT"),
        (["report", "known", "--lower", "score", "--higher", "score"], "both name ['score']"),
        (["plot", "known", "--metric", "nope"], "no metric 'nope' in known; metrics:"),
        (["plot", "known", "--metric", "score", "--x", "lr"], "--x lr: not a parameter"),
        (["plot", "known", "--metric", "loss", "--by", "step"], "--by step: not a parameter"),
        (["compare", "known"], "only one sweep; use sweep report"),
        (["compare"], "give two or more sweep folders"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_last_report_alone(results: Path, args, message):
    before = sorted((results / "known").rglob("*"))
    stamp = (results / "known" / "report" / "report.html").stat().st_mtime_ns
    done = cli(*args, cwd=results)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert sorted((results / "known").rglob("*")) == before  # nothing new, nothing half-written
    assert (results / "known" / "report" / "report.html").stat().st_mtime_ns == stamp


def test_the_report_library_reads_back_what_the_cli_wrote(results: Path):
    from analysis import load

    sweep_ = load(results / "known")
    assert sweep_.factors == ["arm"] and len(sweep_.ok) == 17
    assert np.isnan(sweep_.ok.set_index("seed").query("arm == 'a'").loc[2, "aux"])
