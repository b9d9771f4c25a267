"""The tri-decoding family on a real local Ray: a tiny training sweep of the three sizes,
then a decoding sweep that reads their checkpoints through `inputs:`. Greedy output
equals the target's own at every threshold pair, with KV caches and without; both of
tri-decoding's levels speculate, two-level decoding's columns are its own; counters
are consistent."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.tridecoding import best_baseline, best_fixed
from experiments.tridecoding import expected_tokens, predicted_speedup
from orchestrator import run_sweep

SIZES = [
    {"size": "little", "n_layer": 1, "n_embd": 16},
    {"size": "draft", "n_layer": 1, "n_embd": 32},
    {"size": "target", "n_layer": 2, "n_embd": 32},
]
TRAIN = {"activation": "relu", "steps": 40, "eval_every": 40, "batch_size": 8,
         "block_size": 48, "n_head": 2, "eval_windows": 2}  # fmt: skip


@pytest.fixture(scope="module")
def storage(ray_instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding the trained sizes (sweep `sizes`)."""
    storage = tmp_path_factory.mktemp("tri")
    train = {"name": "sizes", "experiment": "reproducibility", "grid": {"size": SIZES},
             "seeds": 1, "params": TRAIN, "storage": str(storage)}  # fmt: skip
    assert run_sweep(train, progress=None).count("ok") == 3
    return storage


def decoding_spec(storage: Path, **params) -> dict:
    return {
        "name": "tri-" + "-".join(map(str, params.values())),
        "experiment": "tridecoding",
        "inputs": {"models": str(storage / "sizes")},
        "grid": {"small_draft_threshold": [0.0, 0.5, 0.95], "draft_target_threshold": [0.0, 0.9],
                 "mode": [{"greedy": True, "kv_cache": True}, {"greedy": False, "kv_cache": True},
                          {"greedy": True, "kv_cache": False}]},
        "params": {"n_prompts": 2, "prompt_len": 8, "n_tokens": 24, "max_little": 3,
                   "max_draft": 5, **params},
        "storage": str(storage),
    }  # fmt: skip


@pytest.fixture(scope="module")
def decoded(storage: Path) -> pd.DataFrame:
    result = run_sweep(decoding_spec(storage), progress=None)
    assert result.count("ok") == 18, [r["error"] for r in result.rows if r["error"]]
    return pd.read_parquet(Path(result.path) / "trials")


def test_greedy_tri_decoding_reproduces_the_target_at_every_threshold_pair(decoded):
    greedy = decoded[decoded["greedy"]]
    assert len(greedy) == 12 and (greedy["matches_target"] == 1.0).all()
    assert set(greedy["kv_cache"]) == {True, False}
    assert decoded.loc[~decoded["greedy"], "matches_target"].isna().all()  # not claimed


def test_both_levels_speculate_and_each_baseline_counts_on_its_own(decoded):
    # tri-decoding: the draft kept the little model's tokens, the target kept the draft's,
    # and each target call gave more than one token (plain decoding gives exactly one)
    assert (decoded["little_accepted_tokens"] > 0).all()
    assert (decoded["draft_accepted_tokens"] > 0).all()
    assert (decoded["tokens_per_target_call"] > 1).all()
    # fixed two-level decoders draft blocks of g whatever the thresholds: greedy, their
    # acceptance is one value across the threshold grid (and above 0); the adaptive one
    # follows draft_target_threshold alone, tri-decoding both thresholds; columns fed by
    # another decoder's counters would not
    for _, cells in decoded[decoded["greedy"]].groupby("kv_cache"):
        for g in (1, 2, 4, 8):
            for column in (f"two_level_g{g}_acceptance_rate", f"two_level_g{g}_alpha"):
                assert cells[column].nunique() == 1 and (cells[column] > 0).all(), column
        column = "adaptive_two_level_tokens_per_target_call"
        adaptive = cells.groupby("draft_target_threshold")[column]
        assert adaptive.nunique().eq(1).all() and cells[column].nunique() > 1
        assert cells["tokens_per_target_call"].nunique() > 1
    # longer fixed drafts give more tokens per target call
    calls = decoded[[f"two_level_g{g}_tokens_per_target_call" for g in (1, 2, 4, 8)]]
    assert (calls.diff(axis=1).iloc[:, 1:] > 0).all().all()


DECODERS = ["", "adaptive_two_level_", *(f"two_level_g{g}_" for g in (1, 2, 4, 8))]


def test_counters_are_consistent(decoded):
    tokens = 2 * 24  # n_prompts * n_tokens, per decoder
    # each target call appends the draft tokens it kept and one token of its own
    assert (decoded["draft_accepted_tokens"] + decoded["target_calls"] == tokens).all()
    assert np.allclose(decoded["tokens_per_target_call"], tokens / decoded["target_calls"])
    for level in ("little", "draft"):
        generated, accepted = (
            decoded[f"{level}_generated_tokens"],
            decoded[f"{level}_accepted_tokens"],
        )
        assert (accepted <= generated).all()
        assert np.allclose(decoded[f"{level}_acceptance_rate"], accepted / generated)
    for prefix in DECODERS:
        for column in ("speedup", "predicted_speedup", "tokens_per_target_call",
                       "expected_tokens_per_target_call", "tokens_per_s"):  # fmt: skip
            assert (decoded[prefix + column] > 0).all(), prefix + column
        # one token per call at least; a fixed draft of g gives at most g + 1
        assert (decoded[prefix + "expected_tokens_per_target_call"] >= 1).all()
    for g in (1, 2, 4, 8):
        assert (decoded[f"two_level_g{g}_tokens_per_target_call"] <= g + 1).all()
    for column in ("cost_ratio", "draft_cost_ratio", "little_cost_ratio"):
        assert (decoded[column] > 0).all(), column
    for level in ("little_alpha", "draft_alpha", "adaptive_two_level_alpha"):
        assert decoded[level].between(0, 1).all(), level
    # alpha counts only the drafted tokens a verifier reached: never below the share kept
    assert (decoded["draft_alpha"] >= decoded["draft_acceptance_rate"]).all()


def test_the_formulas_expected_tokens_and_speedup():
    # a = 0.8, g = 4, c = 0.1: (1 - 0.8^5) / (0.2 * 1.4) = 2.3834...
    assert predicted_speedup(0.8, [4], 0.1) == pytest.approx((1 - 0.8**5) / (0.2 * 1.4))
    assert predicted_speedup(1.0, [4], 0.0) == 5  # every draft kept, drafting free
    assert predicted_speedup(0.0, [4], 0.5) == pytest.approx(1 / 3)  # nothing kept: pure cost
    assert math.isclose(predicted_speedup(0.5, [0], 0.3), 1.0)  # no draft: plain decoding
    assert expected_tokens(0.5, [2]) == pytest.approx(1.75)  # 1 + 0.5 + 0.25
    # drafts of 1 and 3: the mean of 1.5 and 1.875, below the formula at the mean length 2
    assert expected_tokens(0.5, [1, 3]) == pytest.approx(1.6875)
    assert expected_tokens(1.0, [1, 3]) == 3 and expected_tokens(0.3, []) == 1


def test_a_context_too_short_for_prompt_and_output_is_a_clear_trial_error(storage: Path):
    spec = decoding_spec(storage, prompt_len=40)  # 40 + 24 > the models' 48
    spec["grid"] = {"small_draft_threshold": [0.5], "draft_target_threshold": [0.5]}
    result = run_sweep(spec, progress=None)
    assert result.count("failed") == 1
    assert "exceeds the models' context (48)" in result.rows[0]["error"]


def test_the_report_has_the_familys_heat_map(storage: Path, decoded):
    from orchestrator import reporting

    folder = reporting.report(storage / "tri-", None, quiet=True)
    md = (folder / "report.md").read_text()
    assert "## Tri-decoding: speedup over the threshold grid" in md
    cells = decoded.groupby(["small_draft_threshold", "draft_target_threshold"]).ngroups
    assert f"Best of {cells} cells: " in md and "(selected: picked as the largest of" in md
    maps = {p.name for p in folder.glob("speedup-heatmap*.png")}  # one per kv_cache x greedy
    assert maps == {f"speedup-heatmap-greedy-{g}-kv_cache-{c}.png"
                    for g, c in [(True, True), (False, True), (True, False)]}  # fmt: skip
    assert (folder / "acceptance-vs-thresholds.png").is_file()  # seed 001's two panels
    assert "little_acceptance_rate-vs-small_draft_threshold.png" in md  # seed 001's panels
    assert (folder / "speedup-measured-vs-predicted.png").is_file()
    assert (folder / "tokens-per-call-measured-vs-expected.png").is_file()
    assert "Median measured/predicted: tri " in md and "; adaptive two-level " in md
    assert "; fixed g = 8 " in md
    assert {p.name for p in folder.glob("speedup-vs-best-baseline*.png")} == {
        m.replace("speedup-heatmap", "speedup-vs-best-baseline") for m in maps
    }
    assert "best g = " in md and "selected as the best of 4 on these data" in md
    assert "simultaneous over the 6 cells (Bonferroni)" in md


def test_tri_is_compared_with_the_better_baseline_of_each_cell():
    # two cells x two seeds; fixed g = 2 beats g = 1 on average; the adaptive decoder beats
    # fixed g = 2 in cell a (1.3 vs 1.2) and loses in cell b (1.0 vs 1.2)
    trials = pd.DataFrame(
        {
            "small_draft_threshold": [0.1, 0.1, 0.2, 0.2],
            "draft_target_threshold": [0.5] * 4,
            "seed": [0, 1, 0, 1],
            "speedup": [1.56, 1.3, 1.2, 1.32],
            "two_level_g1_speedup": [1.0, 1.0, 1.0, 1.0],
            "two_level_g2_speedup": [1.2, 1.2, 1.2, 1.2],
            "adaptive_two_level_speedup": [1.2, 1.4, 1.0, 1.0],
        }
    )
    gamma, lengths = best_fixed(trials)
    assert gamma == 2 and lengths.set_index("gamma")["mean"].to_dict() == {1: 1.0, 2: 1.2}
    assert np.allclose(best_baseline(trials), [1.3, 1.3 / 1.4, 1.0, 1.1], rtol=1e-12)
