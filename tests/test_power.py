"""`sweep power` and analysis/power.py: t-test power against published values and a
simulation, seeds needed and the detectable effect, the pooled spread, pair metrics'
per-model values, and the command end to end on sweep folders written without Ray."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import cli, make_sweep, trial

from analysis.power import detectable_effect, per_model, pooled_sd, power, seeds_needed


@pytest.mark.parametrize(
    "d, n, expected",
    # Cohen (1988), Statistical Power Analysis for the Behavioral Sciences, Table 2.4.1
    # (two-sided alpha 0.05, power 0.80): n per group 17 for d = 1.0, 26 for d = 0.8,
    # 64 for d = 0.5, 393 for d = 0.2 (G*Power's exact t gives 394, as here: 393 reaches
    # 0.7997). G*Power: d = 1, n = 17 per group has power 0.807.
    [(1.0, 17, 0.807), (0.8, 26, 0.807), (0.5, 64, 0.801)],
)
def test_power_matches_the_published_tables(d, n, expected):
    assert power(d, n) == pytest.approx(expected, abs=0.001)
    assert power(d, n - 1) < 0.8 <= power(d, n)
    assert seeds_needed(d) == n


def test_seeds_needed_for_a_small_effect_and_no_effect():
    assert seeds_needed(0.2) == 394
    assert power(0.0, 10, alpha=0.05) == pytest.approx(0.05)  # no difference: alpha


@pytest.mark.parametrize("d, n, alpha", [(1.0, 10, 0.05), (0.8, 17, 0.05), (1.5, 5, 0.01)])
def test_power_matches_a_simulation(d, n, alpha):
    """Simulated two-sample t-tests (pooled variance, two-sided) reject as often as the
    noncentral t says, within 10%."""
    from scipy import stats

    rng = np.random.default_rng(0)
    reps = 4000
    a = rng.normal(0.0, 1.0, (reps, n))
    b = rng.normal(d, 1.0, (reps, n))
    pooled = np.sqrt((a.var(axis=1, ddof=1) + b.var(axis=1, ddof=1)) / 2)
    t = (b.mean(axis=1) - a.mean(axis=1)) / (pooled * np.sqrt(2 / n))
    rejected = np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, 2 * n - 2))
    assert power(d, n, alpha) == pytest.approx(rejected, rel=0.10)


def test_seeds_needed_falls_as_the_effect_grows():
    effects = [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
    needed = [seeds_needed(d) for d in effects]
    assert needed == sorted(needed, reverse=True)
    assert needed[0] > needed[-1] == 2
    stricter = [seeds_needed(d, 0.9, 0.01) for d in effects]
    assert all(s >= n for s, n in zip(stricter, needed, strict=True))


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40])
@pytest.mark.parametrize("target, alpha", [(0.8, 0.05), (0.9, 0.01)])
def test_the_detectable_effect_inverts_power(n, target, alpha):
    d = detectable_effect(n, target, alpha)
    assert power(d, n, alpha) == pytest.approx(target, abs=1e-8)
    assert seeds_needed(d * (1 + 1e-6), target, alpha) == n
    assert seeds_needed(d * 0.99, target, alpha) > n


def test_power_refuses_what_it_cannot_say():
    with pytest.raises(ValueError, match="at least 2"):
        power(1.0, 1)
    with pytest.raises(ValueError, match="above alpha"):
        seeds_needed(1.0, target=0.04)
    with pytest.raises(ValueError, match="other than 0"):
        seeds_needed(0.0)


def test_the_pooled_sd_weights_cells_by_their_degrees_of_freedom():
    frame = pd.DataFrame(
        {
            "act": ["a"] * 3 + ["b"] * 2 + ["c"],
            "lr": [1, 1, 1, 1, 1, 1],
            "loss": [1.0, 2.0, 3.0, 10.0, 14.0, 99.0],  # variances 1 (df 2), 8 (df 1); c: n = 1
        }
    )
    frame.loc[len(frame)] = ["b", 1, math.nan]  # NaN is no seed
    spread = pooled_sd(frame, "loss", ["act", "lr"])
    assert spread["df"] == 3
    assert spread["sd"] == pytest.approx(math.sqrt((2 * 1 + 1 * 8) / 3))
    assert spread["seeds"].tolist() == [3, 2, 1]


def test_per_model_values_give_the_jackknife_variance_of_a_cells_mean_pair_metric():
    """s^2 / k of the scaled per-model values is the delete-one-model jackknife variance
    of the cell's mean over its pairs, computed here by leaving each model out."""
    rng = np.random.default_rng(1)
    k = 6
    quality = rng.normal(size=k)
    rows = [
        {"act": "a", "seed_a": i, "seed_b": j, "pd": quality[i] + quality[j] + rng.normal()}
        for i, j in itertools.combinations(range(k), 2)
    ]
    pairs = pd.DataFrame(rows)
    models = per_model(pairs, "pd", ["act"])
    assert models["pd"].mean() == pytest.approx(pairs["pd"].mean())  # the cell's mean kept
    left_out = np.array(
        [pairs.loc[(pairs.seed_a != i) & (pairs.seed_b != i), "pd"].mean() for i in range(k)]
    )
    jackknife = (k - 1) / k * np.sum((left_out - left_out.mean()) ** 2)
    assert models["pd"].var(ddof=1) / k == pytest.approx(jackknife)


def write_pilot(root, name="pilot", seeds=4, spread=0.1, **changes):
    """A sweep of act a/b/c x lr 1/2 with `seeds` seeds each: loss = level + noise."""
    rng = np.random.default_rng(2)
    rows = []
    for act, lr in itertools.product("abc", [1, 2]):
        for seed in range(seeds):
            loss = {"a": 1.0, "b": 1.2, "c": 1.5}[act] + lr + spread * rng.normal()
            rows.append(trial(f"{act}{lr}-{seed}", act, seed, lr=lr, loss=loss, **changes))
    pairs = [
        {"steps": 3, "act": r["act"], "lr": r["lr"], "seed_a": r["seed"], "seed_b": s["seed"],
         "trial_a": r["trial_id"], "trial_b": s["trial_id"], "pd": 0.1 + rng.random() / 10,
         "n_positions": 100}
        for r, s in itertools.combinations(rows, 2)
        if (r["act"], r["lr"]) == (s["act"], s["lr"])
    ]  # fmt: skip
    grid = {"act": ["a", "b", "c"], "lr": [1, 2]}
    return make_sweep(root, name, rows, [], seeds=seeds, grid=grid, pairs=pairs)


def test_sweep_power_json(tmp_path):
    folder = write_pilot(tmp_path / "results")
    out = cli("power", str(folder), "--metric", "loss", "--by", "act", "--effect", "0.2",
              "--json", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # the whole of stdout is one object
    assert result["metric"] == "loss" and result["by"] == "act"
    assert result["levels"] == ["a", "b", "c"]
    assert result["n_per_level"] == {"a": 4, "b": 4, "c": 4} and result["n"] == 4
    assert result["df"] == 6 * 3 and result["cells"] == 6
    assert 0.03 < result["pooled_sd"] < 0.3
    low, high = result["pooled_sd_ci95"]
    assert low < result["pooled_sd"] < high
    assert (result["alpha"], result["power"], result["comparisons"]) == (0.05, 0.8, 3)
    d = 0.2 / result["pooled_sd"]
    assert result["effect_sd"] == pytest.approx(d)
    assert result["seeds_per_level"] == seeds_needed(d)
    assert result["detectable_effect"] == pytest.approx(detectable_effect(4) * result["pooled_sd"])
    assert result["power_now"] == pytest.approx(power(d, 4))

    plain = cli("power", str(folder), "--metric", "loss", "--by", "act", "--json", cwd=tmp_path)
    assert json.loads(plain.stdout)["seeds_per_level"] is None

    adjusted = cli("power", str(folder), "--metric", "loss", "--by", "act", "--effect", "0.2",
                   "--adjust", "--json", cwd=tmp_path)  # fmt: skip
    adjusted = json.loads(adjusted.stdout)
    assert adjusted["alpha_per_test"] == pytest.approx(0.05 / 3)
    assert adjusted["seeds_per_level"] > result["seeds_per_level"]
    assert adjusted["detectable_effect"] > result["detectable_effect"]


def test_sweep_power_for_people(tmp_path):
    folder = write_pilot(tmp_path / "results")
    out = cli("power", str(folder), "--metric", "loss", "--by", "lr", "--effect", "0.1",
              "--power", "0.9", "--alpha", "0.01", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "pooled within-cell SD" in out.stdout
    assert "seeds per level" in out.stdout
    assert "the smallest difference detected with power 0.9" in out.stdout
    assert "alpha 0.01" in out.stdout


def test_sweep_power_on_a_pair_metric(tmp_path):
    folder = write_pilot(tmp_path / "results")
    out = cli("power", str(folder), "--metric", "pd", "--by", "act", "--effect", "0.02",
              "--json", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["pair_metric"] is True
    assert result["n"] == 4 and result["df"] == 6 * 3
    pairs = pd.read_parquet(folder / "pairs")
    models = per_model(pairs, "pd", ["act", "lr"])  # the command's path: scaled per-model values
    assert result["pooled_sd"] == pytest.approx(pooled_sd(models, "pd", ["act", "lr"])["sd"])
    assert result["seeds_per_level"] >= 3
    assert any("jackknife" in note for note in result["notes"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "los", "--by", "act"], 'no final or pair metric .*did you mean "loss"'),
        (["--metric", "loss", "--by", "ac"], "no config key 'ac' .*did you mean \"act\""),
        (["--metric", "loss", "--by", "steps"], "steps does not vary"),
        (["--metric", "loss", "--by", "seed"], "is the seed"),
        (["--metric", "loss", "--by", "act", "--effect", "0"], "other than 0"),
        (["--metric", "loss", "--by", "act", "--power", "0.01"], "above alpha"),
    ],
)
def test_sweep_power_bad_input_exits_2(tmp_path, args, message):
    folder = write_pilot(tmp_path / "results")
    out = cli("power", str(folder), *args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert re.search(message, out.stderr), out.stderr
    assert out.stderr.startswith("error: --")


def test_sweep_power_with_one_seed_per_cell_exits_2(tmp_path):
    folder = write_pilot(tmp_path / "results", seeds=1)
    out = cli("power", str(folder), "--metric", "loss", "--by", "act", "--json", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert "2 or more seeds" in out.stderr and "--set seeds=3" in out.stderr
    pairs = cli("power", str(write_pilot(tmp_path / "r2", seeds=2)), "--metric", "pd",
                "--by", "act", cwd=tmp_path)  # fmt: skip
    assert pairs.returncode == 2 and "3 or more seeds" in pairs.stderr


def test_sweep_power_help_and_a_folder_that_is_no_sweep(tmp_path):
    out = cli("power", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "Usage: sweep power" in out.stdout
    missing = cli("power", str(tmp_path / "nope"), "--metric", "loss", "--by", "act",
                  "--json", cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and missing.stdout == ""
    assert "does not exist" in missing.stderr
    bad = cli("power", "x", "--metric", "loss", "--by", "act", "--power", "1.5", cwd=tmp_path)
    assert bad.returncode == 2
